"""Metrics for samplers of unnormalised densities.

Sample-based (numpy arrays or torch tensors of shape ``(n, d)``, Python floats back):

* :func:`sinkhorn` -- converged entropic OT cost with Euclidean ground cost (the quality
  metric); :func:`paper_sinkhorn` -- the reference code's 100-iteration value, only for
  comparison with the paper's tables; :func:`wasserstein` -- exact OT for moderate ``n``;
* :func:`mmd` -- unbiased squared MMD with Gaussian kernels;
* :func:`mode_coverage` -- fraction of mixture modes the samples visit.

Weight-based (log importance weights of shape ``(n,)``):

* :func:`effective_sample_size` -- normalised ESS;
* :func:`estimate_log_normalizer` -- importance-sampling and ELBO estimates of ``log Z``
  with standard errors, as a :class:`LogNormalizerEstimate`.
* :func:`pareto_khat` -- the PSIS diagnostic :math:`\\hat k` of the weights' tail (is an
  importance estimate trustworthy?); :func:`psis_log_weights` -- Pareto-smoothed
  log-weights; :func:`khat_message` -- its sample-size threshold and a verdict.

Every benchmark table should also show each sample metric's floor: its value between two
independent exact-sample sets of the same size.
"""

from ._kernel import mmd
from ._modes import mode_coverage
from ._psis import khat_message, pareto_khat, psis_log_weights
from ._transport import paper_sinkhorn, sinkhorn, wasserstein
from ._weights import (
    LogNormalizerCurve,
    LogNormalizerEstimate,
    effective_sample_size,
    estimate_log_normalizer,
)

__all__ = [
    "LogNormalizerCurve",
    "LogNormalizerEstimate",
    "effective_sample_size",
    "estimate_log_normalizer",
    "khat_message",
    "mmd",
    "mode_coverage",
    "paper_sinkhorn",
    "pareto_khat",
    "psis_log_weights",
    "sinkhorn",
    "wasserstein",
]
