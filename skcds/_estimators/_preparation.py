"""A user's energy on its way into a fit, as one step: checked, copied to the model's device
and dtype, probed through the guarded view, preconditioned, and checked for decay."""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import torch

from ..energies import ConditionalEnergy, Energy
from ..energies._base import _check_batch
from ..energies._guard import dynamics_view, recording
from ..energies._precondition import Preconditioning
from ..exceptions import EnergyError, ImproperDensityWarning

# Radius of the decay check in the sampler's coordinates, a multiple of the prior's
# typical radius sqrt(dim): far enough that a proper density has decayed, near enough not
# to leave where the sampler goes (at radius 1000, exp(-1000) = 0 is no valid scale)
_FAR_PER_SQRT_DIM = 10.0


def check_energy(energy, owner: str, call: str | None = None) -> Energy:
    """An :class:`Energy`, or a clear error naming ``call`` (default ``{owner}.fit``)."""
    if call is None:
        call, how = f"{owner}.fit", "call fit(energy) or pass energy= to the constructor"
    else:
        how = "pass an skcds.energies.Energy"
    if energy is None:
        raise ValueError(f"{call} needs an energy: {how}.")
    if isinstance(energy, (np.ndarray, torch.Tensor, list, tuple)):
        raise TypeError(
            f"{call} expects an skcds.energies.Energy as 'energy'; got an array-like "
            f"({type(energy).__name__}). Wrap a log-density with "
            "skcds.energies.from_log_prob(fn, dim) or an energy with from_energy(fn, dim)."
        )
    if not isinstance(energy, Energy):
        raise TypeError(
            f"{call} expects an skcds.energies.Energy as 'energy'; got "
            f"{type(energy).__name__}. Wrap a callable with skcds.energies.from_log_prob."
        )
    return energy


def prepare_energy(
    energy: Energy, *, device, dtype, probe: torch.Tensor, score: bool, preconditioning
) -> tuple[Energy, Preconditioning]:
    """The fitted energy ``energy_`` and its :class:`Preconditioning`, from the user's
    checked ``energy``: a copy on ``device`` in ``dtype``, probed on the prior draws
    ``probe`` (with its score if the dynamics read it, ``score``), in the coordinates of
    ``preconditioning`` (a Preconditioning, or a function of the copied energy that chooses
    one), with a warning if it does not decay."""
    energy = copy.deepcopy(energy).to(device=device, dtype=dtype)
    probe_energy(_probe_members(energy, probe), probe, score)
    if callable(preconditioning):
        preconditioning = preconditioning(energy)
    prepared = preconditioning.apply(energy).to(dtype)
    warn_if_improper(_probe_members(prepared, probe), probe)
    return prepared, preconditioning


def _probe_members(energy: Energy, probe: torch.Tensor) -> Energy:
    """``energy``; for a family of densities, its members at contexts drawn from its domain
    (generator seeded 0), one per probe point."""
    if not isinstance(energy, ConditionalEnergy):
        return energy
    generator = torch.Generator(device=probe.device).manual_seed(0)
    contexts = energy.context.sample(probe.shape[0], generator, probe.dtype, probe.device)
    return energy.at(contexts)


def probe_energy(energy: Energy, x: torch.Tensor, score: bool = True) -> None:
    """Evaluate ``log_prob`` (and the score, if ``score``) once on prior samples ``x``
    through the guarded view; raise on a malformed output (shape, dtype) and when no point
    has a log-density: the model raised, or returned NaN or ``+inf``, at every one.

    Some failed points are not an error here: the guarded view gives them zero density
    and training uses the rest, so the outcome of ``fit`` does not depend on whether these
    few probe points happen to hit a region where the model fails."""
    where, n = type(energy).__name__, x.shape[0]
    guarded = dynamics_view(energy, score)
    with torch.no_grad(), recording(private=True) as failures:
        guarded._log_prob(_check_batch(x, energy.dim))
    if failures.raised == n:
        error = failures.first
        raise EnergyError(
            f"{where}.log_prob raised {type(error).__name__} at all {n} probe points drawn "
            f"from the sampler's N(0, I) prior: {error}. skcds gives zero density to points "
            "where the model raises, but needs some where it does not. Check the model "
            "where the prior puts its mass."
        ) from error
    if failures.raised + failures.nonfinite == n:
        raise EnergyError(
            f"{where}.log_prob returned {failures.nonfinite} non-finite value(s) (NaN or "
            f"+inf) for the {n} probe points drawn from the sampler's N(0, I) prior"
            + (f" and raised at the other {failures.raised}" if failures.raised else "")
            + "; -inf (zero density) is allowed, NaN and +inf are not. Check the energy "
            "where the prior puts its mass."
        )
    if score:
        with recording(private=True):
            guarded._grad_log_prob(x)  # raises on a bad or missing score


def warn_if_improper(energy: Energy, near: torch.Tensor) -> None:
    """Warn if ``log rho`` is, in most of 16 fixed directions, at least as large at radius
    ``10 sqrt(dim)`` as its median on the prior samples ``near``: such a density does not
    decay and its ``Z`` is probably infinite (a flat or growing log-density, or a sign
    error: an energy passed as a log-density), or it is far wider than the sampler's prior.
    A model that fails out there counts as decaying (zero density): the check never stops
    a fit, and its own points are kept out of the fit's failure warning."""
    radius = _FAR_PER_SQRT_DIM * math.sqrt(energy.dim)
    directions = torch.randn(16, energy.dim, generator=torch.Generator().manual_seed(0))
    far_points = (radius * directions / directions.norm(dim=1, keepdim=True)).to(near)
    guarded = dynamics_view(energy, score=False)
    with torch.no_grad(), recording(private=True):
        near_values, far = guarded._log_prob(near), guarded._log_prob(far_points)
    finite_near = near_values[torch.isfinite(near_values)]
    if finite_near.numel() == 0:
        return  # nothing to compare: no verdict
    not_decaying = (far >= finite_near.median() - 1.0).float().mean()
    if not_decaying > 0.5:
        warnings.warn(
            f"{type(energy).__name__}.log_prob does not decay: at distance {radius:.3g} "
            "from the origin of the sampler's coordinates (10 prior radii) it is at least as "
            f"large as near it in {int(16 * not_decaying)} of 16 directions, so the density "
            "is probably not normalizable and no sampler can converge to it. Check the sign "
            "(from_log_prob wants log rho = -E, from_energy wants E) and that the density is "
            "proper (e.g. a prior on every parameter); if it is proper but very wide, use "
            "precondition='laplace' or rescale it.",
            ImproperDensityWarning,
            stacklevel=6,  # the user's fit (through the failure-reporting wrapper)
        )
