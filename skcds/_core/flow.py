"""The Euler probability-flow map and its exact density by change of variables (method.md
§4; beyond the paper, which has no valid weights for the deterministic sampler).

A ``k``-step Euler sampler is a deterministic map ``x_0 -> x_k`` with steps
``x_{j+1} = x_j + dt_j v(t_j, x_j)``, ``v = drift + sigma u / 2``. Its output density is

    log q(x_k) = log p_prior(x_0) - sum_j log |det (I + dt_j dv/dx(t_j, x_j))|,

if the map is injective, so ``log rho(x_k) - log q(x_k)`` is a valid importance log-weight:
its mean is a true lower bound of ``log Z`` and the mean of its exponential an unbiased
estimate of ``Z`` (up to the truncation below).

The Jacobian of one step is assembled from two parts: ``dv/dx`` at a fixed target score (the
network and the drift, by ``torch.func.jacrev``) and the score's own Jacobian, the Hessian of
``log rho`` (``Energy._hessian_log_prob``), entering through ``dv/dscore``. A control uses the
score element-wise (:class:`~skcds._core.networks.ControlNet` does: the clipped Langevin term),
so ``dv/dscore`` is diagonal and one vector-Jacobian product with ``1`` gives it. At
``t = 0`` the Langevin term weighs the target score by ``t / T = 0``: no Hessian is needed.

The formula needs an injective map, which coarse Euler steps on a stiff target need not be.
An injective map has one orientation everywhere, so :func:`euler_flow` reports, per step,
the fraction of samples whose determinant has the minority sign: any such step provably
folds, and the caller must not present those weights as valid. (One sign everywhere is
necessary, not sufficient, for injectivity.)

The prior is truncated to a box, so the map's image is bounded: ``E_q[w]`` is the target's
mass on that image, ``Z`` minus the mass the sampler cannot reach (negligible when the
target sits well inside the image; the SDE's weights have no such limit).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..exceptions import EnergyError
from .logdet import jacobian_log_abs_det, slq_log_abs_det

__all__ = ["euler_flow", "flow_velocity", "heun_flow", "step_jacobian", "step_products"]


def flow_velocity(control, process, t: Tensor, x: Tensor, score: Tensor, step=None) -> Tensor:
    """Probability-flow velocity ``drift + sigma u / 2`` at times ``t`` of shape ``(m,)``.

    ``x`` and ``score`` have shape ``(m, k, d)``: ``m = 1`` for a batch at one time, ``k = 1``
    for one time per sample. ``step`` is the step-size conditioning (ignored by a control
    without it).
    """
    sigma = process.diffusion(t)
    conditioning = step if getattr(control, "step_conditioned", False) else None
    features = control.time_features(t, sigma, conditioning)
    u = control.control(features, x, score)
    return process.drift(t.reshape(-1, 1, 1), x) + 0.5 * features.sigma * u


def _single_step(control, process, t, dt, step):
    """``(x, score) -> x + dt v`` for one sample of shape ``(d,)``, for ``torch.func``."""

    def f(x: Tensor, score: Tensor) -> Tensor:
        return (
            x
            + dt * flow_velocity(control, process, t, x[None, None], score[None, None], step)[0, 0]
        )

    return f


def step_jacobian(
    control, process, energy, t: Tensor, dt: Tensor, x: Tensor, step=None, score=None
):
    """Exact Jacobians ``d x_{j+1} / d x_j`` of one Euler step at a shared time ``t``.

    Parameters
    ----------
    t, dt : 0-d Tensor
        Time and step length.
    x : Tensor of shape (n, d)
        States.
    step : Tensor, optional
        Step-size conditioning.
    score : Tensor of shape (n, d), optional
        The target score at ``x``, when the caller has it already (computed otherwise).

    Returns
    -------
    Tensor of shape (n, d, d)
    """
    t1 = t.reshape(1)
    f = _single_step(control, process, t1, dt, None if step is None else step.reshape(1))
    score = (energy._grad_log_prob(x) if score is None else score).detach()
    jac = torch.func.vmap(torch.func.jacrev(f, argnums=0))(x, score)

    def gain(xi: Tensor, si: Tensor) -> Tensor:  # the diagonal, as 1^T (d f / d score)
        _, pullback = torch.func.vjp(lambda s: f(xi, s), si)
        return pullback(torch.ones_like(si))[0]

    score_gain = torch.func.vmap(gain)(x, score)
    if bool(score_gain.any()):  # zero at t = 0 for the 'lerp' control: no Hessian needed
        jac = jac + score_gain[:, :, None] * energy._hessian_log_prob(x)
    return jac


def step_products(control, process, energy, t: Tensor, dt: Tensor, x: Tensor, step=None):
    """``(jvp, vjp)``: products ``v -> J v`` and ``u -> J^T u`` with the Jacobians of one Euler
    step at states ``x`` of shape ``(n, d)``, by autograd (``J v`` by the double-vjp trick),
    without forming ``J``. For the stochastic log-determinant in high dimension."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        score = energy._grad_log_prob(x)  # keeps its graph: x requires grad
        if not score.requires_grad:
            raise EnergyError(
                f"{type(energy).__name__}: log-weights of a deterministic sampler need the "
                "derivative of the target's score, which torch cannot take for this energy."
            )
        y = x + dt * flow_velocity(control, process, t.reshape(1), x[None], score[None], step)[0]

    def vjp(u: Tensor) -> Tensor:
        return torch.autograd.grad(y, x, u, retain_graph=True)[0]

    def jvp(v: Tensor) -> Tensor:
        with torch.enable_grad():
            u = torch.zeros_like(y, requires_grad=True)
            (transposed,) = torch.autograd.grad(y, x, u, create_graph=True)
            return torch.autograd.grad(transposed, u, v, retain_graph=True)[0]

    return jvp, vjp


