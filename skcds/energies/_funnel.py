"""Neal's funnel (method.md §5), normalised."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._base import Energy
from ._utils import check_positive_float, check_positive_int, sample_device_dtype

__all__ = ["Funnel"]

_LOG_2PI = math.log(2 * math.pi)


class Funnel(Energy):
    r"""Neal's funnel, a normalised density (``log Z = 0``) with an exact sampler.

    .. math::

        x_0 \sim \mathcal N(0, \sigma^2), \qquad
        x_{1:} \mid x_0 \sim \mathcal N(0, e^{x_0} I_{d-1})

    Parameters
    ----------
    dim : int, default=10
        Dimension ``d >= 2`` of the sample space.
    scale : float, default=3.0
        Standard deviation ``sigma`` of the first coordinate (the reference code uses
        ``sigma^2 = d - 1``, which is 9 for ``d = 10``).

    References
    ----------
    R. M. Neal, "Slice sampling", Annals of Statistics 31(3), 2003.

    Examples
    --------
    >>> import torch
    >>> from skcds.energies import Funnel
    >>> funnel = Funnel(dim=3)
    >>> funnel.log_prob(torch.zeros(1, 3, dtype=torch.float64))
    tensor([-3.8554], dtype=torch.float64)
    >>> funnel.sample(5, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([5, 3])
    """

    def __init__(self, dim: int = 10, scale: float = 3.0) -> None:
        super().__init__()
        self.dim = check_positive_int(dim, "dim", minimum=2)
        self.scale = check_positive_float(scale, "scale")
        self.register_buffer("_scale", torch.tensor(self.scale, dtype=torch.float64))
        # log N(x0; 0, sigma^2) constant and the (d - 1) / 2 log(2 pi) of the conditional
        self._const = -math.log(self.scale) - 0.5 * self.dim * _LOG_2PI

    def _log_prob(self, x: Tensor) -> Tensor:
        x0, rest = x[:, 0], x[:, 1:]
        sq = (rest * rest).sum(1)
        first = -0.5 * (x0 / self._scale.to(x)) ** 2
        return self._const + first - 0.5 * (self.dim - 1) * x0 - 0.5 * sq * torch.exp(-x0)

    def _grad_log_prob(self, x: Tensor) -> Tensor:
        x0, rest = x[:, :1], x[:, 1:]
        inv_var = torch.exp(-x0)  # (n, 1)
        scale = self._scale.to(x)
        sq = (rest * rest).sum(1, keepdim=True)
        g0 = -x0 / (scale * scale) - 0.5 * (self.dim - 1) + 0.5 * sq * inv_var
        return torch.cat([g0, -rest * inv_var], dim=1)

    @property
    def log_normalizer(self) -> float:
        """``0.0``: the funnel is normalised."""
        return 0.0

    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        device, dtype = sample_device_dtype(self, generator)
        eps = torch.randn((n, self.dim), generator=generator, device=device, dtype=dtype)
        x0 = self._scale.to(eps) * eps[:, :1]
        return torch.cat([x0, eps[:, 1:] * torch.exp(0.5 * x0)], dim=1)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, scale={self.scale}"
