r"""
Distilling a diffusion sampler into a one-step sampler
======================================================

A :class:`~skcds.DiffusionSampler` needs one network evaluation per step, 128 by default.
:class:`~skcds.ConsistentDistiller` distils a fitted one into a consistency function that maps
a prior sample to the end of the teacher's probability-flow ODE in **one** evaluation. It
trains on fresh teacher trajectories at every iteration, so no dataset is stored.

The budgets are tiny (a 32-step teacher and a few hundred iterations each), so that the
example runs in about a minute on a laptop CPU, and the samples are rough at this budget;
``benchmarks/cdds_distill.py`` trains at larger budgets.
"""

# %%
# The teacher
# -----------
# Any fitted :class:`~skcds.DiffusionSampler` can be a teacher. Distillation reads it and
# never changes it.
import matplotlib.pyplot as plt
import numpy as np

from skcds import ConsistentDistiller, DiffusionSampler
from skcds.energies import GaussianMixture

energy = GaussianMixture.grid()
teacher = DiffusionSampler(n_steps=32, max_iter=600, batch_size=256, random_state=0)
teacher.fit(energy)

# %%
# Distillation
# ------------
# ``fit()`` without an energy distils on the teacher's. Each iteration integrates the
# teacher's ODE from fresh prior samples to a random interval of a coarse grid of
# ``n_intervals`` pieces and pulls the student's output at the interval's start towards its
# output at the interval's end.
student = ConsistentDistiller(teacher, n_intervals=8, max_iter=600, batch_size=256, random_state=0)
student.fit()

fig, ax = plt.subplots(figsize=(6, 3))
ax.plot([r["loss"] for r in student.history_])
ax.set(
    xlabel="iteration",
    ylabel="distillation loss",
    yscale="log",
    title=f"{student.history_[-1]['elapsed']:.0f} s of distillation",
)
fig.tight_layout()

# %%
# One step against 32
# -------------------
# The student draws a sample in one network evaluation; ``n_steps=k`` re-noises and evaluates
# again, ``k`` times in all.
panels = {
    "teacher, 32-step SDE": teacher.sample(3000, random_state=1),
    "student, 1 step": student.sample(3000, random_state=1),
    "student, 4 steps": student.sample(3000, n_steps=4, random_state=1),
}
fig, axes = plt.subplots(1, 3, figsize=(9, 3), sharex=True, sharey=True)
for ax, (title, X) in zip(axes, panels.items(), strict=True):
    ax.scatter(X[:, 0], X[:, 1], s=1, alpha=0.4)
    ax.scatter(*np.asarray(energy.means).T, marker="x", color="black", s=30)
    ax.set(title=title, xlim=(-9, 9), ylim=(-9, 9))
fig.tight_layout()

# %%
# Valid one-step weights
# ----------------------
# The one-step sampler is a deterministic map of the prior, so its density follows by change
# of variables with the exact Jacobian determinant, and the weights give an ELBO that is a
# true lower bound of :math:`\log Z` (here 0) where the map does not fold. skcds warns if the
# map provably folds; multistep sampling re-noises, has no tractable density, and is refused
# weights.
print("teacher:", teacher.estimate_log_normalizer(4000, random_state=2))
print("student:", student.estimate_log_normalizer(4000, random_state=2))
