"""Log-Gaussian Cox process posterior on a binned 2-D point pattern (method.md §5)."""

from __future__ import annotations

import math

import numpy as np
import torch
from numpy.typing import ArrayLike
from scipy.linalg import solve_triangular
from torch import Tensor

from ._base import Energy
from ._utils import as_float64_array, check_positive_int, to_buffer

__all__ = ["LGCP"]

_SIGNAL_VARIANCE = 1.91
_LENGTH_SCALE = 1.0 / 33  # beta, in units of the unit square


def _bin_counts(points: np.ndarray, n_bins: int) -> np.ndarray:
    """Counts on an ``n_bins x n_bins`` grid of the unit square, flattened row-major.

    A point ``(p, q)`` falls in row ``floor(n_bins p)`` and column ``floor(n_bins q)``; points
    on the upper or right edge go to the last bin (the convention of Berner's ``cox.py``).
    """
    idx = np.minimum(np.floor(points * n_bins).astype(np.int64), n_bins - 1)  # (N, 2)
    return np.bincount(idx[:, 0] * n_bins + idx[:, 1], minlength=n_bins * n_bins)


def _gram_matrix(n_bins: int) -> np.ndarray:
    """``K_ij = sigma^2 exp(-||b_i - b_j|| / (n_bins beta))`` over bin indices ``b`` (row-major)."""
    axis = np.arange(n_bins, dtype=np.float64)
    bins = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)  # (d, 2)
    dist = np.sqrt(((bins[:, None, :] - bins[None, :, :]) ** 2).sum(-1))
    return _SIGNAL_VARIANCE * np.exp(-dist / (n_bins * _LENGTH_SCALE))


class LGCP(Energy):
    r"""Log-Gaussian Cox process posterior over the log-intensity of a binned point pattern.

    The unit square is cut into ``n_bins x n_bins`` cells with counts ``y``; the latent
    log-intensity ``x`` (one value per cell, ``dim = n_bins^2``) has a Gaussian-process prior
    and a Poisson likelihood:

    .. math::

        \log \rho(x) = \log \mathcal N(x; \mu_0 \mathbf 1, K)
        + \sum_i \left( y_i x_i - a\, e^{x_i} \right),

    with ``mu_0 = log(N) - sigma^2 / 2`` (``N`` points), ``sigma^2 = 1.91``,
    ``K_ij = sigma^2 exp(-||b_i - b_j|| / (n_bins beta))`` over the cells' integer
    coordinates ``b``, ``beta = 1/33`` and cell area ``a = 1 / n_bins^2``. This is the
    unwhitened parametrisation of Møller et al. as coded in Berner's ``sde_sampler``; the
    log-density includes the Gaussian normaliser. ``K`` is inverted once, in float64.

    Parameters
    ----------
    points : array-like of shape (N, 2)
        Point locations in the unit square ``[0, 1]^2``, e.g.
        :func:`skcds.datasets.load_pines`.
    n_bins : int, default=40
        Cells per axis; the paper's benchmark is ``40`` (``dim = 1600``).

    Attributes
    ----------
    dim : int
        ``n_bins ** 2``.
    prior_mean : float
        ``mu_0``.
    reference_log_normalizer : float
        ``512.6``, the literature value of ``log Z`` for the Finnish pines with
        ``n_bins=40`` (long SMC run, Vargas et al., DDS). :attr:`log_normalizer` is ``None``
        because ``log Z`` is not known exactly.

    References
    ----------
    J. Møller, A. R. Syversveen, R. P. Waagepetersen, "Log Gaussian Cox processes",
    Scandinavian Journal of Statistics 25(3), 1998.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from skcds.energies import LGCP
    >>> points = np.random.default_rng(0).uniform(size=(20, 2))
    >>> lgcp = LGCP(points, n_bins=4)
    >>> lgcp.dim, int(lgcp.counts.sum()), lgcp.log_normalizer is None
    (16, 20, True)
    >>> lgcp.log_prob(torch.full((2, 16), lgcp.prior_mean, dtype=torch.float64)).shape
    torch.Size([2])
    """

    reference_log_normalizer: float = 512.6

    def __init__(self, points: ArrayLike, n_bins: int = 40) -> None:
        super().__init__()
        self.points, self.n_bins = points, n_bins
        pts = self._check_points(points)
        n = check_positive_int(n_bins, "n_bins")
        self.dim = n * n
        self.prior_mean = math.log(pts.shape[0]) - 0.5 * _SIGNAL_VARIANCE
        self._cell_area = 1.0 / self.dim
        chol = np.linalg.cholesky(_gram_matrix(n))
        chol_inv = solve_triangular(chol, np.eye(self.dim), lower=True)
        precision = chol_inv.T @ chol_inv  # K^{-1} = L^{-T} L^{-1}
        half_log_det = np.log(np.diag(chol)).sum()
        self._log_norm_const = float(-0.5 * self.dim * math.log(2 * math.pi) - half_log_det)
        self.register_buffer("_precision", to_buffer(0.5 * (precision + precision.T)))
        self.register_buffer("_counts", to_buffer(_bin_counts(pts, n)))

    @staticmethod
    def _check_points(points: ArrayLike) -> np.ndarray:
        pts = as_float64_array(points, "points", 2)
        if pts.shape[1] != 2 or pts.shape[0] == 0:
            raise ValueError(
                f"'points' must be of shape (N, 2) with N >= 1; got shape {pts.shape}."
            )
        if pts.min() < 0 or pts.max() > 1:
            raise ValueError(
                "'points' must lie in the unit square [0, 1]^2; got coordinates in "
                f"[{pts.min():.4g}, {pts.max():.4g}]. Rescale them first."
            )
        return pts

    @property
    def counts(self) -> Tensor:
        """Cell counts ``y`` of shape ``(dim,)``, row-major over the grid."""
        return self._counts

    def _log_prob(self, x: Tensor) -> Tensor:
        diff = x - self.prior_mean  # (n, d)
        quad = ((diff @ self._precision.to(x)) * diff).sum(1)
        poisson = (self._counts.to(x) * x - self._cell_area * torch.exp(x)).sum(1)
        return self._log_norm_const - 0.5 * quad + poisson

    def _grad_log_prob(self, x: Tensor) -> Tensor:
        prior = (x - self.prior_mean) @ self._precision.to(x)
        return self._counts.to(x) - self._cell_area * torch.exp(x) - prior

    def _hessian_log_prob(self, x: Tensor) -> Tensor:
        intensity = self._cell_area * torch.exp(x)
        return -self._precision.to(x) - torch.diag_embed(intensity)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, n_points={len(self.points)}, n_bins={self.n_bins}"
