r"""
Estimating :math:`\log Z` with valid importance weights
=======================================================

Every skcds sampler returns importance log-weights :math:`\log w = \log\rho(x) - \log q(x)`
that are exact for the sampler as it is run, at any number of steps. Two estimates follow:

* the **ELBO** :math:`\mathbb E_q[\log w]`, a lower bound of :math:`\log Z` whatever the
  sampler's quality;
* the **importance-sampling** estimate :math:`\log \frac1n \sum_i w_i`, consistent as
  :math:`n` grows (biased low for finite :math:`n`).

This example trains a :class:`~skcds.DiffusionSampler` on the 9-mode Gaussian mixture, whose
:math:`\log Z = 0` is known, and watches both estimates against the number of sampling
steps. The budget is small (40 s on two CPU cores); the gap between the ELBO and
:math:`\log Z` shrinks with training. To scale up, drop ``max_iter`` and ``batch_size``:
the defaults are the paper's budget (20,000 iterations of batch 512).
"""

# %%
# Train once, sample at several numbers of steps
# ----------------------------------------------
# The weights of the SDE sampler are exact on any grid, so coarser grids give valid (if
# looser) bounds, not wrong answers.
import matplotlib.pyplot as plt
import numpy as np

from skcds import DiffusionSampler
from skcds.energies import GaussianMixture

energy = GaussianMixture.grid()
sampler = DiffusionSampler(n_steps=64, max_iter=500, batch_size=256, random_state=0)
sampler.fit(energy)

steps = [8, 16, 32, 64, 128]
estimates = [sampler.estimate_log_normalizer(20_000, n_steps=k, random_state=1) for k in steps]
for k, est in zip(steps, estimates, strict=True):
    print(f"{k:4d} steps: {est}")
print(f"exact log Z = {energy.log_normalizer:.4f}")

# %%
# The ELBO stays below :math:`\log Z`; the importance estimate approaches it as the weights
# become less spread out (larger effective sample size).
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.axhline(energy.log_normalizer, color="k", ls="--", lw=1, label="exact log Z")
ax.errorbar(steps, [e.log_z for e in estimates], [2 * e.stderr for e in estimates], marker="o",
            capsize=3, label="importance sampling (±2 s.e.)")  # fmt: skip
ax.plot(steps, [e.elbo for e in estimates], marker="s", label="ELBO (lower bound)")
ax.set(
    xscale="log", xlabel="sampling steps", ylabel="log Z estimate", title="9-mode Gaussian mixture"
)
ax.set_xticks(steps, [str(k) for k in steps])
ax.legend()
fig.tight_layout()

# %%
# Effective sample size
# ---------------------
# The normalised ESS, :math:`(\sum w)^2 / (n \sum w^2)`, says how many of the weighted
# samples count. It is the quickest check of whether a :math:`\log Z` estimate can be
# trusted.
print({k: round(e.ess, 3) for k, e in zip(steps, estimates, strict=True)})
assert all(e.elbo <= e.log_z for e in estimates)  # Jensen: always, for any weights
assert np.isfinite([e.log_z for e in estimates]).all()
