"""Rollouts: Euler–Maruyama SDE sampling with log-RND accumulation (method.md §1.4, §2.1).
The deterministic probability-flow sampler is in :mod:`skcds._core.flow`.

Every rollout loop is a fixed sequence of tensor operations writing into preallocated
buffers: no host–device synchronisation and no Python branching on tensor values per step.
The same loop therefore runs eagerly (the reference path, on any device) and under CUDA-graph
capture (:class:`CapturedSDE`, one launch per rollout). The standard normal increments are
drawn up front in one call from the caller's generator.

A *control* is any object with ``time_features(t, sigma, step)`` and
``control(features, x, score)``, as :class:`~skcds._core.networks.ControlNet` has; tests use
analytic controls with the same two methods.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from . import distributed
from .losses import finite_rows, zero_rows
from .networks import TimeFeatures

__all__ = [
    "CapturedSDE",
    "Rollout",
    "euler_maruyama",
    "standard_normal",
    "training_log_rnd",
]


class Rollout(NamedTuple):
    """The record of an SDE rollout on ``N`` steps for ``n`` samples of dimension ``d``.

    ``log_w = log_target - log_rnd`` is the importance log-weight of the terminal sample.
    ``log_rnd = log q(x_0..x_N) - sum_k log p_ref(x_k | x_{k+1})`` is the log-ratio of the
    discrete-time generative path density (prior and Euler–Maruyama transitions of the
    controlled SDE) to the reference's exact backward (noising) transitions. Because both
    are exact densities of the discretised processes, ``E[exp(log_w)] = Z`` exactly: the mean
    log-weight is a true lower bound (ELBO) and the importance estimate of ``Z`` is unbiased at
    every ``N``. As ``N`` grows it converges to the continuous-time RND of method.md §2.1.
    """

    x: Tensor  # (n, d) terminal states
    log_rnd: Tensor  # (n,)
    log_target: Tensor  # (n,) log rho(x)
    xs: Tensor | None = None  # (N + 1, n, d) states, when recorded
    scores: Tensor | None = None  # (N + 1, n, d) target scores at the states
    controls: Tensor | None = None  # (N, n, d) controls that drove the SDE
    noise: Tensor | None = None  # (N, n, d) standard normal increments

    @property
    def log_weights(self) -> Tensor:
        return self.log_target - self.log_rnd


def standard_normal(shape, *, generator, dtype, device, batch_axis: int = 0) -> Tensor:
    """Standard normal increments from an explicit generator (never the global RNG);
    data-parallel, this rank's rows along ``batch_axis`` of the global batch's draw."""
    shape = tuple(shape)

    def draw(m: int) -> Tensor:
        full = (*shape[:batch_axis], m, *shape[batch_axis + 1 :])
        return torch.randn(full, generator=generator, dtype=dtype, device=device)

    return distributed.shard(draw, shape[batch_axis], batch_axis)


def _step_features(features: TimeFeatures, k: int) -> TimeFeatures:
    return TimeFeatures(*(f[k : k + 1] for f in features))


def _time_features(control, process, times: Tensor, step: Tensor | None) -> TimeFeatures:
    t = times[:-1]
    return control.time_features(t, process.diffusion(t), step)


def _transition_terms(process, times: Tensor, sigma: Tensor, dim: int):
    """Time-only parts of the per-step log-ratio, for all steps at once: the reference's
    ``a_k`` and ``1 / var_k``, and the ratio of Gaussian normalisers ``const_k``."""
    a, var = process.noising_transition(times[:-1], times[1:])
    generative_var = sigma.square() * (times[1:] - times[:-1])
    return a, 0.5 * dim * (var.log() - generative_var.log()), 1.0 / var


def _sde(control, process, energy, times, x0, noise, step=None, record=True, generator=None):
    """Euler–Maruyama from ``x0`` accumulating the exact discrete-time ``log_rnd``.

    ``noise`` holds the ``(N, n, d)`` increments; if ``None`` they are drawn step by step from
    ``generator`` (sampling, where storing them all would cost ``N`` times the memory).
    """
    features = _time_features(control, process, times, step)
    dts = times[1:] - times[:-1]
    a, const, inv_var = _transition_terms(process, times, features.sigma.flatten(), x0.shape[-1])
    log_rnd = process.prior_log_prob(x0)
    x, xs, scores, controls = x0, [x0], [], []
    alive = torch.isfinite(x0).all(-1)
    # A trajectory that meets a non-finite value is dead: its sample and log-weight are NaN
    # and every loss leaves it out. Its NaN must not reach the gradient (0 * nan = nan for
    # every parameter). Differentiated through (KL), it continues as zeros from the step it
    # dies; otherwise NaN flows (cheaper), and the recorded rows are zeroed at the end.
    differentiable = torch.is_grad_enabled()
    guard = _finite_or_dead if differentiable else _unguarded
    block = _DeadRowsBlock()
    for k in range(dts.shape[0]):
        dt = dts[k]
        score, alive = guard(energy._grad_log_prob(x), alive)
        u = control.control(_step_features(features, k), x[None], score[None])[0]
        u, alive = guard(u, alive)
        xi = (
            noise[k]
            if noise is not None
            else standard_normal(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        )
        sigma = features.sigma[k, 0]
        x_next = x + (process.drift(times[k], x) + sigma * u) * dt + sigma * dt.sqrt() * xi
        x_next, alive = guard(x_next, alive)
        if differentiable and x_next.requires_grad:  # see _DeadRowsBlock
            x_next.register_hook(block)
        # log q(x_next | x) - log p_ref(x | x_next), both Gaussian
        residual = (x - a[k] * x_next).square().sum(-1)
        log_rnd = log_rnd + const[k] - 0.5 * xi.square().sum(-1) + 0.5 * inv_var[k] * residual
        x = x_next
        if record:
            xs.append(x), scores.append(score), controls.append(u)
    log_rnd = log_rnd + process.terminal_log_prob(x)
    if not differentiable:  # NaN or inf anywhere on a path reaches its end state or log_rnd
        alive = alive & finite_rows(x) & torch.isfinite(log_rnd)
    block.dead = ~alive
    log_rnd = _dead_to_nan(log_rnd, alive)
    log_target = _dead_to_nan(energy._log_prob(x), alive)
    if not record:
        return Rollout(_dead_to_nan(x, alive), log_rnd, log_target)
    scores.append(energy._grad_log_prob(x))
    keep = alive[None, :, None]  # whole dead rows to zero, for the losses' networks
    xs, scores, controls = (torch.where(keep, torch.stack(t), 0.0) for t in (xs, scores, controls))
    return Rollout(_dead_to_nan(x, alive), log_rnd, log_target, xs, scores, controls, noise)


def _finite_or_dead(values: Tensor, alive: Tensor) -> tuple[Tensor, Tensor]:
    """Rows of ``values`` (``(n, d)``) that are not finite end their trajectory: ``alive``
    loses them, and they continue as zeros (see :func:`~skcds._core.losses.zero_rows`); a
    dead trajectory's sample and log-weight are NaN, left out of every loss."""
    alive = alive & finite_rows(values)
    return zero_rows(values, alive), alive


