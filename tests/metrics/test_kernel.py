"""MMD: a double-loop oracle, the median heuristic, and same-distribution vs shifted samples
(with a sampler that drops a mode as the broken twin)."""

import numpy as np
import pytest
import torch

from skcds.metrics import mmd
from skcds.metrics._kernel import _median_bandwidth


def _naive_mmd(x: np.ndarray, y: np.ndarray, sigmas: list[float]) -> float:
    """Double loops over the U-statistic of Gretton et al. (2012), eq. 3."""

    def k(u, v):
        return sum(np.exp(-np.sum((u - v) ** 2) / (2 * s**2)) for s in sigmas)

    n, m = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return xx + yy - 2 * xy


@pytest.mark.parametrize("bandwidth", [0.7, [0.3, 1.0, 3.0]])
def test_mmd_matches_the_double_loop_oracle(global_random_seed, bandwidth):
    rng = np.random.default_rng(global_random_seed)
    x, y = rng.standard_normal((7, 3)), rng.standard_normal((5, 3)) + 0.4
    sigmas = [bandwidth] if np.ndim(bandwidth) == 0 else bandwidth
    assert mmd(x, y, bandwidth) == pytest.approx(_naive_mmd(x, y, sigmas), rel=1e-10)


def test_median_heuristic_is_the_median_pooled_distance():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((20, 2)), rng.standard_normal((15, 2))
    pooled = np.concatenate([x, y])
    dist = np.linalg.norm(pooled[:, None] - pooled[None], axis=-1)[np.triu_indices(35, k=1)]
    expected = np.sort(dist)[(len(dist) - 1) // 2]  # torch's median is the lower median
    assert _median_bandwidth(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(expected)
    assert mmd(x, y) == pytest.approx(mmd(x, y, bandwidth=expected), rel=1e-12)


def test_mmd_is_near_zero_for_one_distribution_and_positive_for_a_shift(global_random_seed):
    rng = np.random.default_rng(global_random_seed)
    x, y = rng.standard_normal((500, 2)), rng.standard_normal((500, 2))
    assert abs(mmd(x, y)) < 0.005
    assert mmd(x, y + [1.0, 0.0]) > 0.05


def test_mmd_rejects_a_sampler_that_drops_a_mode(global_random_seed):
    rng = np.random.default_rng(global_random_seed)
    means = np.array([[-4.0, 0.0], [4.0, 0.0]])
    exact = means[rng.integers(0, 2, 600)] + rng.standard_normal((600, 2))
    good = means[rng.integers(0, 2, 600)] + rng.standard_normal((600, 2))
    broken = means[np.zeros(600, dtype=int)] + rng.standard_normal((600, 2))
    assert abs(mmd(good, exact)) < 0.005
    assert mmd(broken, exact) > 0.1


def test_mmd_accepts_torch_tensors():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 2, generator=g), torch.randn(30, 2, generator=g)
    assert mmd(x, y) == pytest.approx(mmd(x.double().numpy(), y.double().numpy()), rel=1e-9)
