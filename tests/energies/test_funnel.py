"""Funnel: normalisation by 2-D quadrature, a scipy oracle, exact samples by KS tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from skcds.energies import Funnel

F64 = torch.float64


@pytest.mark.parametrize("scale", [3.0, 1.5])
def test_two_dimensional_funnel_integrates_to_one(scale):
    """Trapezoid rule in (x0, u) with x1 = exp(x0 / 2) u, which straightens the funnel."""
    funnel = Funnel(dim=2, scale=scale)
    x0 = torch.linspace(-12 * scale, 12 * scale, 1201, dtype=F64)
    u = torch.linspace(-12.0, 12.0, 601, dtype=F64)
    g0, gu = torch.meshgrid(x0, u, indexing="ij")
    x = torch.stack([g0, gu * torch.exp(0.5 * g0)], -1).reshape(-1, 2)
    density = funnel.log_prob(x).exp().reshape(g0.shape) * torch.exp(0.5 * g0)  # Jacobian
    integral = torch.trapezoid(torch.trapezoid(density, u, dim=1), x0)
    assert funnel.log_normalizer == 0.0
    assert abs(math.log(integral)) < 1e-8


def test_log_prob_matches_scipy():
    funnel = Funnel(dim=4, scale=3.0)
    x = np.random.default_rng(0).normal(scale=2.0, size=(20, 4))
    expected = stats.norm.logpdf(x[:, 0], scale=3.0) + stats.norm.logpdf(
        x[:, 1:], scale=np.exp(x[:, :1] / 2)
    ).sum(1)
    np.testing.assert_allclose(funnel.log_prob(torch.as_tensor(x)).numpy(), expected, rtol=1e-12)


def min_ks_pvalue(funnel: Funnel, samples: torch.Tensor) -> float:
    """Smallest KS p-value of x0 / scale and of x_i exp(-x0 / 2), each against N(0, 1)."""
    x = samples.numpy()
    standardised = np.concatenate([x[:, :1] / funnel.scale, x[:, 1:] * np.exp(-x[:, :1] / 2)], 1)
    return min(stats.kstest(column, "norm").pvalue for column in standardised.T)


def std_for_variance_twin(x: torch.Tensor) -> torch.Tensor:
    """The classic funnel bug: x_i drawn with standard deviation exp(x0), not exp(x0 / 2)."""
    return torch.cat([x[:, :1], x[:, 1:] * torch.exp(0.5 * x[:, :1])], 1)


@pytest.mark.parametrize(
    "broken", [None, "shifted", "std-for-variance"], ids=["exact", "shifted-twin", "std-twin"]
)
def test_samples_match_exact_law(broken, global_random_seed):
    funnel = Funnel(dim=5, scale=3.0)
    x = funnel.sample(5000, generator=torch.Generator().manual_seed(global_random_seed))
    if broken == "shifted":
        x = x + 0.25
    elif broken == "std-for-variance":
        x = std_for_variance_twin(x)
    assert (min_ks_pvalue(funnel, x) < 1e-4) == (broken is not None)


def test_default_is_the_papers_ten_dimensional_funnel():
    funnel = Funnel()
    assert (funnel.dim, funnel.scale) == (10, 3.0)
    assert repr(funnel) == "Funnel(dim=10, scale=3.0)"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(dim=1), "'dim' must be an int >= 2; got 1."),
        (dict(dim=2.0), "'dim' must be an int >= 2; got 2.0."),
        (dict(scale=0.0), "'scale' must be a finite float > 0; got 0.0."),
        (dict(scale="3"), "'scale' must be a finite float > 0; got '3'."),
    ],
)
def test_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError) as e:
        Funnel(**kwargs)
    assert str(e.value) == message
