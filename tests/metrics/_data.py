"""Sample sets shared by the metrics tests."""

import numpy as np


def shifted_gaussians(seed: int, n: int, shift: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Two 2-D standard Gaussian clouds of ``n`` points, the second shifted by ``shift`` along
    the first axis: the construction of method.md §6's measurement, with ``default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 2))
    y = rng.standard_normal((n, 2))
    y[:, 0] += shift
    return x, y


def two_clouds(seed: int, n: int = 150, m: int = 120, d: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """``n`` standard Gaussian points and ``m`` from a wider, shifted Gaussian, in ``d`` dims."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), 1.5 * rng.standard_normal((m, d)) + 0.5
