r"""
Prior sensitivity with one sampler: the posterior across prior scales
=====================================================================

How much does a posterior depend on the prior? The honest answer is a curve: the
posterior (and the evidence) as the prior's scale :math:`s` varies. With MCMC that is one
run per :math:`s`. skcds trains one sampler on the whole family
:math:`\rho(w \mid c) = p(y \mid w)\, p(w \mid s = e^{c})`, with the log prior scale
:math:`c` as a *context*, then answers every :math:`s` in one network pass per draw.

The model is a Bayesian linear regression (:class:`~skcds.energies.BayesianLinearRegression`:
5 weights, 20 noisy observations, prior :math:`\mathcal N(0, s^2 I)` with
:math:`s \in [0.1, 10]`), whose posterior and evidence are Gaussian and exact, so the
sampler's answers can be checked. The budget is small (about a minute on two CPU cores).
"""

# %%
# One fit over the log prior scale
# --------------------------------
import matplotlib.pyplot as plt
import numpy as np

from skcds import SelfConsistentSampler
from skcds.energies import BayesianLinearRegression

family = BayesianLinearRegression(n_features=5, n_data=20, random_state=0)
print(family)
sampler = SelfConsistentSampler(max_iter=1000, batch_size=256, random_state=0)
sampler.fit(family)
print(f"trained {sampler.n_iter_} iterations ({sampler.stop_reason_})")

# %%
# Posterior means against the prior scale
# ---------------------------------------
# Small :math:`s` shrinks every weight to 0; large :math:`s` leaves the least-squares fit.
# Each point is 4000 one-step draws at that scale, importance-weighted with their exact
# weights; the lines are the exact posterior means.
scales = np.geomspace(0.1, 10.0, 12)
fine = np.geomspace(0.1, 10.0, 100)
exact_means = np.array([family.posterior_at(np.log(s))[0] for s in fine])
estimated = []
for s in scales:
    x, log_w = sampler.sample(4000, context=np.log(s), random_state=1, return_log_weights=True)
    w = np.exp(log_w - log_w.max())
    estimated.append(w @ x / w.sum())
estimated = np.array(estimated)

fig, (ax, ev) = plt.subplots(1, 2, figsize=(9, 3.6))
for j in range(family.dim):
    (line,) = ax.plot(fine, exact_means[:, j], lw=1)
    ax.plot(scales, estimated[:, j], "o", ms=4, color=line.get_color())
ax.set(xscale="log", xlabel="prior scale s", ylabel="posterior mean of each weight",
       title="lines: exact; dots: one sampler")  # fmt: skip

# %%
# The evidence :math:`\log p(y \mid s)` as a curve
# ------------------------------------------------
# Its maximum is the empirical-Bayes choice of :math:`s`.
curve = sampler.log_normalizer_curve(np.log(scales), n_samples=4000)
ev.plot(fine, [family.log_normalizer_at(np.log(s)) for s in fine], "k-", lw=1, label="exact")
ev.errorbar(scales, curve.log_z, 2 * curve.stderr, fmt="o", ms=4, label="one sampler")
ev.set(xscale="log", xlabel="prior scale s", ylabel=r"$\log p(y \mid s)$", title="evidence")
ev.legend()
fig.tight_layout()
best = scales[np.argmax(curve.log_z)]
print(f"empirical-Bayes prior scale: {best:.2f}")
exact_evidence = np.array([family.log_normalizer_at(np.log(s)) for s in scales])
print("largest |error| of log evidence:", np.abs(curve.log_z - exact_evidence).max().round(3))
