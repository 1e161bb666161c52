"""Stochastic Lanczos quadrature for log |det J|: exact cases, agreement with slogdet, and the
stochastic ODE weights against the exact ones."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from skcds._core.logdet import slq_log_abs_det


def _products(jac):
    return (
        lambda v: torch.einsum("nij,nj->ni", jac, v),
        lambda u: torch.einsum("nij,ni->nj", jac, u),
    )


@settings(max_examples=25, deadline=None)
@given(
    dim=st.integers(1, 12),
    scale=st.floats(0.05, 20.0),
    seed=st.integers(0, 2**16),
)
def test_scaled_orthogonal_jacobians_are_exact_for_every_probe(dim, scale, seed):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(3, dim, dim, generator=g, dtype=torch.float64))
    jvp, vjp = _products(scale * q)
    estimate = slq_log_abs_det(jvp, vjp, (3, dim), n_probes=1, generator=g, dtype=torch.float64)
    torch.testing.assert_close(
        estimate, torch.full((3,), dim * math.log(scale), dtype=torch.float64)
    )


@pytest.mark.parametrize("n_iter", [6, 30])
def test_agrees_with_slogdet_on_well_conditioned_jacobians(n_iter):
    g = torch.Generator().manual_seed(0)
    jac = torch.eye(20, dtype=torch.float64) + 0.05 * torch.randn(
        64, 20, 20, generator=g, dtype=torch.float64
    )
    jvp, vjp = _products(jac)
    estimate = slq_log_abs_det(
        jvp, vjp, (64, 20), n_probes=64, n_iter=n_iter, generator=g, dtype=torch.float64
    )
    error = estimate - torch.linalg.slogdet(jac).logabsdet
    assert float(error.mean().abs()) < 0.02  # quadrature bias and probe noise, averaged
    assert float(error.abs().max()) < 0.5


def test_a_wrong_product_is_caught():
    """The agreement test can fail: a transposed-product bug changes the estimate."""
    g = torch.Generator().manual_seed(1)
    jac = torch.eye(8, dtype=torch.float64) + 0.5 * torch.randn(
        16, 8, 8, generator=g, dtype=torch.float64
    )
    jvp, _ = _products(jac)
    broken = slq_log_abs_det(jvp, jvp, (16, 8), n_probes=64, generator=g, dtype=torch.float64)
    exact = torch.linalg.slogdet(jac).logabsdet
    assert float((broken - exact).abs().max()) > 0.1