def _log_abs_det(control, process, energy, t, dt, x, d, log_det, generator, score):
    """``(log |det J|, reversed)`` of one step: exact, with the fraction of samples of the
    minority orientation (0 when all agree), or SLQ (no orientation: 0)."""
    if log_det == "exact":
        jac = step_jacobian(control, process, energy, t, dt, x, d, score=score)
        return jacobian_log_abs_det(jac)
    jvp, vjp = step_products(control, process, energy, t, dt, x, d)
    value = slq_log_abs_det(
        jvp, vjp, tuple(x.shape), generator=generator, dtype=x.dtype, device=x.device
    )
    return value.detach(), 0.0


def euler_flow(
    control,
    process,
    energy,
    times: Tensor,
    x0: Tensor,
    step: Tensor | None = None,
    *,
    log_density: bool = False,
    log_det: str = "exact",
    generator: torch.Generator | None = None,
):
    """Euler steps of the probability-flow ODE on ``times`` from ``x0``.

    Parameters
    ----------
    times : Tensor of shape (k + 1,)
        Time grid of the ``k`` steps.
    x0 : Tensor of shape (n, d)
        Prior samples.
    step : Tensor, optional
        Step-size conditioning of a step-conditioned control; defaults to each step's own
        length, so that a coarse grid gives the SCDS ``k``-step sampler.
    log_density : bool, default=False
        Also return ``log q(x_k)`` by the change of variables (exact for an injective map;
        costs one ``d x d`` Jacobian and determinant per sample and step), and the number of
        steps proven to fold.
    log_det : {'exact', 'stochastic'}, default='exact'
        ``'exact'``: batched Jacobians and their determinants, with the fold check.
        ``'stochastic'``: the unbiased-in-trace, quadrature-biased SLQ estimate of
        :mod:`skcds._core.logdet` from Jacobian-vector products, ``O(d^2)`` memory-free of
        ``d x d`` matrices; no fold check (it sees only ``|det J|``).
    generator : torch.Generator, optional
        Source of the probes of ``log_det='stochastic'``.

    Returns
    -------
    x : Tensor of shape (n, d)
    log_q : Tensor of shape (n,)
        Only when ``log_density=True``.
    reversed_fractions : list of float
        Only when ``log_density=True``: per step, the fraction of samples whose Jacobian
        determinant has the minority sign. Any nonzero entry proves that the map folds (is
        not injective) and that ``log_q`` is not its density there.
    """
    x = x0
    log_q = process.prior_log_prob(x0) if log_density else None
    reversed_fractions = []
    for j in range(times.shape[0] - 1):
        t, dt = times[j], times[j + 1] - times[j]
        d = (dt if step is None else step).reshape(1)
        score = energy._grad_log_prob(x)
        if log_density:
            value, reversed_ = _log_abs_det(
                control, process, energy, t, dt, x, d, log_det, generator, score
            )
            log_q = log_q - value
            reversed_fractions.append(reversed_)
        x = x + dt * flow_velocity(control, process, t.reshape(1), x[None], score[None], d)[0]
    return (x, log_q, reversed_fractions) if log_density else x


def heun_flow(control, process, energy, times: Tensor, x0: Tensor, step=None) -> Tensor:
    """Heun (explicit trapezoid) steps of the probability-flow ODE on ``times`` from ``x0``.

    Second order, two velocity evaluations per step: the teacher solver option of
    :class:`~skcds.ConsistentDistiller` (the reference code uses Euler). No log-density:
    distillation needs the states only.
    """
    x = x0
    for j in range(times.shape[0] - 1):
        t, t_next = times[j].reshape(1), times[j + 1].reshape(1)
        dt = t_next - t
        d = (dt if step is None else step).reshape(1)
        v = flow_velocity(control, process, t, x[None], energy._grad_log_prob(x)[None], d)[0]
        x_euler = x + dt * v
        score = energy._grad_log_prob(x_euler)
        v_next = flow_velocity(control, process, t_next, x_euler[None], score[None], d)[0]
        x = x + 0.5 * dt * (v + v_next)
    return x
