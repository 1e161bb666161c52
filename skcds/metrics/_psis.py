r"""Pareto-smoothed importance sampling (PSIS) and its diagnostic :math:`\hat k`.

Vehtari, Simpson, Gelman, Yao and Gabry (2024) fit a generalized Pareto distribution to the
largest importance weights; its shape :math:`\hat k` says how heavy the tail of the weights
is, and so whether importance-sampling estimates (of :math:`\log Z` or of expectations) can
be trusted. The weights' input conventions are those of ``skcds.metrics._weights``:
log-weights of shape ``(n,)``, ``-inf`` for a zero weight, no NaN or ``+inf``; computations
are in float64 after shifting by :math:`\max_i \log w_i`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ._validation import ArrayLike
from ._weights import _check_log_weights

__all__ = ["khat_message", "pareto_khat", "psis_log_weights"]

# Fewer exceedances than this and the tail fit is not attempted (loo's ``min_tail_len``).
_MIN_TAIL = 5
# Weakly informative prior on k (Vehtari et al. 2024; ArviZ and loo): k is
# shrunk towards 0.5 as if from _PRIOR_K extra observations.
_PRIOR_K, _PRIOR_K_MEAN = 10, 0.5
# Zhang & Stephens (2009): the grid's scale is set by the first quartile, divided by this.
_PRIOR_BS = 3
_GOOD_KHAT, _MAX_KHAT = 0.5, 0.7


def _tail_size(n: int) -> int:
    """Number ``M`` of largest weights fitted: ``min(ceil(n / 5), ceil(3 sqrt(n)))``."""
    return min(math.ceil(n / 5), math.ceil(3 * math.sqrt(n)))


def _gpd_fit(x: np.ndarray) -> tuple[float, float]:
    """Zhang & Stephens (2009) estimate of the generalized Pareto ``(k, sigma)``.

    ``x`` holds sorted non-negative exceedances. The estimate is a posterior mean of
    ``theta = -k / sigma`` over a grid of ``30 + floor(sqrt(m))`` values, each weighted by
    its profile likelihood; ``k`` is then shrunk towards 0.5 by the weakly informative prior.
    Returns NaNs when the fit fails (e.g. degenerate exceedances).
    """
    m = x.shape[0]
    n_grid = 30 + int(math.sqrt(m))
    quartile = x[int(m / 4 + 0.5) - 1]
    j = np.arange(1, n_grid + 1, dtype=np.float64)
    theta = 1 / x[-1] + (1 - np.sqrt(n_grid / (j - 0.5))) / (_PRIOR_BS * quartile)
    # k(theta) = mean log(1 - theta x) maximises the likelihood for fixed theta; the profile
    # log-likelihood is m (log(-theta / k) - k - 1).
    k = np.log1p(-theta[:, None] * x).mean(axis=1)
    profile = m * (np.log(-theta / k) - k - 1)
    ok = np.isfinite(profile)
    if not ok.any():
        return math.nan, math.nan
    theta, profile = theta[ok], profile[ok]
    # Normalised weights 1 / sum_j exp(l_j - l_i); negligible ones are dropped, as in the
    # reference implementations.
    weights = 1 / np.exp(profile[None, :] - profile[:, None]).sum(axis=1)
    keep = weights >= 10 * np.finfo(np.float64).eps
    theta, weights = theta[keep], weights[keep] / weights[keep].sum()
    theta_hat = float(np.sum(theta * weights))
    k_hat = float(np.log1p(-theta_hat * x).mean())
    sigma = -k_hat / theta_hat
    k_hat = (m * k_hat + _PRIOR_K * _PRIOR_K_MEAN) / (m + _PRIOR_K)
    return k_hat, sigma


def _gpd_quantile(p: np.ndarray, k: float, sigma: float) -> np.ndarray:
    """Quantiles of the generalized Pareto distribution with location 0, for ``p`` in (0, 1)."""
    if abs(k) < np.finfo(np.float64).eps:
        return -sigma * np.log1p(-p)
    return sigma * np.expm1(-k * np.log1p(-p)) / k


def _psis(lw: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """PSIS of log-weights ``lw`` shifted so that their maximum is 0.

    Returns the indices of the tail, its smoothed log-weights (same shift) and ``k``; no
    indices and NaN when no tail fit is possible.
    """
    n = lw.shape[0]
    no_fit = np.empty(0, dtype=np.int64), np.empty(0), math.nan
    tail_len = _tail_size(n)
    if tail_len < _MIN_TAIL:
        return no_fit
    order = np.argsort(lw, kind="stable")
    # The threshold is the (M + 1)-th largest log-weight, at least log(tiny) so that its
    # weight is a normal float; the tail is what lies strictly above it (M values without
    # ties; fewer with ties at the threshold or with -inf weights).
    cutoff = max(float(lw[order[-tail_len - 1]]), math.log(np.finfo(np.float64).tiny))
    tail_idx = order[lw[order] > cutoff]
    lw_tail = lw[tail_idx]  # sorted ascending
    if lw_tail.shape[0] < _MIN_TAIL or lw_tail[-1] == lw_tail[0]:
        return no_fit
    exp_cutoff = math.exp(cutoff)
    with np.errstate(all="ignore"):  # degenerate exceedances give NaN, handled below
        k, sigma = _gpd_fit(np.exp(lw_tail) - exp_cutoff)
        if not (math.isfinite(k) and math.isfinite(sigma) and sigma > 0):
            return no_fit
        m = lw_tail.shape[0]
        p = (np.arange(1, m + 1, dtype=np.float64) - 0.5) / m
        smoothed = np.log(_gpd_quantile(p, k, sigma) + exp_cutoff)
    # truncated at the largest raw weight (log-weight 0 after the shift)
    return tail_idx, np.minimum(smoothed, 0.0), k


def _shifted(log_w: ArrayLike) -> tuple[np.ndarray, float]:
    """Checked log-weights as a float64 numpy array, and their maximum."""
    lw = _check_log_weights(log_w).cpu().numpy()
    shift = float(lw.max())
    return lw, shift


def pareto_khat(log_w: ArrayLike) -> float:
    r"""Pareto :math:`\hat k` diagnostic of importance weights (PSIS).

    Fits a generalized Pareto distribution to the :math:`M = \min(\lceil n/5 \rceil,
    \lceil 3\sqrt n \rceil)` largest weights, as exceedances over the :math:`(M+1)`-th
    largest, by the empirical-Bayes method of Zhang & Stephens (2009), and shrinks the
    shape towards 0.5 with the weakly informative prior of ArviZ and loo,
    :math:`\hat k \leftarrow (M \hat k + 10 \cdot 0.5) / (M + 10)`. The weights have
    :math:`1/k` finite moments, so :math:`\hat k` measures how heavy their tail is:

    * :math:`\hat k < 0.5`: good; the weights have a finite variance and importance
      estimates converge at the usual rate;
    * :math:`0.5 \le \hat k < 0.7`: usable; PSIS estimates are still reliable, converging
      more slowly. For a sample of size :math:`n` the threshold is
      :math:`\min(1 - 1/\log_{10} n, 0.7)`: lower than 0.7 for :math:`n \le 2154` (0.5 at
      :math:`n = 100`), see :func:`khat_message`;
    * :math:`\hat k > 0.7`: unreliable; importance-sampling estimates (e.g. of
      :math:`\log Z`) are not to be trusted, whatever their standard error says; at
      :math:`\hat k \ge 1` the mean of the weights may not even exist.

    :math:`\hat k` does not change when a constant is added to every log-weight (up to
    rounding), so an unknown :math:`\log Z` does not matter.

    Parameters
    ----------
    log_w : array-like of shape (n_samples,)
        Log importance weights (numpy array or torch tensor); ``-inf`` entries are zero
        weights.

    Returns
    -------
    float
        The shape estimate :math:`\hat k`, or NaN when no tail fit is possible: fewer than 5
        weights above the threshold (in particular for ``n_samples <= 20``), or all of them
        equal (e.g. equal weights, for which importance sampling is exact and there is no
        tail to diagnose), or a failed fit.

    Raises
    ------
    ValueError
        If ``log_w`` is not one-dimensional, contains NaN or ``+inf``, or is all ``-inf``.

    See Also
    --------
    psis_log_weights : The smoothed log-weights together with :math:`\hat k`.
    khat_message : The sample-size dependent threshold and a plain-language verdict.

    References
    ----------
    .. [1] Vehtari, A., Simpson, D., Gelman, A., Yao, Y. and Gabry, J. (2024). Pareto
       smoothed importance sampling. Journal of Machine Learning Research, 25(72):1-58.
    .. [2] Zhang, J. and Stephens, M. A. (2009). A new and efficient estimation method for
       the generalized Pareto distribution. Technometrics, 51(3):316-325.

    Examples
    --------
    >>> import numpy as np
    >>> from skcds.metrics import pareto_khat
    >>> rng = np.random.default_rng(0)
    >>> k = pareto_khat(rng.normal(0.0, 0.5, size=4000))  # light-tailed (lognormal) weights
    >>> bool(k < 0.5)
    True
    >>> k = pareto_khat(rng.exponential(0.9, size=4000))  # Pareto(1/0.9) weights
    >>> bool(k > 0.7)
    True
    >>> pareto_khat(np.zeros(100))  # equal weights: no tail to fit
    nan
    """
    lw, shift = _shifted(log_w)
    return _psis(lw - shift)[2]


def psis_log_weights(log_w: ArrayLike) -> tuple[np.ndarray | Tensor, float]:
    r"""Pareto-smoothed log importance weights and the :math:`\hat k` diagnostic.

    The :math:`M` largest weights (see :func:`pareto_khat`) are replaced by the quantiles
    :math:`F^{-1}((i - 1/2) / M)`, :math:`i = 1, \dots, M`, of the fitted generalized
    Pareto distribution, in the order of the raw weights, and truncated at the largest raw
    weight. This lowers the variance of importance estimates at a small bias (Vehtari et
    al., 2024). When :math:`\hat k` is NaN (no tail fit) the weights are returned
    unchanged. Tied raw weights in the tail get neighbouring quantiles in an arbitrary
    (but deterministic) order. The output is on the scale of the input, not normalised:
    adding a constant to ``log_w`` adds it to the output.

    Parameters
    ----------
    log_w : array-like of shape (n_samples,)
        Log importance weights (numpy array or torch tensor); ``-inf`` entries are zero
        weights.

    Returns
    -------
    smoothed_log_w : ndarray or Tensor of shape (n_samples,)
        Smoothed log-weights, float64; a torch tensor on the input's device when ``log_w``
        is one, a numpy array otherwise.
    khat : float
        The Pareto shape estimate, as returned by :func:`pareto_khat`.

    Raises
    ------
    ValueError
        If ``log_w`` is not one-dimensional, contains NaN or ``+inf``, or is all ``-inf``.

    References
    ----------
    .. [1] Vehtari, A., Simpson, D., Gelman, A., Yao, Y. and Gabry, J. (2024). Pareto
       smoothed importance sampling. Journal of Machine Learning Research, 25(72):1-58.

    Examples
    --------
    >>> import numpy as np
    >>> from skcds.metrics import psis_log_weights
    >>> log_w = np.random.default_rng(0).normal(0.0, 2.0, size=1000)
    >>> smoothed, khat = psis_log_weights(log_w)
    >>> smoothed.shape, bool(smoothed.max() <= log_w.max())
    ((1000,), True)
    >>> int((smoothed != log_w).sum()) <= 95  # only the M = 95 largest can change
    True
    >>> bool(khat > 0.7)  # lognormal weights with sigma = 2 are heavy-tailed at n = 1000
    True
    """
    lw, shift = _shifted(log_w)
    tail_idx, smoothed_tail, k = _psis(lw - shift)
    smoothed = lw.copy()
    smoothed[tail_idx] = smoothed_tail + shift
    if isinstance(log_w, Tensor):
        return torch.from_numpy(smoothed).to(log_w.device), k
    return smoothed, k


def khat_message(khat: float, n: int) -> tuple[float, str]:
    r"""The reliability threshold for :math:`\hat k` at sample size ``n``, and a verdict.

    The threshold is :math:`\min(1 - 1/\log_{10} n, 0.7)` (Vehtari et al., 2024): below it
    PSIS estimates from ``n`` weights are reliable. An estimator can warn when
    ``khat > threshold`` (false for a NaN ``khat``) and show the message.

    Parameters
    ----------
    khat : float
        A Pareto shape estimate, e.g. from :func:`pareto_khat` (NaN allowed).
    n : int
        The number of weights it was computed from, at least 2.

    Returns
    -------
    threshold : float
        :math:`\min(1 - 1/\log_{10} n, 0.7)`.
    message : str
        A plain-language verdict: good (:math:`\hat k \le 0.5`), usable (up to the
        threshold), too high for this ``n`` (above the threshold but at most 0.7),
        unreliable (above 0.7), or not estimated (NaN).

    Raises
    ------
    ValueError
        If ``n < 2``.

    Examples
    --------
    >>> from skcds.metrics import khat_message
    >>> threshold, message = khat_message(0.3, 4000)
    >>> threshold
    0.7
    >>> message
    'Pareto k-hat = 0.3 <= 0.5: good; importance-sampling estimates are reliable.'
    >>> print(khat_message(0.85, 4000)[1])  # doctest: +NORMALIZE_WHITESPACE
    Pareto k-hat = 0.85 > 0.7: unreliable; importance-sampling estimates (e.g. of log Z)
    are not to be trusted: the weights' tail is too heavy.
    """
    if n < 2:
        raise ValueError(f"'n' must be at least 2; got {n}.")
    threshold = min(1 - 1 / math.log10(n), _MAX_KHAT)
    head = f"Pareto k-hat = {khat:.3g}"
    if math.isnan(khat):
        message = (
            "Pareto k-hat could not be estimated: too few weights, or the largest weights "
            "are all equal (no tail to fit)."
        )
    elif khat > _MAX_KHAT:
        message = (
            f"{head} > {_MAX_KHAT}: unreliable; importance-sampling estimates (e.g. of log Z) "
            "are not to be trusted: the weights' tail is too heavy."
        )
        if khat >= 1:
            message += " With k-hat >= 1 the mean of the weights may not exist."
    elif khat > threshold:
        message = (
            f"{head} > {threshold:.3g}, the threshold for n = {n}: importance-sampling "
            "estimates are not reliable at this sample size; use more samples (the "
            f"threshold is {_MAX_KHAT} from n = 2155 on)."
        )
    elif khat <= _GOOD_KHAT:
        message = f"{head} <= {_GOOD_KHAT}: good; importance-sampling estimates are reliable."
    else:
        message = (
            f"{head} <= {threshold:.3g}: usable; importance-sampling estimates are reliable "
            "but converge more slowly than for k-hat <= 0.5."
        )
    return threshold, message
