"""Mixtures of diagonal Gaussians: the 9-mode grid GMM and the 40-mode GMM (method.md §5)."""

from __future__ import annotations

import math

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor

from ._base import Energy
from ._utils import (
    as_float64_array,
    categorical,
    check_positive_float,
    check_positive_int,
    sample_device_dtype,
    to_buffer,
)

__all__ = ["GaussianMixture"]


def _broadcast_scales(scales: ArrayLike, k: int, dim: int) -> np.ndarray:
    """Scales as a ``(k, dim)`` array from a scalar, a ``(k,)`` or a ``(k, dim)`` array."""
    array = as_float64_array(scales, "scales")
    if array.shape not in {(), (k,), (k, dim)}:
        raise ValueError(
            f"'scales' must be a float, or an array of shape ({k},) or ({k}, {dim}); "
            f"got an array of shape {array.shape}."
        )
    if array.shape == (k,):
        array = array[:, None]
    if (array <= 0).any():
        raise ValueError("'scales' must be > 0; got a value <= 0.")
    return np.broadcast_to(array, (k, dim))


def _normalised_weights(weights: ArrayLike | None, k: int) -> np.ndarray:
    """Mixture weights as a ``(k,)`` probability vector (uniform when ``weights`` is None)."""
    if weights is None:
        return np.full(k, 1.0 / k)
    array = as_float64_array(weights, "weights", 1)
    if array.shape != (k,) or (array < 0).any() or array.sum() <= 0:
        raise ValueError(
            f"'weights' must be {k} non-negative numbers with a positive sum; got an array "
            f"of shape {array.shape} with minimum {array.min(initial=np.inf)}."
        )
    return array / array.sum()


