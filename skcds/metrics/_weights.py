r"""Importance-weight diagnostics: effective sample size and ``log Z`` estimates.

Every function takes log-weights :math:`\log w_i = \log\rho(x_i) - \log q(x_i)` of samples
:math:`x_i \sim q`, where :math:`\rho` is the unnormalised target, so that
:math:`\mathbb{E}_q[w] = Z`. Computations are in float64 and shift by :math:`\max_i \log w_i`
before exponentiating, so log-weights of any magnitude are fine; ``-inf`` (a zero weight)
is allowed, NaN and ``+inf`` are not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ._validation import ArrayLike, as_tensor

__all__ = [
    "LogNormalizerCurve",
    "LogNormalizerEstimate",
    "effective_sample_size",
    "estimate_log_normalizer",
]


def _check_log_weights(log_w: ArrayLike, min_samples: int = 1) -> Tensor:
    """Check log-weights: shape ``(n,)``, no NaN or ``+inf``, at least one finite value."""
    lw = as_tensor(log_w, "log_w").to(torch.float64)
    if lw.ndim != 1:
        raise ValueError(f"'log_w' must be of shape (n_samples,); got shape {tuple(lw.shape)}.")
    if lw.shape[0] < min_samples:
        raise ValueError(
            f"'log_w' must contain at least {min_samples} log-weight(s); got {lw.shape[0]}."
        )
    for count, what in ((int(lw.isnan().sum()), "NaN"), (int((lw == math.inf).sum()), "+inf")):
        if count:
            raise ValueError(
                f"'log_w' contains {count} {what} value(s); log-weights may be -inf (a zero "
                "weight) but not NaN or +inf."
            )
    if bool((lw == -math.inf).all()):
        raise ValueError("'log_w' has no positive weight: all log-weights are -inf.")
    return lw


def _pareto_khat(lw: Tensor) -> float:
    from ._psis import pareto_khat  # _psis builds on this module's checks

    return pareto_khat(lw)


def _khat_message(khat: float, n: int) -> tuple[float, str]:
    from ._psis import khat_message as message

    return message(khat, n)


def _ess(lw: Tensor) -> float:
    """Normalised ESS ``(sum w)^2 / (n sum w^2)`` from log-weights, in log space."""
    log_ess = 2 * torch.logsumexp(lw, 0) - torch.logsumexp(2 * lw, 0) - math.log(lw.shape[0])
    return min(math.exp(float(log_ess)), 1.0)  # round-off can give 1 + 1e-16


def effective_sample_size(log_w: ArrayLike) -> float:
    r"""Normalised effective sample size of importance weights.

    .. math::

        \mathrm{ESS} = \frac{\big(\sum_{i=1}^n w_i\big)^2}{n \sum_{i=1}^n w_i^2}
        \in \Big[\frac1n, 1\Big],

    computed from log-weights without overflow. It equals 1 for equal weights, is about
    :math:`1/n` when one weight dominates, and does not change when a constant is added to
    every log-weight (so an unknown ``log Z`` does not matter). This is the reference code's
    ``norm_effective_sample_size`` (Kong, 1992).

    Parameters
    ----------
    log_w : array-like of shape (n_samples,)
        Log importance weights (numpy array or torch tensor); ``-inf`` entries are zero
        weights.

    Returns
    -------
    float
        The normalised ESS in :math:`(0, 1]`.

    Raises
    ------
    ValueError
        If ``log_w`` is not one-dimensional, contains NaN or ``+inf``, or is all ``-inf``.

    References
    ----------
    .. [1] Kong, A. (1992). A note on importance sampling using standardized weights.
       Technical Report 348, Department of Statistics, University of Chicago.

    Examples
    --------
    >>> import numpy as np
    >>> from skcds.metrics import effective_sample_size
    >>> effective_sample_size(np.zeros(4))
    1.0
    >>> round(effective_sample_size(np.array([0.0, -np.inf, -np.inf, -np.inf])), 4)
    0.25
    """
    return _ess(_check_log_weights(log_w))


def _fmt(value: float, stderr: float) -> str:
    """``value ± stderr`` with readable precision."""
    return f"{value:.6g} ± {stderr:.2g}"


@dataclass(frozen=True)
class LogNormalizerEstimate:
    r"""Estimates of :math:`\log Z` from importance log-weights, with standard errors.

    Returned by :func:`estimate_log_normalizer` and by the samplers'
    ``estimate_log_normalizer`` methods.

    Attributes
    ----------
    log_z : float
        Importance-sampling estimate :math:`\log \frac1n \sum_i w_i`. Consistent, but biased
        low for finite ``n`` (Jensen's inequality: :math:`\mathbb{E}[\log \hat Z] \le
        \log Z`); the bias is about :math:`-\mathrm{stderr}^2 / 2`.
    stderr : float
        Delta-method standard error of ``log_z``,
        :math:`\mathrm{sd}(w) / (\sqrt{n}\, \overline{w})
        \approx \sqrt{(1/\mathrm{ESS} - 1) / n}`.
    elbo : float
        Evidence lower bound :math:`\frac1n \sum_i \log w_i`. Its expectation is at most
        :math:`\log Z` when the weights are valid (``E_q[w] = Z``); ``-inf`` when some
        weight is zero.
    elbo_stderr : float
        Standard error of ``elbo``, :math:`\mathrm{sd}(\log w) / \sqrt{n}` (NaN when some
        weight is zero).
    ess : float
        Normalised effective sample size, see :func:`effective_sample_size`.
    n_samples : int
        Number of weights.
    khat : float
        PSIS Pareto shape estimate of the weights' tail (:func:`pareto_khat`); NaN when not
        estimated. Above :attr:`khat_threshold` (0.7 for ``n >= 2200``), importance estimates
        such as ``log_z`` are not to be trusted, whatever ``stderr`` says.

    Examples
    --------
    >>> from skcds.metrics import LogNormalizerEstimate
    >>> est = LogNormalizerEstimate(log_z=0.5, stderr=0.01, elbo=0.4, elbo_stderr=0.02,
    ...                             ess=0.9, n_samples=1000, khat=0.2)
    >>> est
    LogNormalizerEstimate(log_z=0.5 ± 0.01, elbo=0.4 ± 0.02, ess=0.9, khat=0.2, n_samples=1000)
    >>> est.reliable, est.diagnosis
    (True, 'Pareto k-hat = 0.2 <= 0.5: good; importance-sampling estimates are reliable.')
    """

    log_z: float
    stderr: float
    elbo: float
    elbo_stderr: float
    ess: float
    n_samples: int
    khat: float = math.nan

    @property
    def khat_threshold(self) -> float:
        """``min(1 - 1 / log10(n), 0.7)``: the largest ``khat`` at which PSIS estimates
        from ``n_samples`` weights are reliable."""
        return _khat_message(self.khat, self.n_samples)[0]

    @property
    def reliable(self) -> bool:
        """Whether ``khat`` was estimated and is at most :attr:`khat_threshold`."""
        return bool(self.khat <= self.khat_threshold)

    @property
    def diagnosis(self) -> str:
        """What ``khat`` says about these weights, in plain language."""
        return _khat_message(self.khat, self.n_samples)[1]

    def __repr__(self) -> str:
        return (
            f"LogNormalizerEstimate(log_z={_fmt(self.log_z, self.stderr)}, "
            f"elbo={_fmt(self.elbo, self.elbo_stderr)}, ess={self.ess:.4g}, "
            f"khat={self.khat:.3g}, n_samples={self.n_samples})"
        )


@dataclass(frozen=True)
class LogNormalizerCurve:
    """``log Z(c)`` of a family of densities at several contexts, from one sampler.

    Returned by the samplers' ``log_normalizer_curve``; each array has one entry per
    context, from :meth:`~skcds.DiffusionSampler.estimate_log_normalizer` at that context.

    Attributes
    ----------
    contexts : ndarray of shape (m, k)
    log_z, stderr : ndarray of shape (m,)
        Importance-sampling estimates of ``log Z(c)`` and their standard errors.
    elbo : ndarray of shape (m,)
        Lower bounds of ``log Z(c)``.
    ess, khat : ndarray of shape (m,)
        Normalised effective sample size and PSIS k-hat of each context's weights: read
        ``log_z`` only where ``khat`` is below 0.7.
    """

    contexts: np.ndarray
    log_z: np.ndarray
    stderr: np.ndarray
    elbo: np.ndarray
    ess: np.ndarray
    khat: np.ndarray

    @classmethod
    def of(cls, contexts: np.ndarray, estimates: list) -> LogNormalizerCurve:
        """The curve of one :class:`LogNormalizerEstimate` per context."""
        column = lambda name: np.array([getattr(e, name) for e in estimates])  # noqa: E731
        names = ("log_z", "stderr", "elbo", "ess", "khat")
        return cls(contexts, **{name: column(name) for name in names})


def estimate_log_normalizer(log_w: ArrayLike) -> LogNormalizerEstimate:
    r"""Importance-sampling and ELBO estimates of :math:`\log Z` from log-weights.

    With :math:`w_i = \rho(x_i) / q(x_i)`, :math:`x_i \sim q` and
    :math:`Z = \int \rho = \mathbb{E}_q[w]`:

    .. math::

        \widehat{\log Z} = \log \frac1n \sum_{i=1}^n w_i, \qquad
        \mathrm{se}(\widehat{\log Z}) = \frac{\mathrm{sd}(w)}{\sqrt n\, \overline w}, \qquad
        \mathrm{ELBO} = \frac1n \sum_{i=1}^n \log w_i \;\le\; \log Z \text{ in expectation.}

    The importance-sampling estimate is consistent but biased low in log space for finite
    ``n`` (Jensen's inequality); the ELBO is a lower bound only when the weights are valid
    for the distribution the samples came from. Standard deviations use ``ddof=1``.

    Parameters
    ----------
    log_w : array-like of shape (n_samples,)
        Log importance weights, ``n_samples >= 2`` (numpy array or torch tensor); ``-inf``
        entries are zero weights.

    Returns
    -------
    LogNormalizerEstimate
        ``log_z``, ``stderr``, ``elbo``, ``elbo_stderr``, ``ess``, ``n_samples`` and the
        PSIS diagnostic ``khat`` (with ``reliable`` and ``diagnosis``).

    Raises
    ------
    ValueError
        If ``log_w`` is not one-dimensional, has fewer than two entries, contains NaN or
        ``+inf``, or is all ``-inf``.

    References
    ----------
    .. [1] Owen, A. B. (2013). Monte Carlo theory, methods and examples, Chapter 9
       (importance sampling; the delta method for ratio estimates).
    .. [2] Berner, J., Richter, L. and Ullrich, K. (2024). An optimal control perspective on
       diffusion-based generative modeling. TMLR (``log_norm_const_is`` and the ELBO
       ``log_norm_const_lb``).

    Examples
    --------
    >>> import numpy as np
    >>> from skcds.metrics import estimate_log_normalizer
    >>> est = estimate_log_normalizer(np.full(100, np.log(3.0)))
    >>> round(est.log_z, 6), est.stderr, est.ess
    (1.098612, 0.0, 1.0)
    """
    lw = _check_log_weights(log_w, min_samples=2)
    n = lw.shape[0]
    w = torch.exp(lw - lw.max())  # in (0, 1], max is 1
    return LogNormalizerEstimate(
        log_z=float(torch.logsumexp(lw, 0)) - math.log(n),
        stderr=float(w.std() / (math.sqrt(n) * w.mean())),
        elbo=float(lw.mean()),
        elbo_stderr=float(lw.std() / math.sqrt(n)),
        ess=_ess(lw),
        n_samples=n,
        khat=_pareto_khat(lw),
    )
