"""Built-in families of targets over a context (issue 28): a tempered many-well and a Bayesian
linear regression over its prior scale, both with exact ``log Z(c)`` and exact samples."""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor

from ._conditional import Box, ConditionalEnergy
from ._many_well import _LOG_2PI, ManyWell, _QuarticWell
from ._utils import (
    as_float64_array,
    check_positive_float,
    check_positive_int,
    sample_device_dtype,
    to_buffer,
)

__all__ = ["BayesianLinearRegression", "TemperedManyWell"]


def _interval(value, name: str, positive: bool = False) -> tuple[float, float]:
    """``value`` as a pair ``(low, high)`` of finite floats with ``low < high`` (and ``low > 0``
    if ``positive``); a ``ValueError`` naming ``name`` otherwise."""
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        low = high = math.nan
    bound = "0 < low < high" if positive else "low < high"
    if not (
        math.isfinite(low) and math.isfinite(high) and low < high and (low > 0 or not positive)
    ):
        raise ValueError(
            f"'{name}' must be a pair (low, high) of finite floats with {bound}; got {value!r}."
        )
    return low, high


def _scalar(c) -> float:
    """The one number of a 1-D context (a float, or a tensor of shape (), (1,) or (1, 1))."""
    return float(torch.as_tensor(c).reshape(()))


@functools.lru_cache(maxsize=128)
def _well(h: float) -> _QuarticWell:
    """The 1-D well ``exp(-(y^2 - h)^2)``, its ``log Z`` and sampler, built once per ``h``."""
    return _QuarticWell(h=h)


class TemperedManyWell(ConditionalEnergy):
    r"""The tempered :class:`ManyWell` ``rho_beta = rho_MW^beta``, over the inverse temperature.

    .. math::

        \log \rho(x \mid \beta) = -\beta \Big(\sum_{i < m} (x_i^2 - \delta)^2
        + \tfrac12 \sum_{i \ge m} x_i^2\Big)

    The context is ``c = beta`` (``k = 1``), uniform in ``Box(*beta)`` while training; small
    ``beta`` flattens the barriers between the ``2^m`` modes. With ``y = beta^(1/4) x`` each
    double-well coordinate is the well ``exp(-(y^2 - sqrt(beta) delta)^2)``, so ``log Z(beta)``
    is exact (1-D quadrature) and ``energy.at(beta).sample`` is exact (rejection sampling).

    Parameters
    ----------
    dim : int, default=5
        Dimension of the sample space.
    n_double_wells : int, default=5
        Number ``m`` of double-well coordinates (the first ``m``), ``1 <= m <= dim``.
    separation : float, default=4.0
        ``delta > 0``; the wells sit at ``\pm\sqrt{\delta}``.
    beta : (float, float), default=(0.3, 1.0)
        The interval ``(low, high)`` of inverse temperatures, ``0 < low < high``.

    See Also
    --------
    ManyWell : The member at ``beta = 1``.

    Examples
    --------
    >>> import torch
    >>> from skcds.energies import ManyWell, TemperedManyWell
    >>> family = TemperedManyWell.mw54()
    >>> family.log_prob(torch.tensor([[2.0, 2.0, -2.0, 2.0, 0.0]]), context=0.5)
    tensor([-8.])
    >>> round(family.at(1.0).log_normalizer, 6) == round(ManyWell.mw54().log_normalizer, 6)
    True
    >>> family.at(0.3).sample(4, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([4, 5])
    """

    def __init__(
        self,
        dim: int = 5,
        n_double_wells: int = 5,
        separation: float = 4.0,
        beta: tuple[float, float] = (0.3, 1.0),
    ) -> None:
        super().__init__()
        # the member at beta = 1, which checks the arguments; rho_beta = rho_1^beta
        self.base = ManyWell(dim, n_double_wells, separation)
        self.dim, self.n_double_wells = self.base.dim, int(n_double_wells)
        self.separation, self.beta = float(separation), _interval(beta, "beta", positive=True)
        self.context = Box(*self.beta)

    @classmethod
    def mw54(cls, beta: tuple[float, float] = (0.3, 1.0)) -> TemperedManyWell:
        """MW54 tempered: ``TemperedManyWell(5, 5, 4.0, beta)``; ``beta = 1`` is ``ManyWell.mw54``.

        Parameters
        ----------
        beta : (float, float), default=(0.3, 1.0)
            The interval of inverse temperatures.

        Returns
        -------
        TemperedManyWell

        Examples
        --------
        >>> from skcds.energies import TemperedManyWell
        >>> TemperedManyWell.mw54()
        TemperedManyWell(dim=5, n_double_wells=5, separation=4.0, beta=(0.3, 1.0))
        """
        return cls(dim=5, n_double_wells=5, separation=4.0, beta=beta)

    def _log_prob_at(self, x: Tensor, c: Tensor) -> Tensor:
        return c[:, 0] * self.base._log_prob(x)

    def _grad_log_prob_at(self, x: Tensor, c: Tensor) -> Tensor:
        return c * self.base._grad_log_prob(x)

    def log_normalizer_at(self, c) -> float:
        """Exact ``log Z(beta)`` at one ``beta`` (a float or a tensor of shape ``(1,)``).

        Each double well contributes ``log Z_1(sqrt(beta) delta) - log(beta) / 4``, each
        Gaussian coordinate ``log(2 pi / beta) / 2``.
        """
        beta = _scalar(c)
        m, n_gauss = self.n_double_wells, self.dim - self.n_double_wells
        well = _well(math.sqrt(beta) * self.separation).log_normalizer - 0.25 * math.log(beta)
        return m * well + 0.5 * n_gauss * (_LOG_2PI - math.log(beta))

    def _sample_at(self, n: int, c, generator: torch.Generator | None) -> Tensor:
        beta, m = _scalar(c), self.n_double_wells
        device, dtype = sample_device_dtype(self, generator)
        x = torch.randn((n, self.dim), generator=generator, device=device, dtype=torch.float64)
        x = x / math.sqrt(beta)
        wells = _well(math.sqrt(beta) * self.separation).sample(n * m, generator, device)
        x[:, self.base._is_well.to(device)] = wells.reshape(n, m) / beta**0.25
        return x.to(dtype)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, n_double_wells={self.n_double_wells}, "
            f"separation={self.separation}, beta={self.beta}"
        )

    def __repr__(self) -> str:  # its parameters, not the member it is built on
        return f"{type(self).__name__}({self.extra_repr()})"


