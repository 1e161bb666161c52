r"""
One sampler for every temperature: the free energy :math:`\log Z(\beta)` as a curve
=====================================================================================

A Boltzmann distribution :math:`\rho_\beta(x) \propto e^{-\beta E(x)}` is rarely wanted at
one inverse temperature :math:`\beta` only: its free energy :math:`-\log Z(\beta)` as a
function of :math:`\beta` gives energies, heat capacities and phase changes. Instead of one
fit per :math:`\beta`, skcds trains **one** sampler on the whole family: the temperature is
a *context* :math:`c = \beta` that the sampler's networks read, drawn uniformly from its
domain while training. After that, every :math:`\beta` of the domain is one network pass
per draw away, with exact importance weights, hence :math:`\log Z(\beta)` with a standard
error at any :math:`\beta`.

The target is the tempered 5-D many-well :class:`~skcds.energies.TemperedManyWell`
(:math:`\beta \in [0.3, 1]`; 32 modes whose barriers flatten as :math:`\beta` falls), whose
:math:`\log Z(\beta)` is exact by 1-D quadrature. The budget is small (about two minutes on
two CPU cores); the benchmark page has the full-budget figures.
"""

# %%
# A family of densities and one fit
# ---------------------------------
# A family is a :class:`~skcds.energies.ConditionalEnergy`; your own is
# ``from_log_prob(fn, dim, context=Box(0.3, 1.0))`` with ``fn(x, c)``.
import matplotlib.pyplot as plt
import numpy as np

from skcds import SelfConsistentSampler
from skcds.energies import TemperedManyWell

family = TemperedManyWell.mw54(beta=(0.3, 1.0))
print(family)
sampler = SelfConsistentSampler(max_iter=1500, batch_size=256, random_state=0)
sampler.fit(family)
print(f"trained {sampler.n_iter_} iterations ({sampler.stop_reason_})")

# %%
# :math:`\log Z(\beta)` against the exact curve
# ----------------------------------------------
# ``log_normalizer_curve`` estimates :math:`\log Z` by importance sampling with the one-step
# draws' exact weights at each :math:`\beta`; it also reports the ELBO (a lower bound), the
# effective sample size and PSIS :math:`\hat k` per :math:`\beta`.
betas = np.linspace(0.3, 1.0, 15)
curve = sampler.log_normalizer_curve(betas, n_samples=4000)
exact = np.array([family.log_normalizer_at(b) for b in betas])
print("largest |error| of log Z:", np.abs(curve.log_z - exact).max().round(3))
print("ESS per beta:", curve.ess.round(2))

fig, (ax, err) = plt.subplots(1, 2, figsize=(9, 3.5))
fine = np.linspace(0.3, 1.0, 200)
ax.plot(fine, [family.log_normalizer_at(b) for b in fine], "k-", lw=1, label="exact")
ax.errorbar(betas, curve.log_z, 2 * curve.stderr, fmt="o", ms=4, label="one sampler (±2 s.e.)")
ax.plot(betas, curve.elbo, "s", ms=3, alpha=0.6, label="ELBO")
ax.set(xlabel=r"inverse temperature $\beta$", ylabel=r"$\log Z(\beta)$")
ax.legend()
err.axhline(0.0, color="k", lw=1)
err.errorbar(betas, curve.log_z - exact, 2 * curve.stderr, fmt="o", ms=4)
err.set(xlabel=r"$\beta$", ylabel="estimate - exact", title=r"error of $\log Z(\beta)$")
fig.tight_layout()

# %%
# Draws at two temperatures
# -------------------------
# The same network at :math:`\beta = 0.3` (hot: wide wells, easy crossings) and
# :math:`\beta = 1`: one pass each, against exact draws of those members.
fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
for ax, beta in zip(axes, (0.3, 1.0), strict=True):
    x = sampler.sample(20_000, context=beta, random_state=1)
    exact_draws = family.at(beta).sample(20_000).numpy()
    bins = np.linspace(-3.5, 3.5, 80)
    ax.hist(exact_draws[:, 0], bins, density=True, histtype="step", color="k", label="exact")
    ax.hist(x[:, 0], bins, density=True, alpha=0.5, label="one step")
    ax.set(title=rf"$\beta = {beta:g}$: first coordinate", xlabel="$x_0$")
axes[0].legend()
fig.tight_layout()
