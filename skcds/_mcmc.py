"""MALA refinement of any sample set: :func:`refine` (user guide, "Refining samples with MCMC").

The estimators' ``sample(n, mcmc_steps=m)`` refines their own draws; :func:`refine` moves
draws from anywhere, e.g. the prior ``N(0, I)``, which is the baseline a trained sampler must
beat. Both run :func:`skcds._core.mcmc.refine`.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from ._core import mcmc
from ._estimators import _validation as v
from ._estimators._preparation import check_energy
from .energies._guard import dynamics_view, reports_model_failures
from .metrics._validation import as_tensor

__all__ = ["refine"]

_PILOT = 256  # rows of 'X' copied to tune the step when no pilot is given


def _check_rows(x, name: str, dim: int) -> torch.Tensor:
    x = as_tensor(x, name)
    if x.ndim != 2 or x.shape[1] != dim or x.shape[0] == 0:
        raise ValueError(
            f"'{name}' must be of shape (n_samples, {dim}) with n_samples >= 1, for the "
            f"energy's {dim} dimensions; got shape {tuple(x.shape)}."
        )
    bad = ~torch.isfinite(x).all(-1)
    if bool(bad.any()):
        raise ValueError(
            f"'{name}' has {int(bad.sum())} row(s) with NaN or inf (first: row "
            f"{int(bad.nonzero()[0])}); MALA needs finite starting points."
        )
    return x


@reports_model_failures
def refine(
    energy,
    X,
    mcmc_steps: int = 100,
    *,
    pilot=None,
    random_state=None,
    return_info: bool = False,
):
    """Move each row of ``X`` by ``mcmc_steps`` Metropolis-adjusted Langevin (MALA) moves.

    Each move leaves the target ``rho / Z`` invariant, so the rows' law can only move toward
    the target, whatever produced them. The step size and a per-coordinate scale (the
    standard deviations of the tuning chains' starts) are tuned first on chains started at
    ``pilot``, which are then discarded, and stay fixed for every move. This is what
    ``sample(n, mcmc_steps=m)`` of the samplers does to their own draws; here the starts are
    yours: from the prior ``N(0, I)``, it is the baseline a trained sampler must beat.

    Parameters
    ----------
    energy : Energy
        The target; needs its score (by autograd unless it has its own).
    X : ndarray or Tensor of shape (n_samples, n_features)
        Finite starting points, one chain each.
    mcmc_steps : int, default=100
        Moves per chain; ``0`` returns ``X`` unchanged.
    pilot : ndarray or Tensor of shape (n_pilot, n_features), optional
        Starting points of the tuning chains, independent draws from the law of ``X`` (so
        that the tuned step does not depend on the rows it moves). Defaults to a copy of 256
        rows of ``X`` drawn at random, whose dependence on the step size is then negligible
        for ``n_samples`` well above 256.
    random_state : None, int or RandomState, default=None
        Seeds a private ``torch.Generator`` (proposals, accept draws, the pilot rows).
    return_info : bool, default=False
        Also return a dict: ``acceptance`` (mean over moves and chains), ``step_size``,
        ``n_evaluations`` (of ``log rho`` and its gradient, tuning included).

    Returns
    -------
    X_refined : ndarray or Tensor of shape (n_samples, n_features)
        Same type, dtype and device as ``X``.
    info : dict
        Only when ``return_info=True``.

    Examples
    --------
    MALA from the prior: on a symmetric double well it balances the modes by symmetry.

    >>> import numpy as np
    >>> from skcds import refine
    >>> from skcds.energies import ManyWell
    >>> energy = ManyWell(dim=2, n_double_wells=1, separation=2.0)
    >>> start = np.random.default_rng(0).standard_normal((2000, 2))
    >>> X, info = refine(energy, start, 50, random_state=0, return_info=True)
    >>> X.shape, info["n_evaluations"]
    ((2000, 2), 117360)
    """
    energy = check_energy(energy, "refine", call="skcds.refine")
    mcmc_steps = v.check_moves(mcmc_steps, "mcmc_steps")
    is_numpy = isinstance(X, np.ndarray)
    x = _check_rows(X, "X", energy.dim)
    generator = v.make_generator(random_state, x.device)
    if pilot is None:
        rows = torch.randperm(x.shape[0], generator=generator, device=x.device)[:_PILOT]
        start = x[rows].clone()
    else:
        start = _check_rows(pilot, "pilot", energy.dim).to(device=x.device, dtype=x.dtype)
    target = dynamics_view(copy.deepcopy(energy).to(device=x.device, dtype=x.dtype))
    with torch.no_grad():
        log_p = target._log_prob(x)
    stuck = ~torch.isfinite(log_p)
    if bool(stuck.any()):
        raise ValueError(
            f"The energy is not finite at {int(stuck.sum())} row(s) of 'X' (first: row "
            f"{int(stuck.nonzero()[0])}): MALA cannot move a chain from a point of zero or "
            "undefined density."
        )
    moved, tuning = mcmc.refine(target, x, mcmc_steps, start, generator)
    out = moved.x.detach().clone()  # never a view of the caller's array
    out = out.numpy() if is_numpy else out
    if not return_info:
        return out
    info = {
        "acceptance": moved.acceptance,
        "step_size": tuning["step_size"],
        "n_evaluations": moved.n_evaluations + tuning["tuning_evaluations"],
    }
    return out, info
