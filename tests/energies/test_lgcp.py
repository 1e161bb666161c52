"""LGCP: binning and log-density against naive implementations; the pines benchmark."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from skcds.datasets import load_pines
from skcds.energies import LGCP

F64 = torch.float64


def naive_bin_counts(points: np.ndarray, n_bins: int) -> np.ndarray:
    """Berner's ``get_bin_counts``: one point at a time, edge points go to the last bin."""
    counts = np.zeros((n_bins, n_bins))
    for p, q in points * n_bins:
        row, col = min(int(np.floor(p)), n_bins - 1), min(int(np.floor(q)), n_bins - 1)
        counts[row, col] += 1
    return counts.reshape(-1)


def naive_log_prob(points: np.ndarray, n_bins: int, x: np.ndarray) -> np.ndarray:
    """scipy's multivariate normal with a kernel built entry by entry, plus the Poisson term."""
    bins = [(i, j) for i in range(n_bins) for j in range(n_bins)]
    d = len(bins)
    gram = np.empty((d, d))
    for a, (i, j) in enumerate(bins):
        for b, (k, m) in enumerate(bins):
            gram[a, b] = 1.91 * math.exp(-math.hypot(i - k, j - m) / (n_bins / 33))
    mean = math.log(len(points)) - 1.91 / 2
    prior = stats.multivariate_normal(np.full(d, mean), gram).logpdf(x)
    y = naive_bin_counts(points, n_bins)
    return prior + (y * x - np.exp(x) / d).sum(1)


def random_points(n: int, seed: int = 0) -> np.ndarray:
    points = np.random.default_rng(seed).uniform(size=(n, 2))
    points[:3] = [[1.0, 1.0], [0.0, 1.0], [0.5, 0.0]]  # corners and edges
    return points


@pytest.mark.parametrize("n_bins", [1, 3, 7])
def test_bin_counts_match_the_reference_loop(n_bins):
    points = random_points(200)
    lgcp = LGCP(points, n_bins=n_bins)
    np.testing.assert_array_equal(lgcp.counts.numpy(), naive_bin_counts(points, n_bins))


def test_log_prob_matches_naive_scipy_implementation():
    points = random_points(25)
    lgcp = LGCP(points, n_bins=5)
    x = lgcp.prior_mean + np.random.default_rng(1).normal(size=(4, 25))
    expected = naive_log_prob(points, 5, x)
    np.testing.assert_allclose(lgcp.log_prob(torch.as_tensor(x)).numpy(), expected, rtol=1e-10)


def test_prior_mean_uses_the_number_of_points():
    lgcp = LGCP(random_points(50), n_bins=2)
    assert lgcp.prior_mean == pytest.approx(math.log(50) - 1.91 / 2, rel=1e-14)


def test_pines_benchmark_is_1600_dimensional():
    try:
        points = load_pines()
    except FileNotFoundError as error:
        pytest.skip(f"the shared pines data is absent: {error}")
    lgcp = LGCP(points)
    assert lgcp.dim == 1600 and int(lgcp.counts.sum()) == 126
    assert lgcp.prior_mean == pytest.approx(math.log(126) - 0.955)
    assert lgcp.log_normalizer is None and lgcp.reference_log_normalizer == 512.6
    assert not lgcp.can_sample
    x = torch.full((2, 1600), lgcp.prior_mean, dtype=F64)
    assert torch.isfinite(lgcp.log_prob(x)).all()
    torch.testing.assert_close(
        lgcp.log_prob(x.float()).double(), lgcp.log_prob(x), rtol=1e-5, atol=0
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            dict(points=[[0.5, 0.5, 0.5]]),
            ValueError,
            "'points' must be of shape (N, 2) with N >= 1; got shape (1, 3).",
        ),
        (
            dict(points=np.zeros((0, 2))),
            ValueError,
            "'points' must be of shape (N, 2) with N >= 1; got shape (0, 2).",
        ),
        (
            dict(points=[[0.5, 1.5]]),
            ValueError,
            "'points' must lie in the unit square [0, 1]^2; got coordinates in [0.5, 1.5]. "
            "Rescale them first.",
        ),
        (
            dict(points=[[0.5, 0.5]], n_bins=0),
            ValueError,
            "'n_bins' must be an int >= 1; got 0.",
        ),
        (dict(points=None), TypeError, "'points' must be a real array-like; got NoneType."),
    ],
)
def test_invalid_arguments(kwargs, error, message):
    with pytest.raises(error) as e:
        LGCP(**kwargs)
    assert str(e.value) == message