class _DeadRowsBlock:
    """A gradient hook on the states of a differentiable rollout that zeroes the rows of
    trajectories found dead by the end (``dead``, set after the loop). A dead row's loss
    term is masked, so its upstream gradient is zero, but the energy and its score, taken
    where they are NaN, have NaN local derivatives, and ``0 * nan = nan`` would reach the
    parameters through the row's earlier, finite states. Rows never mix, so zeroing the
    whole row is exact. (The hook also sees the score's own gradient, taken during the
    rollout, before ``dead`` is known: that one passes unchanged.)"""

    dead: Tensor | None = None

    def __call__(self, grad: Tensor) -> Tensor:
        if self.dead is None:
            return grad
        return torch.where(self.dead[:, None], torch.zeros_like(grad), grad)


def _unguarded(values: Tensor, alive: Tensor) -> tuple[Tensor, Tensor]:
    return values, alive


def _dead_to_nan(values: Tensor, alive: Tensor) -> Tensor:
    """NaN in the rows of dead trajectories (the sampler's honest output for them)."""
    mask = alive if values.dim() == 1 else alive[:, None]
    return torch.where(mask, values, torch.full_like(values, math.nan))


def euler_maruyama(
    control,
    process,
    energy,
    times: Tensor,
    x0: Tensor,
    noise: Tensor | None = None,
    step: Tensor | None = None,
    *,
    record: bool = True,
    generator: torch.Generator | None = None,
) -> Rollout:
    """Simulate the controlled SDE on ``times`` from ``x0``.

    Parameters
    ----------
    control : ControlNet or compatible
        The control ``u``.
    process : reference process
        Drift, diffusion and prior (see :mod:`skcds._core.reference`).
    energy : Energy
        Target; its ``_grad_log_prob`` feeds the control and ``_log_prob`` the weights.
    times : Tensor of shape (N + 1,)
        Time grid.
    x0 : Tensor of shape (n, d)
        Initial states (prior samples).
    noise : Tensor of shape (N, n, d), optional
        Standard normal increments; drawn step by step from ``generator`` when omitted.
    step : Tensor, optional
        Step-size conditioning of a step-conditioned control.
    record : bool, default=True
        Keep the trajectory (states, scores, controls), as the training losses need.
    generator : torch.Generator, optional
        Source of the increments when ``noise`` is omitted.

    Returns
    -------
    Rollout
        Under ``torch.no_grad`` this is the detached rollout of the log-variance loss; with
        gradients enabled it is differentiable end to end (the KL loss).
    """
    if noise is None and record:
        noise = standard_normal(
            (times.shape[0] - 1, *x0.shape),
            generator=generator,
            dtype=x0.dtype,
            device=x0.device,
            batch_axis=1,
        )
    return _sde(control, process, energy, times, x0, noise, step, record, generator)


