"""Bayesian logistic regression posterior over the weights (method.md §5, Ionosphere)."""

from __future__ import annotations

import math

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor
from torch.nn.functional import logsigmoid

from ._base import Energy
from ._utils import as_float64_array, check_positive_float, to_buffer

__all__ = ["LogisticRegressionPosterior"]


def _signed_labels(y: ArrayLike, n_samples: int) -> np.ndarray:
    """Labels in {0, 1} or {-1, 1} as signs in {-1, +1}."""
    labels = as_float64_array(y, "y", 1)
    if labels.shape != (n_samples,):
        raise ValueError(
            f"'y' must be of shape ({n_samples},), one label per row of X; got shape "
            f"{labels.shape}."
        )
    found = set(np.unique(labels).tolist())
    if not (found <= {0.0, 1.0} or found <= {-1.0, 1.0}):
        raise ValueError(
            f"'y' must contain labels in {{0, 1}} or in {{-1, 1}}; got labels {sorted(found)}."
        )
    return np.where(labels > 0, 1.0, -1.0)


class LogisticRegressionPosterior(Energy):
    r"""Posterior over the weights of a Bayesian logistic regression.

    .. math::

        \log \rho(w) = \sum_{n=1}^N \log \sigma(s_n\, w^\top x_n)
        + \log \mathcal N(w; 0, \tau^2 I),

    with signs ``s_n = +1`` for label 1 and ``s_n = -1`` for label 0 (or -1), and ``tau`` the
    ``prior_scale``. ``X`` is used as given: add a bias column yourself (as
    :func:`skcds.datasets.load_ionosphere` does). ``log Z`` is unknown and there is no exact
    sampler.

    Parameters
    ----------
    X : array-like of shape (N, dim)
        Features; ``dim`` is the number of weights.
    y : array-like of shape (N,)
        Labels in ``{0, 1}`` or in ``{-1, 1}``.
    prior_scale : float or None, default=1.0
        Standard deviation ``tau`` of the isotropic Gaussian prior. ``None`` drops the prior
        (likelihood only, an improper flat prior): that is the reference code's Ionosphere
        target, whereas Blessing et al.'s benchmark uses ``prior_scale=1.0``.

    Examples
    --------
    >>> import torch
    >>> from skcds.energies import LogisticRegressionPosterior
    >>> X = [[1.0, 0.5], [1.0, -1.0], [1.0, 2.0]]
    >>> posterior = LogisticRegressionPosterior(X, [1, 0, 1], prior_scale=None)
    >>> posterior.log_prob(torch.zeros(1, 2, dtype=torch.float64))  # 3 * log(1/2)
    tensor([-2.0794], dtype=torch.float64)
    """

    def __init__(self, X: ArrayLike, y: ArrayLike, prior_scale: float | None = 1.0) -> None:
        super().__init__()
        self.X, self.y, self.prior_scale = X, y, prior_scale
        features = as_float64_array(X, "X", 2)
        n_samples, self.dim = features.shape
        if n_samples == 0 or self.dim == 0:
            raise ValueError(
                f"'X' must have at least one row and one column; got {features.shape}."
            )
        signs = _signed_labels(y, n_samples)
        self.register_buffer("_signed_features", to_buffer(signs[:, None] * features))
        if prior_scale is None:
            self._prior_precision, self._prior_const = 0.0, 0.0
        else:
            tau = check_positive_float(prior_scale, "prior_scale")
            self._prior_precision = 1.0 / tau**2
            self._prior_const = -0.5 * self.dim * math.log(2 * math.pi * tau**2)

    def _log_prob(self, w: Tensor) -> Tensor:
        margins = w @ self._signed_features.to(w).T  # (n, N)
        prior = self._prior_const - 0.5 * self._prior_precision * (w * w).sum(1)
        return logsigmoid(margins).sum(1) + prior

    def _grad_log_prob(self, w: Tensor) -> Tensor:
        features = self._signed_features.to(w)
        # d/dz log sigmoid(z) = sigmoid(-z)
        return torch.sigmoid(-(w @ features.T)) @ features - self._prior_precision * w

    def extra_repr(self) -> str:
        n_samples = self._signed_features.shape[0]
        return f"dim={self.dim}, n_samples={n_samples}, prior_scale={self.prior_scale}"
