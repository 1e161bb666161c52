"""Mode coverage on constructed samples: a missing mode, stray samples, a radius."""

import numpy as np
import pytest
import torch

from skcds.metrics import mode_coverage

GRID = 5.0 * np.array([(i, j) for i in (-1, 0, 1) for j in (-1, 0, 1)])  # the 9-mode grid


def _samples(counts: list[int], seed: int = 0, scale: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate(
        [mean + scale * rng.standard_normal((c, 2)) for mean, c in zip(GRID, counts, strict=True)]
    )


def test_all_modes_covered():
    assert mode_coverage(_samples([50] * 9), GRID) == 1.0


def test_two_missing_modes():
    coverage, counts = mode_coverage(_samples([50] * 7 + [0, 0]), GRID, return_counts=True)
    assert coverage == pytest.approx(7 / 9)
    np.testing.assert_array_equal(counts, [50] * 7 + [0, 0])


def test_a_few_stray_samples_do_not_cover_a_mode():
    # 9 modes x 50 + 2 samples: the threshold is ceil(0.1 * 452 / 9) = 6
    x = _samples([50] * 8 + [2])
    assert mode_coverage(x, GRID) == pytest.approx(8 / 9)
    assert mode_coverage(x, GRID, min_share=0.0) == 1.0


def test_radius_ignores_samples_far_from_every_mode():
    x = np.concatenate([_samples([20] * 8 + [0]), np.array([[2.5, 2.5], [7.6, 7.6]])])
    coverage, counts = mode_coverage(x, GRID, radius=1.5, min_share=0.0, return_counts=True)
    assert coverage == pytest.approx(8 / 9)
    assert counts.sum() == 160


def test_mode_coverage_accepts_torch_tensors():
    x = torch.from_numpy(_samples([30] * 9)).float()
    assert mode_coverage(x, torch.from_numpy(GRID)) == 1.0
