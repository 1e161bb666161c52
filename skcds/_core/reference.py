"""Reference processes of diffusion samplers and their priors (method.md §1.4, §2.3).

A reference process is an object with

* ``terminal_time``, ``drift(t, x)`` and ``diffusion(t)`` of the generative SDE (the control
  adds ``diffusion(t) * u``);
* ``noising_transition(t, t_next)``: the reference's Gaussian kernel between grid points,
  ``N(x_t; a x_{t_next}, var I)``, returned as ``(a, var)``; it makes the discrete-time
  importance weights exact;
* ``prior_sample``, ``prior_log_prob`` and ``terminal_log_prob``: the path log-ratio of a
  rollout is ``prior_log_prob(x_0) + sum_k [log q_k - log kernel_k] + terminal_log_prob(x_N)``;
* ``langevin``: the Langevin-style term of its control network (``'lerp'`` or ``'score'``)
  and ``has_flow``: whether its probability-flow ODE is the one the flow samplers integrate.

Three processes, one per diffusion sampler of the paper's baselines:

* ``'vp'`` (:class:`VPProcess`): DIS, the time reversal of a variance-preserving noising;
* ``'ou'`` (:class:`OUProcess`): DDS, the stationary Ornstein–Uhlenbeck process itself;
* ``'brownian'`` (:class:`BrownianProcess`): PIS, scaled Brownian motion from a Dirac at 0.

New processes go in :data:`REFERENCES`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "FLOW_REFERENCES",
    "REFERENCES",
    "BrownianProcess",
    "OUProcess",
    "VPProcess",
    "get_reference",
]


class VPProcess:
    """Variance-preserving process of DIS in generative time, with a truncated Gaussian prior.

    ``beta(t) = beta_max + (beta_min - beta_max) t / T`` (``beta_max`` at the prior),
    drift ``+beta(t) x / 2`` and diffusion ``sqrt(beta(t))``. The prior ``N(0, I)`` is
    truncated per coordinate to its central ``1 - truncation`` mass; its log-density is that of
    the truncated law (the reference code uses the untruncated one, which is off by
    ``-d log(1 - truncation)``, 0.16 nats at d = 1600), so importance weights stay exact.
    """

    def __init__(
        self,
        beta_min: float = 0.1,
        beta_max: float = 10.0,
        terminal_time: float = 1.0,
        truncation: float = 1e-4,
    ) -> None:
        self.beta_min, self.beta_max = beta_min, beta_max
        self.terminal_time, self.truncation = terminal_time, truncation

    langevin = "lerp"
    has_flow = True

    def beta(self, t: Tensor) -> Tensor:
        return self.beta_max + (self.beta_min - self.beta_max) * (t / self.terminal_time)

    def integral_beta(self, s: Tensor | float, t: Tensor | float) -> Tensor | float:
        """Exact ``int_s^t beta`` (trapezoid is exact: beta is linear in t)."""
        return 0.5 * (self.beta(s) + self.beta(t)) * (t - s)

    def drift(self, t: Tensor, x: Tensor) -> Tensor:
        return 0.5 * self.beta(t) * x

    def diffusion(self, t: Tensor) -> Tensor:
        return self.beta(t).sqrt()

    def noising_transition(self, t: Tensor, t_next: Tensor) -> tuple[Tensor, Tensor]:
        """Exact Gaussian transition of the noising (Ornstein–Uhlenbeck) SDE back from
        ``t_next`` to ``t``: ``x_t | x_{t_next} ~ N(a x_{t_next}, var I)``; returns ``(a, var)``
        with ``a = exp(-int_t^t_next beta / 2)`` and ``var = 1 - a^2``."""
        a = torch.exp(-0.5 * self.integral_beta(t, t_next))
        return a, 1 - a.square()

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """Noising marginal ``X_t | X_T = x ~ N(alpha x, var I)``: returns ``(alpha, var)``."""
        alpha = torch.exp(-0.5 * self.integral_beta(t, torch.full_like(t, self.terminal_time)))
        return alpha, 1.0 - alpha**2

    @property
    def truncation_radius(self) -> float:
        """Per-coordinate bound ``|x_i| <= c`` of the truncated prior (3.8906 for 1e-4)."""
        tail = torch.tensor(1.0 - self.truncation / 2, dtype=torch.float64)
        return float(torch.special.ndtri(tail))

    def prior_sample(
        self, n: int, dim: int, *, generator: torch.Generator | None, dtype, device
    ) -> Tensor:
        x = torch.empty((n, dim), dtype=dtype, device=device)
        c = self.truncation_radius
        return torch.nn.init.trunc_normal_(x, a=-c, b=c, generator=generator)

    def prior_log_prob(self, x: Tensor) -> Tensor:
        """Log-density of the truncated prior at points inside its support."""
        dim = x.shape[-1]
        normalizer = 0.5 * dim * math.log(2 * math.pi) + dim * math.log1p(-self.truncation)
        return -0.5 * (x**2).sum(-1) - normalizer

    def prior_score(self, x: Tensor) -> Tensor:
        return -x

    def terminal_log_prob(self, x: Tensor) -> float:
        """0: the reference path of DIS ends at the target, so no terminal correction."""
        return 0.0

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(beta_min={self.beta_min}, beta_max={self.beta_max}, "
            f"terminal_time={self.terminal_time})"
        )


class OUProcess(VPProcess):
    """The reference of DDS (Vargas, Grathwohl and Doucet, 2023): the Ornstein–Uhlenbeck SDE
    ``dX = -beta(t) X / 2 dt + sqrt(beta(t)) dW`` run forward from its stationary law ``N(0, I)``.

    The control steers it from the prior to the target. The schedule, prior truncation and
    kernel are those of :class:`VPProcess`: the OU process is reversible with respect to
    ``N(0, I)``, so its transitions read backwards are the VP noising kernels, and the path
    log-ratio needs no terminal term (the forward kernels would add ``log N(x_N; 0, I) -
    log N(x_0; 0, I)``, which cancels against the reference's stationary prior). Its
    probability-flow ODE is not the one of DIS, so it has no flow samplers.
    """

    langevin = "score"
    has_flow = False

    def drift(self, t: Tensor, x: Tensor) -> Tensor:
        return -0.5 * self.beta(t) * x


class BrownianProcess:
    """The reference of PIS (Zhang and Chen, 2022): ``dX = sigma dW`` from ``X_0 = 0``.

    ``sigma = sqrt(0.2)`` and ``T = 5`` as in the reference code. Every path starts at the
    origin, so the prior's Dirac mass cancels between the generative and reference paths
    (``prior_log_prob`` is 0). The kernels are the forward Brownian transitions
    ``N(x_{k+1}; x_k, sigma^2 dt)``, whose log-density equals that of the ``(a, var) =
    (1, sigma^2 dt)`` kernel the rollout evaluates; the reference's terminal marginal
    ``N(0, sigma^2 T I)`` is divided out by ``terminal_log_prob``. The weights are exact at
    every number of steps. A probability-flow ODE from a Dirac maps every sample to the same
    point, so there are no flow samplers.
    """

    langevin = "score"
    has_flow = False

    def __init__(self, sigma: float = math.sqrt(0.2), terminal_time: float = 5.0) -> None:
        self.sigma, self.terminal_time = sigma, terminal_time

    def drift(self, t: Tensor, x: Tensor) -> Tensor:
        return torch.zeros_like(x)

    def diffusion(self, t: Tensor) -> Tensor:
        return torch.full_like(t, self.sigma)

    def noising_transition(self, t: Tensor, t_next: Tensor) -> tuple[Tensor, Tensor]:
        return torch.ones_like(t), self.sigma**2 * (t_next - t)

    def prior_sample(
        self, n: int, dim: int, *, generator: torch.Generator | None, dtype, device
    ) -> Tensor:
        return torch.zeros((n, dim), dtype=dtype, device=device)

    def prior_log_prob(self, x: Tensor) -> Tensor:
        return x.new_zeros(x.shape[0])

    def terminal_log_prob(self, x: Tensor) -> Tensor:
        """``log N(x; 0, sigma^2 T I)``, the reference's law at the terminal time."""
        var = self.sigma**2 * self.terminal_time
        return -0.5 * x.square().sum(-1) / var - 0.5 * x.shape[-1] * math.log(2 * math.pi * var)

    def __repr__(self) -> str:
        return f"BrownianProcess(sigma={self.sigma:.4g}, terminal_time={self.terminal_time})"


REFERENCES = {"vp": VPProcess, "ou": OUProcess, "brownian": BrownianProcess}
# the references whose probability-flow ODE the flow samplers (SCDS, CDDS) integrate
FLOW_REFERENCES = tuple(name for name, cls in REFERENCES.items() if cls.has_flow)


def get_reference(name: str, **kwargs):
    """Build the reference process registered under ``name`` in :data:`REFERENCES`."""
    try:
        return REFERENCES[name](**kwargs)
    except KeyError:
        raise ValueError(
            f"'reference' must be one of {sorted(REFERENCES)}; got {name!r}."
        ) from None
