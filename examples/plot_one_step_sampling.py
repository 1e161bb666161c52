r"""
One-step sampling with a self-consistent sampler
================================================

A :class:`~skcds.SelfConsistentSampler` is trained from the energy alone, like a diffusion
sampler, but it can also *jump*: with ``n_steps=k`` it draws a sample in ``k`` network
evaluations, for any ``k`` that divides its training grid, down to a single one. This example
trains one on the 9-mode Gaussian mixture, draws samples with 1, 2, 4, 8 and 16 steps, and
compares them with valid importance weights.

The budget is tiny (a few hundred iterations on a small grid), so that the example runs in
about a minute on a laptop CPU; at this budget the samples are rough. The benchmark script
``benchmarks/scds_steps.py`` trains at larger budgets.
"""

# %%
# Training
# --------
# Each iteration simulates SDE paths on a 16-step grid and takes two optimiser steps: one on
# the diffusion sampler's log-variance loss, one on the self-consistency loss, which asks a
# jump of size :math:`2d` to land where two jumps of size :math:`d` land.
import time

import matplotlib.pyplot as plt
import numpy as np

from skcds import SelfConsistentSampler
from skcds.energies import GaussianMixture

energy = GaussianMixture.grid()
sampler = SelfConsistentSampler(n_steps=16, max_iter=400, batch_size=256, random_state=0)
sampler.fit(energy)

history = sampler.history_
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot([r["loss"] for r in history], label="diffusion (log-variance)")
ax.plot([r["consistency_loss"] for r in history], label="self-consistency")
ax.set(xlabel="iteration", yscale="log", title=f"{history[-1]['elapsed']:.0f} s of training")
ax.legend()
fig.tight_layout()

# %%
# Samples in 1 to 16 steps
# ------------------------
# ``sample(n, n_steps=k)`` runs ``k`` Euler jumps of the probability-flow ODE. Any ``k`` that
# does not divide the training grid raises a ``ValueError``.
steps = [1, 2, 4, 8, 16]
fig, axes = plt.subplots(1, len(steps), figsize=(3 * len(steps), 3), sharex=True, sharey=True)
for ax, k in zip(axes, steps, strict=True):
    X = sampler.sample(3000, n_steps=k, random_state=1)
    ax.scatter(X[:, 0], X[:, 1], s=1, alpha=0.4)
    ax.scatter(*np.asarray(energy.means).T, marker="x", color="black", s=30)
    ax.set(title=f"{k} step{'s' if k > 1 else ''}", xlim=(-9, 9), ylim=(-9, 9))
fig.tight_layout()

# %%
# Valid weights at every number of steps
# --------------------------------------
# A ``k``-step sampler is a deterministic map from the prior, so the density of its samples
# follows by change of variables with the exact Jacobian determinant of every jump. The
# log-weights :math:`\log\rho(x) - \log q(x)` are therefore valid: the ELBO is a true lower
# bound of :math:`\log Z` (here 0) and the importance-sampling estimate of :math:`Z` is
# unbiased (up to the target mass beyond the reach of the truncated prior). A map that folds
# breaks the formula, and skcds warns when it sees one: at this tiny budget, the one-step
# map does fold, on a small fraction of samples, so its weights come with a warning.
for k in steps:
    est = sampler.estimate_log_normalizer(4000, n_steps=k, random_state=2)
    print(
        f"k={k:2d}: log Z ~ {est.log_z:6.3f} +/- {est.stderr:.3f}  ELBO {est.elbo:6.3f}  "
        f"ESS {est.ess:.3f}"
    )

# %%
# Cost against steps
# ------------------
# One network evaluation per step: the wall-clock time of 100,000 samples grows linearly
# with ``k``. On one CPU thread, ``python -m skcds.bench --mode speed`` measured 0.09 s at
# one step against 11 s at 128 steps for this target.
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