class GaussianMixture(Energy):
    r"""Mixture of Gaussians with diagonal covariances, normalised (``log Z = 0``).

    .. math::

        \rho(x) = \sum_{j=1}^k w_j \, \mathcal N(x; \mu_j, \mathrm{diag}(s_j^2))

    Parameters
    ----------
    means : array-like of shape (k, dim)
        Component means.
    scales : float or array-like of shape (k,) or (k, dim)
        Component standard deviations: one for all, one per component (isotropic), or one
        per component and coordinate (diagonal).
    weights : array-like of shape (k,), default=None
        Non-negative mixture weights, normalised to sum to one; ``None`` means equal weights.

    Attributes
    ----------
    dim : int
        Dimension of the sample space, ``means.shape[1]``.
    n_components : int
        Number of components ``k``.

    See Also
    --------
    GaussianMixture.grid : The paper's 9-mode GMM.
    GaussianMixture.random : The 40-mode GMM of the reference code.

    Examples
    --------
    >>> import torch
    >>> from skcds.energies import GaussianMixture
    >>> gmm = GaussianMixture([[0.0, 0.0], [3.0, 0.0]], scales=1.0)
    >>> gmm.log_prob(torch.zeros(1, 2, dtype=torch.float64))
    tensor([-2.5200], dtype=torch.float64)
    >>> gmm.sample(4, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([4, 2])
    """

    def __init__(
        self, means: ArrayLike, scales: ArrayLike = 1.0, weights: ArrayLike | None = None
    ) -> None:
        super().__init__()
        self.means, self.scales, self.weights = means, scales, weights
        mu = as_float64_array(means, "means", 2)
        k, self.dim = mu.shape
        self.n_components = k
        sigma = _broadcast_scales(scales, k, self.dim)
        log_w = np.log(_normalised_weights(weights, k))
        # per-component log normaliser, so that _log_prob is one logsumexp
        log_c = log_w - np.log(sigma).sum(1) - 0.5 * self.dim * math.log(2 * math.pi)
        self.register_buffer("_means", to_buffer(mu))
        self.register_buffer("_scales", to_buffer(sigma))
        self.register_buffer("_log_weights", to_buffer(log_w))
        self.register_buffer("_log_consts", to_buffer(log_c))

    @classmethod
    def grid(
        cls, n_per_axis: int = 3, spacing: float = 5.0, scale: float = 0.3**0.5
    ) -> GaussianMixture:
        """Equal-weight mixture with means on a centred square grid in 2-D.

        The defaults give the paper's 9-mode GMM: means on ``{-5, 0, 5}^2``, standard
        deviation ``sqrt(0.3)`` per coordinate.

        Parameters
        ----------
        n_per_axis : int, default=3
            Number of means per axis (``n_per_axis ** 2`` components).
        spacing : float, default=5.0
            Distance between neighbouring means.
        scale : float, default=sqrt(0.3)
            Standard deviation of every component and coordinate.

        Returns
        -------
        GaussianMixture

        Examples
        --------
        >>> from skcds.energies import GaussianMixture
        >>> gmm = GaussianMixture.grid()
        >>> gmm.n_components, gmm.dim, gmm.log_normalizer
        (9, 2, 0.0)
        """
        n = check_positive_int(n_per_axis, "n_per_axis")
        spacing = check_positive_float(spacing, "spacing")
        axis = spacing * (torch.arange(n, dtype=torch.float64) - (n - 1) / 2)
        means = torch.cartesian_prod(axis, axis).reshape(-1, 2)
        return cls(means, check_positive_float(scale, "scale"))

    @classmethod
    def random(
        cls,
        n_components: int = 40,
        dim: int = 2,
        low: float = -40.0,
        high: float = 40.0,
        scale: float = math.log1p(math.e),
        seed: int = 42,
    ) -> GaussianMixture:
        """Equal-weight mixture with means drawn uniformly in a box (the 40-mode GMM).

        The means are ``low + (high - low) * torch.rand((n_components, dim))`` drawn in
        float64 from a ``torch.Generator`` seeded with ``seed``, so the same arguments always
        give the same target.

        Parameters
        ----------
        n_components : int, default=40
            Number of components.
        dim : int, default=2
            Dimension of the sample space.
        low, high : float, default=-40.0, 40.0
            Bounds of the box for the means.
        scale : float, default=softplus(1) = 1.3133
            Standard deviation of every component and coordinate.
        seed : int, default=42
            Seed of the generator that draws the means.

        Returns
        -------
        GaussianMixture

        Examples
        --------
        >>> from skcds.energies import GaussianMixture
        >>> gmm = GaussianMixture.random()
        >>> tuple(gmm.means.shape), round(float(gmm.means.abs().max()), 1) <= 40.0
        ((40, 2), True)
        """
        k = check_positive_int(n_components, "n_components")
        dim = check_positive_int(dim, "dim")
        if not (np.isfinite(low) and np.isfinite(high) and low < high):
            raise ValueError(
                f"'low' must be < 'high', both finite; got low={low!r}, high={high!r}."
            )
        g = torch.Generator().manual_seed(int(seed))
        means = low + (high - low) * torch.rand((k, dim), generator=g, dtype=torch.float64)
        return cls(means, check_positive_float(scale, "scale"))

    def _component_log_probs(self, x: Tensor) -> Tensor:
        """``log w_j + log N(x; mu_j, s_j^2)`` of shape ``(n, k)``."""
        z = (x[:, None, :] - self._means.to(x)) / self._scales.to(x)  # (n, k, d)
        return self._log_consts.to(x) - 0.5 * (z * z).sum(-1)

    def _log_prob(self, x: Tensor) -> Tensor:
        return torch.logsumexp(self._component_log_probs(x), dim=1)

    def _grad_log_prob(self, x: Tensor) -> Tensor:
        resp = torch.softmax(self._component_log_probs(x), dim=1)  # (n, k)
        scales = self._scales.to(x)
        per_component = (self._means.to(x) - x[:, None, :]) / (scales * scales)  # (n, k, d)
        return (resp[:, :, None] * per_component).sum(1)

    @property
    def log_normalizer(self) -> float:
        """``0.0``: the mixture is normalised."""
        return 0.0

    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        device, dtype = sample_device_dtype(self, generator)
        probs = self._log_weights.to(device).exp()
        idx = categorical(probs, n, generator)  # (n,)
        eps = torch.randn((n, self.dim), generator=generator, device=device, dtype=dtype)
        return self._means.to(device)[idx] + self._scales.to(device)[idx] * eps

    def extra_repr(self) -> str:
        return f"dim={self.dim}, n_components={self.n_components}"