class BayesianLinearRegression(ConditionalEnergy):
    r"""Posterior of a Bayesian linear regression's weights, over the log prior scale.

    .. math::

        \log \rho(w \mid c) = \log \mathcal N(y; X w, \sigma^2 I)
        + \log \mathcal N(w; 0, e^{2c} I)

    The context is ``c = log s`` (``k = 1``), the log standard deviation of the prior,
    uniform in ``Box(*log_prior_scale)`` while training. Both densities are normalised, so
    ``Z(c)`` is the evidence ``N(y; 0, sigma^2 I + s^2 X X^T)``. The posterior is Gaussian
    (precision ``A = X^T X / sigma^2 + I / s^2``, mean ``A^{-1} X^T y / sigma^2``):
    ``log Z(c)`` and ``energy.at(c).sample`` are exact.

    Parameters
    ----------
    n_features : int, default=5
        Number ``d`` of weights (the dimension). Ignored when ``X`` is given.
    n_data : int, default=20
        Number ``N`` of observations. Ignored when ``X`` is given.
    noise_scale : float, default=1.0
        Standard deviation ``sigma > 0`` of the observation noise.
    log_prior_scale : (float, float), default=(log(0.1), log(10))
        The interval ``(low, high)`` of contexts ``c = log s``.
    random_state : int, default=0
        Seed of the synthetic data: ``w_true ~ N(0, I)``, ``X ~ N(0, 1)`` entrywise and
        ``y = X w_true + sigma * N(0, 1)``, drawn from ``torch.Generator().manual_seed``.
    X : array-like of shape (N, d), optional
        One's own features instead of the synthetic ones (with ``y``).
    y : array-like of shape (N,), optional
        One's own targets (with ``X``).

    Attributes
    ----------
    true_weights : ndarray of shape (d,) or None
        ``w_true`` of the synthetic data; ``None`` when ``X`` and ``y`` are given.

    Examples
    --------
    >>> import torch
    >>> from skcds.energies import BayesianLinearRegression
    >>> family = BayesianLinearRegression(X=[[1.0, 0.0], [0.0, 1.0]], y=[1.0, -1.0])
    >>> mean, cov = family.posterior_at(0.0)  # prior N(0, I): A = 2 I
    >>> mean, cov.diagonal()
    (array([ 0.5, -0.5]), array([0.5, 0.5]))
    >>> round(family.at(0.0).log_normalizer, 6)  # log N(y; 0, 2 I)
    -3.031024
    >>> family.at(0.0).sample(3, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([3, 2])
    """

    def __init__(
        self,
        n_features: int = 5,
        n_data: int = 20,
        noise_scale: float = 1.0,
        log_prior_scale: tuple[float, float] = (math.log(0.1), math.log(10.0)),
        random_state: int = 0,
        X: ArrayLike | None = None,
        y: ArrayLike | None = None,
    ) -> None:
        super().__init__()
        self.noise_scale = check_positive_float(noise_scale, "noise_scale")
        self.log_prior_scale = _interval(log_prior_scale, "log_prior_scale")
        self.context = Box(*self.log_prior_scale)
        if X is None and y is None:
            features, targets, self.true_weights = self._synthetic(
                check_positive_int(n_features, "n_features"),
                check_positive_int(n_data, "n_data"),
                check_positive_int(random_state, "random_state", minimum=0),
            )
        else:
            features, targets = _check_data(X, y)
            self.true_weights = None
        self.dim = features.shape[1]
        self.register_buffer("X", to_buffer(features))
        self.register_buffer("y", to_buffer(targets))

    def _synthetic(self, d: int, n: int, seed: int) -> tuple[np.ndarray, ...]:
        """``X``, ``y`` and ``w_true`` drawn from one seeded generator (float64)."""
        g = torch.Generator().manual_seed(seed)
        w_true = torch.randn(d, generator=g, dtype=torch.float64)
        X = torch.randn((n, d), generator=g, dtype=torch.float64)
        y = X @ w_true + self.noise_scale * torch.randn(n, generator=g, dtype=torch.float64)
        return X.numpy(), y.numpy(), w_true.numpy()

    def _log_prob_at(self, x: Tensor, c: Tensor) -> Tensor:
        X, y = self.X.to(x), self.y.to(x)
        residual = (y - x @ X.T) / self.noise_scale
        log_lik = -0.5 * (residual * residual).sum(1)
        log_lik = log_lik - X.shape[0] * (math.log(self.noise_scale) + 0.5 * _LOG_2PI)
        log_s = c[:, 0]
        log_prior = -0.5 * (x * x).sum(1) * torch.exp(-2 * log_s)
        return log_lik + log_prior - self.dim * (log_s + 0.5 * _LOG_2PI)

    def _grad_log_prob_at(self, x: Tensor, c: Tensor) -> Tensor:
        X, y = self.X.to(x), self.y.to(x)
        residual = y - x @ X.T
        return residual @ X / self.noise_scale**2 - x * torch.exp(-2 * c)

    def _posterior(self, c) -> tuple[Tensor, Tensor]:
        """Posterior mean and Cholesky factor ``L`` of the precision ``A = L L^T`` (float64)."""
        X, y = self.X.detach().double().cpu(), self.y.detach().double().cpu()
        eye = torch.eye(self.dim, dtype=torch.float64)
        precision = X.T @ X / self.noise_scale**2 + eye * math.exp(-2 * _scalar(c))
        chol = torch.linalg.cholesky(precision)
        mean = torch.cholesky_solve((X.T @ y / self.noise_scale**2)[:, None], chol)[:, 0]
        return mean, chol

    def posterior_at(self, c) -> tuple[np.ndarray, np.ndarray]:
        """The Gaussian posterior ``N(mean, cov)`` at one context ``c = log s``.

        Parameters
        ----------
        c : float or Tensor of shape (1,)
            The log prior scale.

        Returns
        -------
        mean : ndarray of shape (dim,)
        cov : ndarray of shape (dim, dim)
        """
        mean, chol = self._posterior(c)
        return mean.numpy(), torch.cholesky_inverse(chol).numpy()

    def log_normalizer_at(self, c) -> float:
        """Exact ``log Z(c)``, the log evidence ``log p(y | c)``.

        At the posterior mean ``m``, ``log Z = log rho(m | c) - log N(m; m, A^{-1})``.
        """
        mean, chol = self._posterior(c)
        context = torch.full((1, 1), _scalar(c), dtype=torch.float64)
        log_rho = float(self._log_prob_at(mean[None], context)[0])
        return log_rho + 0.5 * self.dim * _LOG_2PI - float(chol.diagonal().log().sum())

    def _sample_at(self, n: int, c, generator: torch.Generator | None) -> Tensor:
        device, dtype = sample_device_dtype(self, generator)
        mean, chol = (t.to(device) for t in self._posterior(c))
        z = torch.randn((n, self.dim), generator=generator, device=device, dtype=torch.float64)
        # rows z L^{-1} have covariance L^{-T} L^{-1} = A^{-1}
        w = mean + torch.linalg.solve_triangular(chol, z, upper=False, left=False)
        return w.to(dtype)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, n_data={self.X.shape[0]}, noise_scale={self.noise_scale}, "
            f"context={self.context!r}"
        )


def _check_data(X, y) -> tuple[np.ndarray, np.ndarray]:
    """One's own ``X`` of shape (N, d) and ``y`` of shape (N,), both given."""
    if X is None or y is None:
        raise ValueError("pass both 'X' and 'y' (one's own data) or neither (synthetic data).")
    features, targets = as_float64_array(X, "X", 2), as_float64_array(y, "y", 1)
    if features.shape[0] == 0 or features.shape[1] == 0:
        raise ValueError(f"'X' must have at least one row and one column; got {features.shape}.")
    if targets.shape != (features.shape[0],):
        raise ValueError(
            f"'y' must be of shape ({features.shape[0]},), one target per row of X; got shape "
            f"{targets.shape}."
        )
    return features, targets
