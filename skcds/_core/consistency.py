"""Consistency losses: self-consistency of the step-conditioned probability flow (SCDS,
method.md §4) and consistency distillation along a teacher's flow (CDDS, §3).

One Euler step of size ``2d`` must land where two steps of size ``d`` land (eq. 9–11), the
two-step target under stop-gradient. Jumps are drawn so that every trained jump is one that
a ``k``-step sampler uses: lengths are powers of two of the grid step (``2 .. N`` grid units;
length 1 is the diffusion loss's base case) and starts are multiples of the length.

Beyond the paper (issue 15): jumps regressed onto the network's own fine flow
(:func:`flow_map_loss`), and terms from the exact Jacobian of first jumps
(:func:`first_jump`): a monotonicity penalty that keeps jumps injective
(:func:`monotonicity_penalty`) and the one-step map's reverse KL (:func:`one_step_kl`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from . import distributed
from .flow import flow_velocity, step_jacobian
from .losses import finite_rows, zero_rows
from .rollout import _step_features, _time_features

__all__ = [
    "coarse_indices",
    "distillation_loss",
    "endpoint_score_matching",
    "fine_flow_states",
    "first_jump",
    "flow_map_loss",
    "monotonicity_penalty",
    "one_step_kl",
    "one_step_log_variance",
    "sample_jumps",
    "sampler_jump",
    "sampler_jump_jacobian",
    "self_consistency_loss",
    "volume_consistency",
]


def sample_jumps(
    n_steps: int, batch: int, *, generator, device, favour_long: bool = False
) -> tuple[Tensor, Tensor]:
    """Start indices and lengths (in grid steps) of ``batch`` jumps on an ``n_steps`` grid.

    The length is ``2**j`` with ``j`` uniform on ``1..log2(n_steps)`` (``favour_long``: with
    probability proportional to ``j``, so the longest jumps, those of the 1- and 2-step
    samplers, are drawn most often); the start is ``k * length`` with ``k`` uniform on
    ``0..n_steps / length - 1``.
    """
    levels = int(math.log2(n_steps))

    def draw(m: int) -> Tensor:  # data-parallel: the global batch's draw, this rank's rows
        if favour_long:
            odds = torch.arange(1, levels + 1, device=device, dtype=torch.float64)
            lengths = 1 + torch.multinomial(odds, m, replacement=True, generator=generator)
        else:
            lengths = torch.randint(1, levels + 1, (m,), generator=generator, device=device)
        u = torch.rand(m, generator=generator, device=device, dtype=torch.float64)
        return torch.stack([lengths.double(), u])

    levels_drawn, u = distributed.shard(draw, batch, axis=1)
    lengths = 2 ** levels_drawn.long()
    starts = (u * (n_steps // lengths)).long() * lengths
    return starts, lengths


def _masked_mean(per_row: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
    """Mean of ``per_row`` over ``keep`` and the number of rows left out."""
    kept = keep.sum()
    value = torch.where(keep, per_row, torch.zeros_like(per_row)).sum()
    return value / kept.clamp(min=1).to(per_row.dtype), keep.shape[0] - kept


def _velocity(control, process, t: Tensor, x: Tensor, score: Tensor, step: Tensor) -> Tensor:
    """Flow velocity with one time and step size per sample (``t``, ``step`` of shape (n,))."""
    return flow_velocity(control, process, t, x[:, None], score[:, None], step)[:, 0]


def self_consistency_loss(
    control,
    process,
    energy,
    times: Tensor,
    xs: Tensor,
    scores: Tensor,
    starts,
    lengths,
    teacher=None,
) -> Tensor:
    """Mean squared gap between one jump of length ``2d`` and two of length ``d`` (eq. 11).

    Parameters
    ----------
    times : Tensor of shape (N + 1,)
        The uniform training grid.
    xs, scores : Tensor of shape (N + 1, n, d)
        States of SDE trajectories and the target scores there (detached).
    starts, lengths : Tensor of shape (n,)
        Jumps from :func:`sample_jumps`, one per trajectory.
    teacher : control, optional
        Takes the two half jumps (e.g. EMA weights); defaults to ``control`` itself under
        stop-gradient (the paper).

    Returns
    -------
    value : Tensor
        Mean over samples and coordinates; differentiable in the one-jump student only.
    n_masked : Tensor
        Samples left out because their start or two-step target is not finite.
    """
    rows = torch.arange(xs.shape[1], device=xs.device)
    t, x, score = times[starts], xs[starts, rows], scores[starts, rows]
    jump = lengths.to(times.dtype) * (times[1] - times[0])
    half = 0.5 * jump
    keep = finite_rows(x, score)
    x, score = zero_rows(x, keep), zero_rows(score, keep)
    teacher = control if teacher is None else teacher
    with torch.no_grad():
        x_half = x + half[:, None] * _velocity(teacher, process, t, x, score, half)
        score_half = energy._grad_log_prob(x_half)
        v_half = _velocity(teacher, process, t + half, x_half, score_half, half)
        target = x_half + half[:, None] * v_half
        keep = keep & finite_rows(target)
        target = zero_rows(target, keep)
    student = x + jump[:, None] * _velocity(control, process, t, x, score, jump)
    return _masked_mean((target - student).square().mean(-1), keep)


def fine_flow_states(control, process, energy, times: Tensor, x0: Tensor, score0=None):
    """States and target scores ``(N + 1, n, d)`` of the ``N``-step Euler flow of the
    grid-step control from ``x0`` (the diffusion sampler the network also is), no gradient.
    The time-only features of all ``N`` steps are computed in one call, as in the rollouts
    (per-step calls of the three time networks cost more than the state network).
    ``score0``: the target score at ``x0`` if the caller has it."""
    step = (times[1:2] - times[:1]) if getattr(control, "step_conditioned", False) else None
    states, scores = [x0], []
    x = x0
    with torch.no_grad():
        features = _time_features(control, process, times, step)
        for j in range(times.shape[0] - 1):
            score = score0 if j == 0 and score0 is not None else energy._grad_log_prob(x)
            scores.append(score)
            f = _step_features(features, j)
            u = control.control(f, x[None], score[None])[0]
            velocity = process.drift(times[j], x) + 0.5 * f.sigma[0] * u
            x = x + (times[j + 1] - times[j]) * velocity
            states.append(x)
        scores.append(energy._grad_log_prob(x))
    return torch.stack(states), torch.stack(scores)


def flow_map_loss(
    control, process, energy, times: Tensor, x0: Tensor, starts, lengths, teacher=None, score0=None
):
    """Mean squared gap between jumps and the network's own fine flow (self-distillation).

    The ``N``-step Euler flow of the grid-step control (``teacher``'s, or ``control``'s under
    stop-gradient) is run from ``x0``; every jump is then regressed onto it: the one jump
    ``x_0 -> x_N`` for every row, and one jump ``(start, length)`` per row from the flow's
    state at ``start`` onto its state at ``start + length``. Unlike the self-consistency
    chain, whose targets are built from ``log2 N`` levels of bootstrapped jumps, these targets
    carry only the error of the trained diffusion sampler, and the jumps start where a
    ``k``-step sampler goes (on flow trajectories from the prior), not on SDE paths.

    Parameters
    ----------
    times : Tensor of shape (N + 1,)
        The training grid.
    x0 : Tensor of shape (n, d)
        Prior samples.
    starts, lengths : Tensor of shape (n,)
        Jumps from :func:`sample_jumps`, one per row.
    teacher : control, optional
        Runs the fine flow; defaults to ``control`` under stop-gradient.
    score0 : Tensor of shape (n, d), optional
        The target score at ``x0``, if the caller has it.

    Returns
    -------
    value : Tensor
        Mean over rows and coordinates of the one-jump and the random-jump errors;
        differentiable in the jumps only.
    n_masked : Tensor
        Rows left out because the flow is not finite.
    """
    states, scores = fine_flow_states(
        control if teacher is None else teacher, process, energy, times, x0, score0
    )
    keep = finite_rows(states[-1], x0)
    rows = torch.arange(x0.shape[0], device=x0.device)
    step = times[1] - times[0]
    n = x0.shape[0]
    begin = torch.cat([torch.zeros_like(starts), starts])
    span = torch.cat([torch.full_like(lengths, times.shape[0] - 1), lengths])
    rows = torch.cat([rows, rows])
    keep = torch.cat([keep, keep])
    x, score = zero_rows(states[begin, rows], keep), zero_rows(scores[begin, rows], keep)
    goal = zero_rows(states[begin + span, rows], keep)
    jump = span.to(times.dtype) * step
    student = x + jump[:, None] * _velocity(control, process, times[begin], x, score, jump)
    value, _ = _masked_mean((goal - student).square().mean(-1), keep)
    return value, n - keep[:n].sum()


def first_jump(control, process, energy, x0: Tensor, length, score=None):
    """The first jump ``x0 -> x1`` of length ``length`` from ``t = 0`` and its exact
    Jacobians ``(n, d, d)``, both differentiable in the control's parameters. Jumps from
    ``t = 0`` need no Hessian of the target (the Langevin term weighs the target score by
    ``t / T = 0`` there). ``score``: the target score at ``x0`` if the caller has it."""
    return sampler_jump(control, process, energy, x0, length, 0, score)


def _jump_start(control, process, energy, x0: Tensor, length, index: int, score=None):
    """``(t, x, score)`` where jump ``index`` of the sampler starts: the earlier jumps run
    without gradient, and rows whose state is not finite restart at the origin."""
    n = x0.shape[0]
    t = torch.zeros((), dtype=x0.dtype, device=x0.device)
    x = x0
    with torch.no_grad():
        for _ in range(index):
            score = energy._grad_log_prob(x) if score is None else score
            x = x + length * _velocity(control, process, t.expand(n), x, score, length.expand(n))
            x = zero_rows(x, finite_rows(x))
            t, score = t + length, None
    score = energy._grad_log_prob(x).detach() if score is None else score
    return t, x, score


def sampler_jump(control, process, energy, x0: Tensor, length, index: int, score=None):
    """Jump ``index`` (from 0) of the sampler that jumps by ``length`` from the prior samples
    ``x0``: its end points ``(n, d)`` and exact Jacobians ``(n, d, d)``, both differentiable
    in the control's parameters. The earlier jumps run without gradient; from the second
    jump on, the target's Hessian enters (the Langevin term). Rows whose state is not finite
    are evaluated at the origin instead (a valid point; a loss never sees a NaN).
    ``score``: the target score at ``x0`` if the caller has it."""
    t, x, score = _jump_start(control, process, energy, x0, length, index, score)
    jac = step_jacobian(control, process, energy, t, length, x, length, score=score)
    n = x.shape[0]
    end = x + length * _velocity(control, process, t.expand(n), x, score, length.expand(n))
    return end, jac


def sampler_jump_jacobian(control, process, energy, x0: Tensor, length, index: int, score=None):
    """The Jacobians of :func:`sampler_jump` alone (its end points are not computed)."""
    t, x, score = _jump_start(control, process, energy, x0, length, index, score)
    return step_jacobian(control, process, energy, t, length, x, length, score=score)


def volume_consistency(control, process, energy, x0: Tensor, length, teacher=None, score0=None):
    """Squared gap between the log-volume change of one jump of ``2 * length`` from
    ``t = 0`` and that of two jumps of ``length`` (OSDS's volume consistency, with exact
    log-determinants): ``mean((log|det J_2l| - log|det J_l,0| - log|det J_l,1|)^2)``.

    The two half jumps are taken by ``teacher`` (default ``control``) under stop-gradient,
    as the self-consistency target is; the second half needs the target's Hessian. Zero when
    Euler jumps of any length are the exact flow; the self-consistency loss makes the end
    points agree, this term their densities. ``score0``: the target score at ``x0``.

    Returns
    -------
    Tensor
        Mean over the rows whose three log-determinants are finite; differentiable in the
        long jump only.
    """
    teacher = control if teacher is None else teacher
    with torch.no_grad():
        halves = [
            torch.linalg.slogdet(
                sampler_jump_jacobian(teacher, process, energy, x0, length, index, score0)
            )[1]
            for index in (0, 1)
        ]
    _, jac = first_jump(control, process, energy, x0, 2 * length, score0)
    gap = torch.linalg.slogdet(jac)[1] - halves[0] - halves[1]
    keep = torch.isfinite(gap)
    return _masked_mean(torch.where(keep, gap, torch.zeros_like(gap)).square(), keep)[0]


def monotonicity_penalty(jac: Tensor, margin: float = 0.01):
    """Hinge on the smallest eigenvalue of the symmetric part of a jump's Jacobians.

    A map whose Jacobian has a positive definite symmetric part everywhere on a convex set
    is strictly monotone, ``(f(x) - f(y)) . (x - y) > 0``, hence injective: its
    change-of-variables weights are valid. (Optimal transport maps are of this kind, and the
    probability-flow map of a Gaussian target is.) The penalty ``mean(relu(margin -
    lambda_min((J + J^T) / 2)))`` is zero on a map monotone with a margin at the samples, and
    unlike a hinge on ``det J`` it also sees a map reversed along an even number of
    directions (whose determinant is positive). Differentiable (``eigvalsh``).

    Returns
    -------
    value : Tensor
    not_monotone : Tensor
        Fraction of samples with ``lambda_min <= 0``.
    """
    smallest = torch.linalg.eigvalsh(0.5 * (jac + jac.transpose(-1, -2)))[:, 0]
    keep = torch.isfinite(smallest)
    smallest = torch.where(keep, smallest, torch.zeros_like(smallest))
    value, _ = _masked_mean(torch.relu(margin - smallest), keep)
    return value, (smallest <= 0).to(jac.dtype).mean()


def one_step_kl(process, energy, x0: Tensor, x1: Tensor, log_abs: Tensor) -> Tensor:
    """Reverse KL of the one-step map to the target, up to ``log Z``:
    ``mean(log p_prior(x0) - log |det J(x0)| - log rho(x1))``, from the exact density of the
    map (valid where it is injective). Differentiable through ``x1`` and ``log |det J|``;
    its ``-log |det J|`` also repels the map from folding (it grows without bound as a
    determinant approaches zero)."""
    value = process.prior_log_prob(x0) - log_abs - energy._log_prob(x1)
    keep = torch.isfinite(value)
    value, _ = _masked_mean(torch.where(keep, value, torch.zeros_like(value)), keep)
    return value


def one_step_log_variance(process, energy, x0: Tensor, x1: Tensor, log_abs: Tensor) -> Tensor:
    """Log-variance divergence of the one-step map to the target: the variance over the
    batch of its exact log-weights ``log rho(x1) + log |det J(x0)| - log p_prior(x0)``.
    Zero exactly when the map pushes the prior onto the target, whatever ``log Z``; unlike the
    reverse KL it is smallest when every mode is weighted right, not only when every sample
    sits in one (a study switch of :class:`~skcds.SelfConsistentSampler`)."""
    log_w = energy._log_prob(x1) + log_abs - process.prior_log_prob(x0)
    keep = torch.isfinite(log_w)
    mean, _ = _masked_mean(torch.where(keep, log_w, torch.zeros_like(log_w)), keep)
    spread = torch.where(keep, (log_w - mean.detach()) ** 2, torch.zeros_like(log_w))
    return _masked_mean(spread, keep)[0]


def endpoint_score_matching(control, process, energy, times: Tensor, ends: Tensor, generator):
    """Denoising score matching of the grid-step control on the SDE's own endpoints.

    The flow velocity ``drift + sigma u / 2`` is the probability flow of the controlled SDE
    only where ``u = sigma grad log p_t`` (method.md §4), which the path-space loss does not
    enforce: a network whose SDE is at the target can have a flow that is not (GMM9: mode
    weights right on the SDE, the centre mode 1.22 times too heavy on the flow). Here each
    endpoint ``x_T`` is noised by the reference to a random grid time, ``x_t = alpha x_T +
    sqrt(var) eps``, and ``u(t, x_t)`` is regressed onto ``sigma`` times the score of that
    kernel, ``-sigma eps / sqrt(var)``, in the eps-prediction weighting; its minimiser is
    ``sigma`` times the score of the noised endpoint law, so the flow carries the prior to
    where the SDE ends (a study switch of :class:`~skcds.SelfConsistentSampler`).

    Parameters
    ----------
    times : Tensor of shape (N + 1,)
        The training grid; noise levels are drawn at its first ``N`` points.
    ends : Tensor of shape (n, d)
        SDE endpoints (detached); non-finite rows are left out.
    generator : torch.Generator
        Source of the times and the noise.

    Returns
    -------
    Tensor
        ``mean ||sqrt(var) u / sigma + eps||^2`` over rows and coordinates.
    """
    n, d = ends.shape
    keep = finite_rows(ends)
    ends = zero_rows(ends, keep)

    def draw(m: int) -> Tensor:  # data-parallel: the global batch's draw, this rank's rows
        index = torch.randint(
            0, times.shape[0] - 1, (m, 1), generator=generator, device=ends.device
        )
        noise = torch.randn(m, d, generator=generator, device=ends.device, dtype=ends.dtype)
        return torch.cat([index.to(ends.dtype), noise], dim=1)

    drawn = distributed.shard(draw, n)
    t, eps = times[drawn[:, 0].long()], drawn[:, 1:]
    alpha, var = process.marginal(t)
    x = alpha[:, None] * ends + var.sqrt()[:, None] * eps
    score = energy._grad_log_prob(x).detach()
    keep = keep & finite_rows(score)
    score = zero_rows(score, keep)
    sigma = process.diffusion(t)
    step = (times[1] - times[0]).expand(n)
    features = control.time_features(t, sigma, step)
    u = control.control(features, x[:, None], score[:, None])[:, 0]
    error = (var.sqrt() / sigma)[:, None] * u + eps
    return _masked_mean(error.square().mean(-1), keep)[0]


def coarse_indices(n_steps: int, n_points: int) -> list[int]:
    """``n_points`` indices of an ``n_steps`` grid, ends included, evenly spread (the
    reference code's ``round(linspace(0, 128, 18))`` for the CDDS training grid)."""
    if not 2 <= n_points <= n_steps + 1:
        raise ValueError(
            f"'n_points' must be in [2, n_steps + 1] = [2, {n_steps + 1}]; got {n_points}."
        )
    return sorted({round(i * n_steps / (n_points - 1)) for i in range(n_points)})


def distillation_loss(
    student, target, sigma: Tensor, x: Tensor, sigma_next: Tensor, x_next: Tensor, kind="l2"
) -> Tensor:
    """Consistency-distillation loss between adjacent states of a teacher's flow (eq. 7).

    ``student(sigma, x)`` is pulled towards ``target(sigma_next, x_next)`` under
    stop-gradient, where ``x_next`` is the teacher's flow from ``x``, one coarse interval
    closer to the target end (``sigma_next < sigma``).

    Parameters
    ----------
    student, target : callable
        Consistency functions ``(sigma, x) -> x_T``; ``target`` is the online student
        (reference code) or its EMA.
    sigma, sigma_next : 0-d Tensor
        Noise levels ``T - t`` of ``x`` and ``x_next``.
    x, x_next : Tensor of shape (n, d)
    kind : {'l2', 'pseudo_huber'}, default='l2'
        ``'l2'``: mean squared error over samples and coordinates (reference code).
        ``'pseudo_huber'``: ``sqrt(|e|^2 + c^2) - c`` per sample with ``c = 0.00054 sqrt(d)``
        (Song and Dhariwal, 2023), divided by ``d``; less sensitive to outlier pairs.

    Returns
    -------
    value : Tensor
        Differentiable in ``student`` only.
    n_masked : Tensor
        Pairs left out because a state or the target's output is not finite.
    """
    keep = finite_rows(x, x_next)
    x, x_next = zero_rows(x, keep), zero_rows(x_next, keep)
    with torch.no_grad():
        goal = target(sigma_next, x_next)
        keep = keep & finite_rows(goal)
        goal = zero_rows(goal, keep)
    error = student(sigma, x) - goal
    if kind == "l2":
        return _masked_mean(error.square().mean(-1), keep)
    dim = x.shape[-1]
    c = 0.00054 * math.sqrt(dim)
    value, n_masked = _masked_mean((error.square().sum(-1) + c * c).sqrt() - c, keep)
    return value / dim, n_masked
