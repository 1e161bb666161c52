r"""
One-step sampling with a self-consistent sampler
================================================

A :class:`~skcds.SelfConsistentSampler` trains a diffusion sampler on the energy alone and,
beside it, an invertible one-step sampler: a coupling flow that learns the law of the
diffusion sampler's SDE from its own weighted paths (see the user guide, "One step, exact
by construction"). A draw is one pass of the flow, with its exact log-density, so its
importance weights are valid. ``n_steps=k`` adds ``k - 1`` independent Metropolis-Hastings
steps proposing fresh flow draws, which can only bring the samples closer to the target.
This example trains one on the 9-mode Gaussian mixture and compares 1, 2, 4 and 8 steps
with the diffusion sampler's own 32-step SDE.

The budget is small (600 iterations), so that the example runs in about a minute on a
laptop CPU; ``benchmarks/flow_distiller_study.py`` measures larger budgets.
"""

# %%
# Training
# --------
# Each iteration simulates SDE paths on a 32-step grid and takes two optimiser steps: one
# on the diffusion sampler's log-variance loss, one on the flow's weighted log-likelihood
# of the same paths' endpoints (``flow_loss``), each path weighted by its exact path weight.
import time

import matplotlib.pyplot as plt
import numpy as np

from skcds import SelfConsistentSampler
from skcds.energies import GaussianMixture
from skcds.metrics import wasserstein

energy = GaussianMixture.grid()
sampler = SelfConsistentSampler(n_steps=32, max_iter=600, batch_size=256, random_state=0)
sampler.fit(energy)

history = sampler.history_
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot([r["loss"] for r in history], label="diffusion (log-variance)")
ax.plot([r["flow_loss"] for r in history], label="flow (weighted log-likelihood)")
ax.set(xlabel="iteration", title=f"{history[-1]['elapsed']:.0f} s of training")
ax.legend()
fig.tight_layout()

# %%
# Samples in 1 to 8 steps, and the SDE
# ------------------------------------
exact = energy.sample(3000).numpy()
runs = {f"{k} step{'s' if k > 1 else ''}": {"n_steps": k} for k in (1, 2, 4, 8)}
runs["32-step SDE"] = {"n_steps": 32, "method": "sde"}
fig, axes = plt.subplots(1, len(runs), figsize=(3 * len(runs), 3), sharex=True, sharey=True)
for ax, (name, options) in zip(axes, runs.items(), strict=True):
    X = sampler.sample(3000, random_state=1, **options)
    ax.scatter(X[:, 0], X[:, 1], s=1, alpha=0.4)
    ax.scatter(*np.asarray(energy.means).T, marker="x", color="black", s=30)
    ax.set(title=f"{name}: W1 {wasserstein(X, exact, p=1):.2f}", xlim=(-9, 9), ylim=(-9, 9))
fig.tight_layout()

# %%
# Exact weights in one step
# -------------------------
# The flow's draws come with their exact log-density, so the log-weights
# :math:`\log\rho(x) - \log q(x)` are valid: the ELBO is a true lower bound of
# :math:`\log Z` (here 0) and the importance-sampling estimate of :math:`Z` is unbiased.
# The SDE's path weights are exact too, but far more spread out.
for name, options in [("1 step", {}), ("32-step SDE", runs["32-step SDE"])]:
    est = sampler.estimate_log_normalizer(4000, random_state=2, **options)
    print(
        f"{name:12s}: log Z ~ {est.log_z:6.3f} +/- {est.stderr:.3f}  ELBO {est.elbo:6.3f}  "
        f"ESS {est.ess:.3f}"
    )

# %%
# Cost against steps
# ------------------
# One flow pass per step (and, beyond the first, one energy evaluation per step for the
# Metropolis-Hastings test): the time of 100,000 samples grows linearly with ``k``.
steps = [1, 2, 4, 8]
seconds = []
for k in steps:
    start = time.perf_counter()
    sampler.sample(100_000, n_steps=k, random_state=3)
    seconds.append(time.perf_counter() - start)
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(steps, seconds, marker="o")
ax.set(xscale="log", yscale="log", xlabel="sampling steps", ylabel="seconds per 100,000 samples")
ax.set_xticks(steps, [str(k) for k in steps])
fig.tight_layout()
print({k: round(s, 3) for k, s in zip(steps, seconds, strict=True)})
