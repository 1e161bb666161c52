"""``sampler.diagnose()``: the quality signals to read before trusting a sampler's draws,
with plain-language advice; and :func:`plot_training`, the training curves."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ._warnings import weight_check

__all__ = ["Diagnosis", "StepDiagnosis", "plot_training"]


@dataclass(frozen=True)
class StepDiagnosis:
    """The importance weights of one number of sampling steps.

    Attributes
    ----------
    n_steps : int
    valid : bool
        False when the deterministic map provably folds: its weights are then not valid
        and the other fields are NaN.
    elbo, log_z, stderr, ess, khat : float
        As in :class:`~skcds.metrics.LogNormalizerEstimate`.
    reliable : bool
        Valid weights with PSIS ``khat`` at most its threshold (0.7 for ``n >= 2200``).
    """

    n_steps: int
    valid: bool
    elbo: float = math.nan
    log_z: float = math.nan
    stderr: float = math.nan
    ess: float = math.nan
    khat: float = math.nan
    reliable: bool = False


@dataclass(frozen=True)
class Diagnosis:
    """What :meth:`~skcds.DiffusionSampler.diagnose` found.

    Attributes
    ----------
    steps : list of StepDiagnosis
        One per number of sampling steps examined.
    n_iter : int
        Training iterations so far.
    stop_reason : str
        Why the last ``fit`` stopped (``stop_reason_``).
    advice : list of str
        What to do, in plain language (the first line is the verdict).
    """

    steps: list
    n_iter: int
    stop_reason: str
    advice: list = field(default_factory=list)

    @property
    def trusted(self) -> list:
        """The numbers of steps whose weights are valid and reliable."""
        return [s.n_steps for s in self.steps if s.reliable]

    def __repr__(self) -> str:
        header = f"{'steps':>6} {'valid':>6} {'ELBO':>10} {'log Z':>10} {'± se':>8} "
        header += f"{'ESS':>7} {'k-hat':>6}"
        lines = [f"Diagnosis after {self.n_iter} iterations ({self.stop_reason})", header]
        for s in self.steps:
            lines.append(
                f"{s.n_steps:>6} {('yes' if s.valid else 'folds'):>6} {s.elbo:>10.4g} "
                f"{s.log_z:>10.4g} {s.stderr:>8.2g} {s.ess:>7.3f} {s.khat:>6.2f}"
            )
        return "\n".join(lines + [f"- {line}" for line in self.advice])


def _step(sampler, n_steps: int, n_samples: int, random_state, options: dict):
    with weight_check(ignore_unreliable=True) as check:  # k-hat reported, not warned
        estimate = sampler.estimate_log_normalizer(
            n_samples, n_steps=n_steps, random_state=random_state, **options
        )
    if not check.valid:
        return StepDiagnosis(n_steps, False)
    return StepDiagnosis(
        n_steps,
        True,
        estimate.elbo,
        estimate.log_z,
        estimate.stderr,
        estimate.ess,
        estimate.khat,
        estimate.reliable,
    )


def _advice(diagnosis_steps: list, stop_reason: str, still_improving: bool) -> list:
    trusted = [s for s in diagnosis_steps if s.reliable]
    folding = [s.n_steps for s in diagnosis_steps if not s.valid]
    heavy = [s.n_steps for s in diagnosis_steps if s.valid and not s.reliable]
    advice = []
    if trusted:
        best = max(trusted, key=lambda s: s.elbo)
        advice.append(
            f"Trustworthy: at {best.n_steps} step(s) the weights are valid and reliable "
            f"(k-hat {best.khat:.2f}, ESS {best.ess:.2f}); importance-weighted estimates and "
            f"log Z = {best.log_z:.4g} ± {best.stderr:.2g} can be used, and "
            f"sample(n, n_steps={best.n_steps}, imh_steps=2) corrects unweighted draws "
            "with them (independent Metropolis-Hastings)."
        )
    else:
        advice.append(
            "Not yet trustworthy: no number of steps examined has valid, reliable weights. "
            "Train longer (warm_start=True), or correct the draws with "
            "sample(n, mcmc_steps=m), which needs no weights."
        )
    if folding:
        advice.append(
            f"The map folds at {folding} step(s): no valid weights there (samples may still "
            "be usable; check them against the weighted estimates at another step count)."
        )
    if heavy:
        advice.append(
            f"The weights at {heavy} step(s) are heavy-tailed (k-hat above its threshold): "
            "their log Z and weighted means are not to be trusted."
        )
    if stop_reason == "diverged":
        advice.append(
            "Training diverged: rescale the target (precondition='laplace') or lower "
            "learning_rate, and refit."
        )
    elif stop_reason in ("max_iter", "max_time") and still_improving:
        advice.append(
            f"Training stopped at {stop_reason} while the monitored ELBO was still improving: "
            "more iterations would likely help (warm_start=True continues)."
        )
    return advice


def diagnose(sampler, steps, n_samples: int, random_state, options: dict) -> Diagnosis:
    """The body of the samplers' ``diagnose`` method."""
    found = [_step(sampler, k, n_samples, random_state, options) for k in steps]
    elbos = [r["elbo"] for r in sampler.history_ if "elbo" in r]
    improving = len(elbos) >= 2 and elbos[-1] > max(elbos[:-1]) + sampler.tol
    reason = getattr(sampler, "stop_reason_", "max_iter")
    return Diagnosis(found, sampler.n_iter_, reason, _advice(found, reason, improving))


def plot_training(sampler, axes=None):
    """Plot a fitted sampler's training curves: the loss, and the monitored ELBO and ESS.

    Parameters
    ----------
    sampler : fitted skcds sampler
    axes : sequence of 2 matplotlib Axes, optional
        Where to draw; a new figure with two panels by default.

    Returns
    -------
    ndarray of matplotlib Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skcds import DiffusionSampler, plot_training
    >>> from skcds.energies import GaussianMixture
    >>> sampler = DiffusionSampler(n_steps=8, max_iter=20, batch_size=32, monitor_every=5,
    ...                            random_state=0).fit(GaussianMixture.grid())
    >>> plot_training(sampler).shape
    (2,)
    """
    import matplotlib.pyplot as plt
    import numpy as np

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    axes = np.asarray(axes)
    history = sampler.history_
    axes[0].plot([r["iteration"] for r in history], [r["loss"] for r in history], lw=0.8)
    axes[0].set(xlabel="iteration", ylabel="loss", yscale="symlog", title="training loss")
    checked = [r for r in history if "elbo" in r]
    if checked:
        iterations = [r["iteration"] for r in checked]
        axes[1].plot(iterations, [r["elbo"] for r in checked], "o-", label="ELBO")
        twin = axes[1].twinx()
        twin.plot(iterations, [r["ess"] for r in checked], "s--", color="tab:orange")
        twin.set(ylabel="ESS", ylim=(0, 1.05))
    axes[1].set(xlabel="iteration", ylabel="ELBO", title="monitored ELBO (o) and ESS (s)")
    return axes
