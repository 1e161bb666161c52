r"""
Distilling a diffusion sampler into a one-step sampler
======================================================

A :class:`~skcds.DiffusionSampler` needs one network evaluation per step, 128 by default.
:class:`~skcds.ConsistentDistiller` distils a fitted one into an invertible flow that draws
a sample in **one** pass, with its exact density. It trains on fresh teacher trajectories
at every iteration, weighted by their exact path weights, so no dataset is stored and the
student's target is the density itself, not the teacher's biased law.
(``student='consistency'`` distils a consistency function along the teacher's
probability-flow ODE instead, the CDDS algorithm of the paper.)

The budgets are small (a 32-step teacher and a few hundred iterations each), so that the
example runs in about a minute on a laptop CPU; ``benchmarks/flow_distiller_study.py``
trains at larger budgets.
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
# ``fit()`` without an energy distils on the teacher's. Each iteration draws fresh paths
# of the teacher's SDE with their path log-weights and maximises the student's
# self-normalised weighted log-likelihood of their endpoints. ``teacher_ess`` is the
# effective fraction of each batch the student learns from.
student = ConsistentDistiller(teacher, max_iter=600, batch_size=256, random_state=0)
student.fit()

fig, ax = plt.subplots(figsize=(6, 3))
ax.plot([r["loss"] for r in student.history_], label="weighted negative log-likelihood")
ax.plot([r["teacher_ess"] for r in student.history_], label="teacher batch ESS")
ax.set(xlabel="iteration", title=f"{student.history_[-1]['elapsed']:.0f} s of distillation")
ax.legend()
fig.tight_layout()

# %%
# One step against 32
# -------------------
# The student draws a sample in one pass; ``n_steps=k`` adds ``k - 1`` independent
# Metropolis-Hastings steps that propose fresh student draws.
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
# The student is invertible by construction and its log-density comes with each draw, so
# its weights give an ELBO that is a true lower bound of :math:`\log Z` (here 0) and an
# unbiased importance estimate of :math:`Z`; the Metropolis-Hastings output of ``k > 1``
# has no tractable density and is refused weights.
print("teacher:", teacher.estimate_log_normalizer(4000, random_state=2))
print("student:", student.estimate_log_normalizer(4000, random_state=2))
