"""GaussianMixture: log Z by 2-D quadrature, a naive scipy oracle, exact samples by KS tests."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from skcds.energies import GaussianMixture

F64 = torch.float64


def uneven_mixture() -> GaussianMixture:
    """Three components with per-component diagonal scales and unequal weights."""
    return GaussianMixture(
        [[-3.0, 0.0], [2.0, 1.0], [0.0, -4.0]], [[0.5, 1.0], [1.2, 0.4], [0.8, 0.8]], [1, 2, 3]
    )


def naive_log_prob(gmm: GaussianMixture, x: np.ndarray) -> np.ndarray:
    """Sum of weighted scipy densities, one component at a time."""
    weights = np.exp(gmm._log_weights.numpy())
    means, scales = gmm._means.numpy(), gmm._scales.numpy()
    density = sum(
        w * stats.multivariate_normal(m, np.diag(s**2)).pdf(x)
        for w, m, s in zip(weights, means, scales, strict=True)
    )
    return np.log(density)


def test_grid_is_the_papers_nine_mode_gmm():
    gmm = GaussianMixture.grid()
    expected = set(itertools.product([-5.0, 0.0, 5.0], repeat=2))
    assert {tuple(m) for m in gmm._means.tolist()} == expected
    torch.testing.assert_close(gmm._scales, torch.full((9, 2), 0.3**0.5, dtype=F64))
    torch.testing.assert_close(gmm._log_weights.exp(), torch.full((9,), 1 / 9, dtype=F64))


def test_random_draws_means_from_the_seeded_generator():
    gmm = GaussianMixture.random()
    g = torch.Generator().manual_seed(42)
    expected = -40.0 + 80.0 * torch.rand((40, 2), generator=g, dtype=F64)
    torch.testing.assert_close(gmm._means, expected, rtol=0, atol=0)
    torch.testing.assert_close(gmm._scales, torch.full((40, 2), math.log1p(math.e), dtype=F64))
    other = GaussianMixture.random(seed=0)
    assert not torch.equal(other._means, gmm._means)


@pytest.mark.parametrize("factory", [GaussianMixture.grid, uneven_mixture])
def test_log_normalizer_matches_grid_quadrature(factory):
    gmm = factory()
    axis = torch.linspace(-12.0, 12.0, 481, dtype=F64)
    grid = torch.cartesian_prod(axis, axis)
    density = gmm.log_prob(grid).exp().reshape(481, 481)
    integral = torch.trapezoid(torch.trapezoid(density, axis, dim=1), axis)
    assert abs(math.log(integral) - gmm.log_normalizer) < 1e-8


@pytest.mark.parametrize("factory", [GaussianMixture.grid, uneven_mixture])
def test_log_prob_matches_naive_scipy_mixture(factory):
    gmm = factory()
    x = np.random.default_rng(0).normal(scale=4.0, size=(50, 2))
    out = gmm.log_prob(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(out, naive_log_prob(gmm, x), rtol=1e-10)


def marginal_cdf(gmm: GaussianMixture, axis: int):
    weights = np.exp(gmm._log_weights.numpy())
    means, scales = gmm._means.numpy()[:, axis], gmm._scales.numpy()[:, axis]
    return lambda t: sum(
        w * stats.norm.cdf(t, m, s) for w, m, s in zip(weights, means, scales, strict=True)
    )


def min_ks_pvalue(gmm: GaussianMixture, samples: torch.Tensor) -> float:
    """Smallest per-coordinate KS p-value of ``samples`` against the exact marginals."""
    x = samples.numpy()
    return min(stats.kstest(x[:, i], marginal_cdf(gmm, i)).pvalue for i in range(gmm.dim))


@pytest.mark.parametrize("factory", [GaussianMixture.grid, uneven_mixture])
@pytest.mark.parametrize("broken", [False, True], ids=["exact", "shifted-twin"])
def test_samples_match_exact_marginals(factory, broken, global_random_seed):
    gmm = factory()
    x = gmm.sample(5000, generator=torch.Generator().manual_seed(global_random_seed))
    if broken:
        x = x + 0.25
    assert (min_ks_pvalue(gmm, x) < 1e-4) == broken


def test_sample_follows_the_generator_device_and_buffer_dtype():
    gmm = GaussianMixture.grid()
    assert gmm.sample(3).dtype == F64
    assert gmm.sample(0).shape == (0, 2)
    assert gmm.to(torch.float32).sample(3, generator=torch.Generator()).dtype == torch.float32


def test_per_component_isotropic_scales_broadcast():
    gmm = GaussianMixture([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]], scales=[0.5, 2.0])
    expected = torch.tensor([[0.5] * 3, [2.0] * 3], dtype=F64)
    torch.testing.assert_close(gmm._scales, expected)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            dict(means=[0.0, 1.0]),
            "'means' must be a 2-D array; got an array of shape (2,).",
        ),
        (
            dict(means=[[0.0, 1.0]], scales=[1.0, 2.0, 3.0]),
            "'scales' must be a float, or an array of shape (1,) or (1, 2); got an array of "
            "shape (3,).",
        ),
        (
            dict(means=[[0.0, 1.0]], scales=-1.0),
            "'scales' must be > 0; got a value <= 0.",
        ),
        (
            dict(means=[[0.0], [1.0]], weights=[1.0]),
            "'weights' must be 2 non-negative numbers with a positive sum; got an array of "
            "shape (1,) with minimum 1.0.",
        ),
        (
            dict(means=[[0.0], [np.nan]]),
            "'means' must contain only finite values; got NaN or inf.",
        ),
        (
            dict(means="abc"),
            "'means' must be a real array-like; got str.",
        ),
    ],
)
def test_invalid_arguments(kwargs, message):
    with pytest.raises((ValueError, TypeError)) as e:
        GaussianMixture(**kwargs)
    assert str(e.value) == message


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(n_per_axis=0), "'n_per_axis' must be an int >= 1; got 0."),
        (dict(spacing=-1.0), "'spacing' must be a finite float > 0; got -1.0."),
        (dict(scale=float("inf")), "'scale' must be a finite float > 0; got inf."),
    ],
)
def test_invalid_grid_arguments(kwargs, message):
    with pytest.raises(ValueError) as e:
        GaussianMixture.grid(**kwargs)
    assert str(e.value) == message


def test_invalid_random_bounds():
    with pytest.raises(ValueError) as e:
        GaussianMixture.random(low=1.0, high=0.0)
    assert str(e.value) == "'low' must be < 'high', both finite; got low=1.0, high=0.0."