def training_log_rnd(control, process, times: Tensor, roll: Rollout, step=None) -> Tensor:
    """``log_rnd`` of a detached rollout, differentiable in the control (log-variance loss).

    The states do not depend on the parameters (the SDE was driven by the detached control
    ``u_sde``), so the control ``u`` is re-evaluated on all ``N x n`` states in one batched
    call. Only the generative transition densities depend on ``u``:
    ``log q_k = -|xi_k + (u_sde - u) sqrt(dt)|^2 / 2 + const``. Their change from ``u_sde``
    is added to the recorded value, so the result equals ``roll.log_rnd`` at equal parameters
    and carries the exact gradient.
    """
    features = _time_features(control, process, times, step)
    u = control.control(features, roll.xs[:-1], roll.scores[:-1])  # (N, n, d)
    sqrt_dt = (times[1:] - times[:-1]).sqrt().reshape(-1, 1, 1)
    shifted = roll.noise + (roll.controls - u) * sqrt_dt
    change = -0.5 * (shifted.square() - roll.noise.square()).sum((0, 2))
    return roll.log_rnd + change


class CapturedSDE:
    """A recorded Euler–Maruyama rollout captured once in a CUDA graph and replayed.

    The whole ``N``-step loop (network, target score and updates) becomes one graph launch,
    removing the Python and kernel-launch overhead that dominates an eager rollout of a small
    network. Parameters are read from their storage at replay time, so in-place optimiser
    updates (and in-place clip changes) are seen by every replay. The returned rollout lives
    in static buffers that the next replay overwrites. Run under ``torch.no_grad``.
    ``times`` and ``step`` are copied at capture: a later call uses the grid it was built with.
    """

    def __init__(self, control, process, energy, times: Tensor, x0: Tensor, step=None) -> None:
        # the graph reads its inputs from fixed addresses: own them, never borrow the caller's
        self._times = times.clone()
        self._step = None if step is None else step.clone()
        self._x0 = x0.clone()
        self._noise = x0.new_zeros((times.shape[0] - 1, *x0.shape))
        args = (control, process, energy, self._times, self._x0, self._noise, self._step)
        device = x0.device
        stream = torch.cuda.Stream(device=device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream), torch.no_grad():
            for _ in range(2):  # warm up kernels and the allocator outside the capture
                _sde(*args)
        torch.cuda.current_stream(device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), torch.no_grad():
            self._out = _sde(*args)

    def __call__(self, x0: Tensor, noise: Tensor) -> Rollout:
        self._x0.copy_(x0)
        self._noise.copy_(noise)
        self.graph.replay()
        return self._out
