"""Many-well targets: Berner et al.'s MultiWell (MW54, MW52) and FAB's 32-D ManyWell.

Both are products of independent 1-D quartic wells ``f(x) = exp(-(x^2 - h)^2 + a x + c)`` on
some coordinates and standard Gaussians on the others. :class:`_QuarticWell` holds the 1-D
machinery shared by both: ``log Z`` by quadrature and an exact rejection sampler.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ._base import Energy
from ._utils import (
    categorical,
    check_positive_float,
    check_positive_int,
    sample_device_dtype,
    to_buffer,
)

__all__ = ["FabManyWell", "ManyWell"]

_LOG_2PI = math.log(2 * math.pi)


def _well_log_density(x: Tensor | np.ndarray, h: float, a: float, c: float):
    """Unnormalised 1-D log-density ``-(x^2 - h)^2 + a x + c`` (torch or numpy)."""
    return -((x * x - h) ** 2) + a * x + c


def _normal_mixture_log_pdf(
    x: np.ndarray, means: np.ndarray, std: float, log_w: np.ndarray
) -> np.ndarray:
    """Log-density of a 1-D Gaussian mixture with a common ``std`` (numpy, for set-up)."""
    z = (x[:, None] - means) / std
    comp = log_w - 0.5 * z * z - math.log(std) - 0.5 * _LOG_2PI
    top = comp.max(1, keepdims=True)
    return (top + np.log(np.exp(comp - top).sum(1, keepdims=True)))[:, 0]


class _QuarticWell:
    """1-D density ``exp(-(x^2 - h)^2 + a x + c)``: ``log Z`` by quadrature, exact sampling.

    ``log Z`` uses the trapezoid rule on a fine grid, which converges geometrically fast for
    smooth, rapidly decaying integrands. Samples come from rejection sampling with a proposal
    mixture of two Gaussians at the local maxima, weighted by the mass on each side of the
    barrier, with the common standard deviation that maximises the acceptance rate; the
    envelope constant ``M`` is the maximum of ``f / (Z q)`` on the grid, times a small margin.
    """

    _N_GRID = 40_001
    _MARGIN = 1e-3  # relative slack on the envelope; the grid maximum is accurate to ~1e-6

    def __init__(self, h: float, a: float = 0.0, c: float = 0.0) -> None:
        self.h, self.a, self.c = float(h), float(a), float(c)
        maxima, barrier = self._stationary_points()
        half_width = math.sqrt(max(self.h, 0.0)) + abs(self.a) ** (1 / 3) + 6.0
        self._grid = np.linspace(-half_width, half_width, self._N_GRID)
        log_f = _well_log_density(self._grid, self.h, self.a, self.c)
        self.log_normalizer = self._log_trapezoid(log_f)
        self.means = np.array([maxima.min(), maxima.max()])
        self.log_weights = self._side_log_masses(log_f, barrier)
        self.std, self.log_envelope = self._best_proposal(log_f)

    def _stationary_points(self) -> tuple[np.ndarray, float]:
        """Local maxima of ``log f`` and the barrier between them (``-4x^3 + 4hx + a = 0``)."""
        roots = np.roots([-4.0, 0.0, 4.0 * self.h, self.a])
        roots = np.sort(roots[np.abs(roots.imag) < 1e-9].real)
        maxima = roots[-12.0 * roots**2 + 4.0 * self.h < 0]
        barrier = roots[1] if roots.size == 3 else maxima[0]
        return maxima, float(barrier)

    def _trapezoid(self, f: np.ndarray) -> float:
        """Trapezoid rule for ``f`` sampled on the uniform grid."""
        return float((f.sum() - 0.5 * (f[0] + f[-1])) * (self._grid[1] - self._grid[0]))

    def _log_trapezoid(self, log_f: np.ndarray) -> float:
        """``log`` of the trapezoid-rule integral of ``exp(log_f)`` over the grid."""
        top = log_f.max()
        return float(top + np.log(self._trapezoid(np.exp(log_f - top))))

    def _side_log_masses(self, log_f: np.ndarray, barrier: float) -> np.ndarray:
        """Log-probability of ``x < barrier`` and of ``x >= barrier``; (0.5, 0.5) if one mode."""
        if self.means[0] == self.means[1]:
            return np.log([0.5, 0.5])
        left = np.exp(log_f - self.log_normalizer) * (self._grid < barrier)
        p_left = self._trapezoid(left)
        return np.log([p_left, 1.0 - p_left])

    def _log_envelope(self, log_f: np.ndarray, std: float, step: int = 1) -> float:
        """``log max f / (Z q)`` over every ``step``-th grid point; inf if it is at the edge."""
        grid = self._grid[::step]
        log_q = _normal_mixture_log_pdf(grid, self.means, std, self.log_weights)
        log_ratio = log_f[::step] - self.log_normalizer - log_q
        # a maximum at the edge of the grid may hide a larger one outside: not an envelope
        at_edge = np.argmax(log_ratio) in (0, log_ratio.size - 1)
        return math.inf if at_edge else float(log_ratio.max())

    def _best_proposal(self, log_f: np.ndarray) -> tuple[float, float]:
        """The proposal std in [0.2, 2] with the smallest envelope ``log M``, and that ``log M``."""
        # search on a coarse sub-grid, then bound the chosen proposal on the full grid
        stds = np.geomspace(0.2, 2.0, 41)
        coarse = [self._log_envelope(log_f, std, step=20) for std in stds]
        std = float(stds[int(np.argmin(coarse))])
        log_m = self._log_envelope(log_f, std) + self._MARGIN
        if not math.isfinite(log_m):
            raise RuntimeError("no valid rejection-sampling envelope found for this double well.")
        return std, log_m

    def sample(self, n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
        """``n`` exact samples (float64, on ``device``); rejection rounds until enough accepted."""
        accepted = [torch.empty(0, device=device, dtype=torch.float64)]
        count = 0
        while count < n:
            # expected acceptance is 1 / M: ask for 20% more than needed, plus a few
            n_proposals = int(1.2 * (n - count) * math.exp(self.log_envelope)) + 16
            accepted.append(self._propose_and_accept(n_proposals, generator, device))
            count += accepted[-1].shape[0]
        return torch.cat(accepted)[:n]

    def _propose_and_accept(
        self, m: int, generator: torch.Generator | None, device: torch.device
    ) -> Tensor:
        """One round: ``m`` proposals, returns the accepted ones (float64)."""
        f64 = torch.float64
        log_w = torch.tensor(self.log_weights, device=device, dtype=f64)
        means = torch.tensor(self.means, device=device, dtype=f64)
        comp = categorical(log_w.exp(), m, generator)
        x = means[comp] + self.std * torch.randn(m, generator=generator, device=device, dtype=f64)
        z = (x[:, None] - means) / self.std  # (m, 2)
        log_q = torch.logsumexp(log_w - 0.5 * z * z, 1) - math.log(self.std) - 0.5 * _LOG_2PI
        log_f = _well_log_density(x, self.h, self.a, self.c) - self.log_normalizer
        log_u = torch.rand(m, generator=generator, device=device, dtype=f64).log()
        return x[log_u < log_f - log_q - self.log_envelope]


class _ProductOfWells(Energy):
    """Independent quartic wells on the coordinates in ``is_well``, N(0, 1) on the others."""

    def _set_up(self, dim: int, is_well: np.ndarray, well: _QuarticWell) -> None:
        self.dim, self._well, self._n_wells = dim, well, int(is_well.sum())
        self.register_buffer("_is_well", torch.as_tensor(is_well, dtype=torch.bool))
        self.register_buffer("_coefficients", to_buffer([well.h, well.a, well.c]))

    def _log_prob(self, x: Tensor) -> Tensor:
        h, a, c = self._coefficients.to(x)
        per_coordinate = torch.where(
            self._is_well.to(x.device), _well_log_density(x, h, a, c), -0.5 * x * x
        )
        return per_coordinate.sum(1)

    def _grad_log_prob(self, x: Tensor) -> Tensor:
        h, a, _ = self._coefficients.to(x)
        return torch.where(self._is_well.to(x.device), -4.0 * x * (x * x - h) + a, -x)

    @property
    def log_normalizer(self) -> float:
        """Exact ``log Z``: ``n_wells * log Z_1`` (1-D quadrature) ``+ n_gauss / 2 * log(2 pi)``."""
        n_gauss = self.dim - self._n_wells
        return self._n_wells * self._well.log_normalizer + 0.5 * n_gauss * _LOG_2PI

    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        device, dtype = sample_device_dtype(self, generator)
        is_well = self._is_well.to(device)
        x = torch.randn((n, self.dim), generator=generator, device=device, dtype=torch.float64)
        wells = self._well.sample(n * self._n_wells, generator, device)
        x[:, is_well] = wells.reshape(n, self._n_wells)
        return x.to(dtype)


class ManyWell(_ProductOfWells):
    r"""Berner et al.'s MultiWell: ``m`` double wells and ``dim - m`` Gaussian coordinates.

    .. math::

        \log \rho(x) = -\sum_{i < m} (x_i^2 - \delta)^2 - \tfrac12 \sum_{i \ge m} x_i^2

    It has ``2^m`` modes at ``x_i = \pm\sqrt{\delta}``. ``log Z`` is exact up to quadrature
    error (``m`` times the log of a 1-D integral, plus ``(dim - m) / 2 * log(2 pi)``), and
    :meth:`sample` is exact: rejection sampling per double-well coordinate.

    Parameters
    ----------
    dim : int, default=5
        Dimension of the sample space.
    n_double_wells : int, default=5
        Number ``m`` of double-well coordinates (the first ``m``), ``1 <= m <= dim``.
    separation : float, default=4.0
        ``delta > 0``; the wells sit at ``\pm\sqrt{\delta}``.

    See Also
    --------
    ManyWell.mw54, ManyWell.mw52 : The paper's targets.
    FabManyWell : The 32-D ManyWell of Midgley et al.

    References
    ----------
    J. Berner, L. Richter, K. Ullrich, "An optimal control perspective on diffusion-based
    generative modeling", TMLR 2024.

    Examples
    --------
    >>> import torch
    >>> from skcds.energies import ManyWell
    >>> mw = ManyWell(dim=3, n_double_wells=2, separation=4.0)
    >>> mw.log_prob(torch.tensor([[2.0, -2.0, 0.0]]))
    tensor([0.])
    >>> mw.sample(4, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([4, 3])
    """

    def __init__(self, dim: int = 5, n_double_wells: int = 5, separation: float = 4.0) -> None:
        super().__init__()
        self.n_double_wells = n_double_wells
        self.separation = separation
        dim = check_positive_int(dim, "dim")
        m = check_positive_int(n_double_wells, "n_double_wells")
        if m > dim:
            raise ValueError(f"'n_double_wells' must be <= dim={dim}; got {n_double_wells!r}.")
        well = _QuarticWell(h=check_positive_float(separation, "separation"))
        self._set_up(dim, np.arange(dim) < m, well)

    @classmethod
    def mw54(cls) -> ManyWell:
        """MW54 of the paper: ``ManyWell(dim=5, n_double_wells=5, separation=4.0)``, 32 modes.

        Returns
        -------
        ManyWell

        Examples
        --------
        >>> from skcds.energies import ManyWell
        >>> ManyWell.mw54()
        ManyWell(dim=5, n_double_wells=5, separation=4.0)
        """
        return cls(dim=5, n_double_wells=5, separation=4.0)

    @classmethod
    def mw52(cls) -> ManyWell:
        """MW52 of the paper: ``ManyWell(dim=50, n_double_wells=5, separation=2.0)``, 32 modes.

        Returns
        -------
        ManyWell

        Examples
        --------
        >>> from skcds.energies import ManyWell
        >>> ManyWell.mw52().dim
        50
        """
        return cls(dim=50, n_double_wells=5, separation=2.0)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, n_double_wells={self.n_double_wells}, separation={self.separation}"


class FabManyWell(_ProductOfWells):
    r"""The ManyWell of Midgley et al. (FAB): ``dim / 2`` copies of a 2-D double well.

    Each pair of coordinates ``(x_{2i}, x_{2i+1})`` has

    .. math::

        \log \rho(x_{2i}, x_{2i+1}) = -x_{2i}^4 + 6 x_{2i}^2 + \tfrac12 x_{2i}
        - \tfrac12 x_{2i+1}^2,

    an asymmetric double well (modes near ``\pm 1.7``) times a standard Gaussian, so the
    default 32-D target has ``2^16`` modes. ``log Z`` is exact up to quadrature error
    (per pair ``log(11784.50927) + log(2 pi) / 2``); :meth:`sample` is exact.

    Parameters
    ----------
    dim : int, default=32
        An even dimension; ``dim / 2`` independent pairs.

    See Also
    --------
    ManyWell : Berner et al.'s symmetric many-well family (MW54, MW52).

    References
    ----------
    L. I. Midgley, V. Stimper, G. N. C. Simm, B. Schölkopf, J. M. Hernández-Lobato, "Flow
    annealed importance sampling bootstrap", ICLR 2023 (``ManyWellEnergy`` in fab-torch).

    Examples
    --------
    >>> import torch
    >>> from skcds.energies import FabManyWell
    >>> target = FabManyWell()
    >>> target.dim, round(target.log_normalizer, 4)
    (32, 164.6957)
    """

    def __init__(self, dim: int = 32) -> None:
        super().__init__()
        dim = check_positive_int(dim, "dim", minimum=2)
        if dim % 2:
            raise ValueError(f"'dim' must be an even int >= 2; got {dim!r}.")
        # -x^4 + 6 x^2 + x / 2 = -(x^2 - 3)^2 + x / 2 + 9
        self._set_up(dim, np.arange(dim) % 2 == 0, _QuarticWell(h=3.0, a=0.5, c=9.0))
