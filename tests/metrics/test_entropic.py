"""The entropic solver behind sinkhorn: semi-dual gradients against autograd, the sparse
objective against the dense one, and the solution's marginals."""

import math

import torch

from skcds.metrics._entropic import (
    dense_semi_dual,
    solve_semi_dual,
    sparse_semi_dual,
    support,
)
from skcds.metrics._transport import _cost, _emd

from ._data import two_clouds


def _scaled_reduced_cost(seed: int, n: int = 40, m: int = 30, epsilon: float = 1e-3):
    x, y = (torch.from_numpy(z) for z in two_clouds(seed, n=n, m=m, d=2))
    cost = _cost(x, y)
    _, f, g = _emd(cost, 10**6)
    return (cost - f[:, None] - g[None, :]).div_(epsilon).clamp_(max=700.0)


def _random_h(m: int, seed: int) -> torch.Tensor:
    return 5.0 * torch.randn(m, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_dense_gradient_matches_autograd(global_random_seed):
    scaled = _scaled_reduced_cost(global_random_seed)
    h = _random_h(scaled.shape[1], global_random_seed).requires_grad_()
    n, m = scaled.shape
    naive = m * (torch.logsumexp(h - scaled, dim=1).mean() - h.mean() + math.log(n) + 1.0)
    (expected,) = torch.autograd.grad(naive, h)
    loss, grad, _ = dense_semi_dual(scaled, h.detach())
    torch.testing.assert_close(loss, naive.detach(), rtol=1e-12, atol=0.0)
    torch.testing.assert_close(grad, expected, rtol=1e-9, atol=1e-12)


def test_sparse_objective_equals_the_dense_one_on_its_support(global_random_seed):
    scaled = _scaled_reduced_cost(global_random_seed)
    h = _random_h(scaled.shape[1], global_random_seed)
    restricted = support(scaled, h)
    assert restricted.rows.numel() < scaled.numel()  # the test needs a real restriction
    for got, expected in zip(
        sparse_semi_dual(restricted, h), dense_semi_dual(scaled, h), strict=True
    ):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_solution_has_exact_rows_and_columns_within_tol(global_random_seed):
    scaled = _scaled_reduced_cost(global_random_seed, n=60, m=45)
    h, n_iter, error = solve_semi_dual(scaled, max_iter=2000, tol=1e-6)
    assert error <= 1e-6 and 0 < n_iter <= 2000
    log_plan = h - scaled - torch.logsumexp(h - scaled, dim=1, keepdim=True) - math.log(60)
    plan = log_plan.exp()
    torch.testing.assert_close(plan.sum(1), torch.full((60,), 1 / 60, dtype=torch.float64))
    assert float((plan.sum(0) - 1 / 45).abs().sum()) <= 1e-6
