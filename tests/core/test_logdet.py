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


def _nonlinear_map(dim: int, seed: int):
    a = torch.randn(dim, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return lambda x: x @ (a / dim**0.5 + 2 * torch.eye(dim, dtype=torch.float64)).T + 0.1 * x**3


def test_map_log_abs_det_is_exact_against_autograd_jacobians():
    from skcds._core.logdet import map_log_abs_det

    fn = _nonlinear_map(4, 0)
    x = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    value, reversed_ = map_log_abs_det(fn, x)
    jac = torch.stack([torch.autograd.functional.jacobian(lambda r: fn(r[None])[0], r) for r in x])
    torch.testing.assert_close(value, torch.linalg.slogdet(jac)[1])
    assert reversed_ == 0.0


def test_map_log_abs_det_stochastic_is_unbiased_over_probes():
    from skcds._core.logdet import map_log_abs_det

    fn = _nonlinear_map(5, 2)
    x = torch.randn(400, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    exact, _ = map_log_abs_det(fn, x)
    g = torch.Generator().manual_seed(4)
    noisy, reversed_ = map_log_abs_det(fn, x, log_det="stochastic", generator=g)
    error = noisy - exact
    assert abs(float(error.mean())) < 4 * float(error.std()) / math.sqrt(len(x)) + 1e-9
    assert float(error.abs().max()) > 1e-6  # it is a noisy estimate, not the exact value
    assert reversed_ == 0.0


def test_jacobian_log_abs_det_reports_the_minority_orientation():
    from skcds._core.logdet import jacobian_log_abs_det

    jac = torch.eye(2, dtype=torch.float64).repeat(10, 1, 1)
    jac[:3, 0, 0] = -1.0
    value, reversed_ = jacobian_log_abs_det(jac)
    torch.testing.assert_close(value, torch.zeros(10, dtype=torch.float64))
    assert reversed_ == pytest.approx(0.3)
