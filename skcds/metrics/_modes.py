"""Mode coverage of samples from a mixture with known component means."""

from __future__ import annotations

import math

import numpy as np
import torch

from ._validation import ArrayLike, check_positive, check_samples

__all__ = ["mode_coverage"]


def _check_min_share(min_share: float) -> float:
    """Check the share threshold: a real number in [0, 1]."""
    if isinstance(min_share, bool) or not isinstance(min_share, (int, float, np.floating)):
        raise TypeError(
            f"'min_share' must be a real number in [0, 1]; got {type(min_share).__name__}."
        )
    if not 0 <= min_share <= 1:
        raise ValueError(f"'min_share' must be a real number in [0, 1]; got {min_share!r}.")
    return float(min_share)


def _mode_counts(x: torch.Tensor, means: torch.Tensor, radius: float | None) -> np.ndarray:
    """Samples per mode: nearest-mean assignment, within ``radius`` of it when one is given."""
    dist = torch.cdist(x, means)  # (n, n_modes)
    nearest, label = dist.min(dim=1)
    if radius is not None:
        label = label[nearest <= radius]
    return torch.bincount(label, minlength=means.shape[0]).cpu().numpy()


@torch.no_grad()
def mode_coverage(
    X: ArrayLike,
    means: ArrayLike,
    radius: float | None = None,
    *,
    min_share: float = 0.1,
    return_counts: bool = False,
) -> float | tuple[float, np.ndarray]:
    r"""Fraction of mixture modes that the samples visit.

    Each sample is assigned to its nearest mean (Euclidean); with ``radius``, samples
    farther than ``radius`` from every mean are not counted. Mode :math:`k` is *covered*
    when its count :math:`c_k` reaches

    .. math::

        c_k \ge \max\Big(1, \Big\lceil \mathtt{min\_share} \cdot
            \frac{n}{K} \Big\rceil\Big),

    i.e. at least ``min_share`` times the count an equal-weight mixture would give it. The
    default (10 %) ignores a handful of stray samples between modes; ``min_share=0`` with a
    ``radius`` gives "at least one sample within ``radius``".

    Parameters
    ----------
    X : array-like of shape (n, d)
        Samples (numpy array or torch tensor).
    means : array-like of shape (n_modes, d)
        Component means of the mixture.
    radius : float, optional
        Only samples within this distance of their nearest mean count. ``None`` (default)
        counts every sample.
    min_share : float, default=0.1
        Threshold, as a fraction of the equal-weight share ``n / n_modes``.
    return_counts : bool, default=False
        Also return the per-mode counts.

    Returns
    -------
    coverage : float
        Fraction of covered modes, in ``[0, 1]``.
    counts : ndarray of shape (n_modes,)
        Samples assigned to each mode; only when ``return_counts=True``.

    Raises
    ------
    ValueError
        If the shapes do not match or ``radius`` or ``min_share`` is out of range.

    Examples
    --------
    >>> import numpy as np
    >>> from skcds.metrics import mode_coverage
    >>> means = np.array([[-5.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    >>> X = np.array([[-5.1, 0.0], [-4.9, 0.2], [5.0, 0.1], [4.8, 0.0]])
    >>> coverage, counts = mode_coverage(X, means, return_counts=True)
    >>> round(coverage, 4), counts.tolist()
    (0.6667, [2, 2, 0])
    """
    x = check_samples(X, "X")
    centres = check_samples(means, "means", dim=x.shape[1], rows="n_modes")
    radius = None if radius is None else check_positive(radius, "radius")
    min_share = _check_min_share(min_share)
    counts = _mode_counts(x.double(), centres.to(x.device, torch.float64), radius)
    threshold = max(1, math.ceil(min_share * x.shape[0] / centres.shape[0]))
    coverage = float(np.mean(counts >= threshold))
    return (coverage, counts) if return_counts else coverage
