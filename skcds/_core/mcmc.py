"""MCMC refinement of a sampler's output (issue 15): Metropolis-adjusted Langevin (MALA)
moves, and independent Metropolis–Hastings (:func:`independent_mh`) with the sampler itself as
the proposal.

A few MALA moves on the energy from the sampler's samples make sampling asymptotically exact
without the sampler's density: each move leaves the target ``rho / Z`` invariant, so the
samples' law can only move toward the target (in total variation), whether the sampler's
map folds or not. With a fixed step size ``h`` and a fixed diagonal preconditioner ``c``,

    x' = x + (h^2 / 2) c * grad log rho(x) + h sqrt(c) * xi,    xi ~ N(0, I),

accepted with probability ``min(1, rho(x') q(x | x') / (rho(x) q(x' | x)))``. Adapting ``h``
on the chains being refined would make each move depend on the other chains and break the
invariance; :func:`tune_step_size` adapts it on a separate pilot batch instead, then it stays
fixed. Each move costs one evaluation of ``log rho`` and its gradient per sample.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from . import distributed

__all__ = ["MCMCResult", "independent_mh", "mala", "refine", "tune_step_size"]

TARGET_ACCEPTANCE = 0.574  # optimal for MALA in high dimension (Roberts and Rosenthal, 1998)


class MCMCResult(NamedTuple):
    """Refined states and what they cost."""

    x: Tensor  # (n, d)
    acceptance: float  # mean acceptance rate over moves and chains
    n_evaluations: int  # evaluations of log rho (and, for MALA, its gradient), all chains


def _value_and_score(energy, x: Tensor) -> tuple[Tensor, Tensor]:
    return energy._log_prob(x), energy._grad_log_prob(x)


def _log_proposal(to: Tensor, mean: Tensor, variance: Tensor) -> Tensor:
    """``log q(to | from)`` up to a constant shared by both directions."""
    return -0.5 * ((to - mean).square() / variance).sum(-1)


def mala(
    energy,
    x: Tensor,
    n_steps: int,
    *,
    step_size: float,
    scale: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> MCMCResult:
    """``n_steps`` MALA moves on ``energy`` from the rows of ``x`` (independent chains).

    Parameters
    ----------
    energy : Energy
        The target; its score is taken by autograd unless it has its own.
    x : Tensor of shape (n, d)
        Starting states (e.g. one-step samples).
    n_steps : int
        Moves per chain (0 returns ``x``).
    step_size : float
        ``h``: the proposal's standard deviation per unit of ``scale``.
    scale : Tensor of shape (d,), optional
        Per-coordinate scale of the proposal (a diagonal preconditioner; e.g. the samples'
        standard deviations); ones by default.
    generator : torch.Generator, optional
        Source of the proposals and of the accept/reject draws.

    Returns
    -------
    MCMCResult
        A chain whose state is not finite stays where it is (its proposal is rejected).
    """
    scale = torch.ones(x.shape[-1], dtype=x.dtype, device=x.device) if scale is None else scale
    c = scale.square()
    variance = step_size**2 * c
    log_p, score = _value_and_score(energy, x)
    accepted = torch.zeros((), dtype=x.dtype, device=x.device)
    for _ in range(n_steps):
        mean = x + 0.5 * variance * score
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        proposal = mean + variance.sqrt() * noise
        log_p_new, score_new = _value_and_score(energy, proposal)
        back = proposal + 0.5 * variance * score_new
        log_ratio = (
            log_p_new
            - log_p
            + _log_proposal(x, back, variance)
            - _log_proposal(proposal, mean, variance)
        )
        u = torch.rand(x.shape[0], generator=generator, dtype=x.dtype, device=x.device)
        accept = torch.isfinite(log_ratio) & torch.isfinite(score_new).all(-1)
        accept = accept & (u.log() < log_ratio)
        x = torch.where(accept[:, None], proposal, x)
        log_p = torch.where(accept, log_p_new, log_p)
        score = torch.where(accept[:, None], score_new, score)
        accepted = accepted + accept.to(x.dtype).mean()
    rate = float(accepted) / n_steps if n_steps else float("nan")
    return MCMCResult(x, rate, x.shape[0] * (n_steps + 1))


def tune_step_size(
    energy,
    x: Tensor,
    *,
    scale: Tensor | None = None,
    n_rounds: int = 20,
    moves_per_round: int = 2,
    generator: torch.Generator | None = None,
) -> tuple[float, int]:
    """A MALA step size near the target acceptance rate, tuned on pilot chains ``x``.

    Starts at ``h = 1 / d^(1/6)`` (the optimal scaling in ``d``) and, after each round of
    moves, multiplies ``h`` by ``exp(acceptance - 0.574)`` (stochastic approximation on the
    log step). The pilot chains are discarded: refined samples never see the adaptation.

    Returns
    -------
    step_size : float
    n_evaluations : int
        Evaluations of ``log rho`` and its gradient spent on tuning.
    """
    h, cost = x.shape[-1] ** (-1 / 6), 0
    for r in range(n_rounds):
        result = mala(energy, x, moves_per_round, step_size=h, scale=scale, generator=generator)
        x, cost = result.x, cost + result.n_evaluations
        gain = 2.0 / math.sqrt(r + 1)
        h *= math.exp(gain * (result.acceptance - TARGET_ACCEPTANCE))
    return h, cost


def refine(
    energy, x: Tensor, n_steps: int, pilot: Tensor, generator=None
) -> tuple[MCMCResult, dict]:
    """``n_steps`` MALA moves from ``x``, the step size and per-coordinate scale (the standard
    deviations of ``pilot``'s finite rows) tuned on chains started at ``pilot`` and then
    discarded. Returns the moves' result and ``{'step_size', 'tuning_evaluations'}``."""
    finite = pilot[torch.isfinite(pilot).all(-1)]
    scale = finite.std(0) if finite.shape[0] > 1 else None
    scale = None if scale is None or not bool(torch.isfinite(scale).all()) else scale
    with torch.enable_grad():
        step, cost = tune_step_size(energy, finite, scale=scale, generator=generator)
        moved = mala(energy, x, n_steps, step_size=step, scale=scale, generator=generator)
    return moved, {"step_size": step, "tuning_evaluations": cost}


def _nan_to_minus_inf(log_w: Tensor) -> Tensor:
    return torch.where(torch.isnan(log_w), torch.full_like(log_w, -math.inf), log_w)


def independent_mh(x: Tensor, log_w: Tensor, propose, n_steps: int, generator=None) -> MCMCResult:
    """``n_steps`` independent Metropolis–Hastings steps, one chain per row of ``x``.

    The proposal is a fresh draw of the sampler, independent of the chain's state:
    ``propose()`` returns ``(y, log_w_y)``, ``n`` draws and their importance log-weights
    ``log rho - log q``. A chain at ``x`` moves to ``y`` with probability
    ``min(1, exp(log_w_y - log_w_x))``, which leaves ``rho / Z`` invariant exactly when the
    log-weights are exact (up to a constant shared by all draws). Unlike local moves, it
    corrects mass between distant modes: a mode the sampler over-weights has low weights and
    is left more often. Non-finite log-weights count as ``-inf`` (never accepted; a chain
    there leaves at the first finite proposal).

    Returns
    -------
    MCMCResult
        ``n_evaluations``: the proposals drawn (``n * n_steps``).
    """
    log_w = _nan_to_minus_inf(log_w)
    accepted = torch.zeros((), dtype=x.dtype, device=x.device)
    like = {"generator": generator, "dtype": x.dtype, "device": x.device}
    for _ in range(n_steps):
        y, log_w_y = propose()
        log_w_y = _nan_to_minus_inf(log_w_y)
        # data-parallel (inside a sharded draw): this rank's rows of the global uniforms
        u = distributed.shard(lambda m: torch.rand(m, **like), x.shape[0])
        accept = u.log() < log_w_y - log_w  # NaN (both -inf) is False
        x = torch.where(accept[:, None], y, x)
        log_w = torch.where(accept, log_w_y, log_w)
        accepted = accepted + accept.to(x.dtype).mean()
    rate = float(accepted) / n_steps if n_steps else float("nan")
    return MCMCResult(x, rate, x.shape[0] * n_steps)
