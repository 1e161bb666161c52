"""Transport metrics: sinkhorn against exact OT and POT's plain solver, paper_sinkhorn against
a dense numpy oracle of the reference loop and the measurement of method.md §6, wasserstein
against brute force over permutations."""

import itertools
import math
import re

import numpy as np
import ot
import pytest
import torch
from scipy.special import logsumexp

from skcds.exceptions import ConvergenceWarning
from skcds.metrics import paper_sinkhorn, sinkhorn, wasserstein
from skcds.metrics._transport import _cost, _reference_iterations

from ._data import shifted_gaussians, two_clouds


# --------------------------------------------------------------------------- wasserstein
def _brute_force_wasserstein(x: np.ndarray, y: np.ndarray, p: float) -> float:
    """W_p for equal sizes: the optimum over doubly stochastic matrices is a permutation."""
    cost = np.linalg.norm(x[:, None] - y[None], axis=-1) ** p
    best = min(cost[range(len(x)), perm].mean() for perm in itertools.permutations(range(len(y))))
    return best ** (1 / p)


@pytest.mark.parametrize("p", [1, 2, 3.5])
def test_wasserstein_matches_brute_force(global_random_seed, p):
    rng = np.random.default_rng(global_random_seed)
    x, y = rng.standard_normal((6, 2)), rng.standard_normal((6, 2)) + 1.0
    assert wasserstein(x, y, p=p) == pytest.approx(_brute_force_wasserstein(x, y, p), rel=1e-9)


@pytest.mark.parametrize("p", [1, 2])
def test_wasserstein_of_a_translation_is_its_length(p):
    x = np.random.default_rng(0).standard_normal((50, 3))
    assert wasserstein(x, x + [3.0, 4.0, 0.0], p=p) == pytest.approx(5.0, rel=1e-9)


def test_wasserstein_accepts_torch_and_unequal_sizes():
    x, y = two_clouds(seed=1, n=40, m=30)
    expected = wasserstein(x, y, p=1)
    got = wasserstein(torch.from_numpy(x).float(), torch.from_numpy(y).float(), p=1)
    assert got == pytest.approx(expected, rel=1e-6)


def test_wasserstein_warns_when_the_network_simplex_stops_early():
    x, y = two_clouds(seed=2, n=60, m=60)
    with pytest.warns(ConvergenceWarning) as record:
        wasserstein(x, y, max_iter=5)
    assert str(record[0].message) == (
        "The exact OT solver (network simplex) stopped after max_iter=5 iterations before "
        "reaching the optimum (numItermax reached before optimality. Try to increase "
        "numItermax.); increase max_iter."
    )


# --------------------------------------------------------------------------- sinkhorn
def test_sinkhorn_is_within_the_entropic_bias_of_exact_w1(global_random_seed):
    # W1 <= <P_eps, M> <= W1 + eps log min(n, m), up to the tolerated marginal error
    x, y = two_clouds(global_random_seed)
    w1, value = wasserstein(x, y, p=1), sinkhorn(x, y)
    assert w1 - 1e-3 <= value <= w1 + 1e-3 * math.log(120) + 1e-3


def test_sinkhorn_of_identical_sets_is_small():
    x = np.random.default_rng(3).standard_normal((200, 2))
    assert 0.0 <= sinkhorn(x, x) <= 1e-3 * math.log(200)


@pytest.mark.parametrize("epsilon", [0.05, 0.5])
def test_sinkhorn_matches_pots_plain_log_solver_at_moderate_epsilon(epsilon):
    # at these epsilons POT's cold-started log-domain Sinkhorn converges on its own
    x, y = two_clouds(seed=4, n=80, m=70)
    cost = _cost(torch.from_numpy(x), torch.from_numpy(y)).numpy()
    a, b = np.full(80, 1 / 80), np.full(70, 1 / 70)
    plan = ot.sinkhorn(
        a, b, cost, epsilon, method="sinkhorn_log", numItermax=100_000, stopThr=1e-13
    )
    expected = float((plan * cost).sum())
    assert sinkhorn(x, y, epsilon, tol=1e-6) == pytest.approx(expected, rel=1e-5)


def test_sinkhorn_gives_the_converged_value_of_method_md():
    # method.md §6: two 2,000-point clouds shifted by 3; converged ~3.05, exact W1 ~3.0
    x, y = shifted_gaussians(seed=0, n=2000)
    assert sinkhorn(x, y) == pytest.approx(3.0463, abs=1e-3)
    assert wasserstein(x, y, p=1) == pytest.approx(3.0458, abs=1e-3)


@pytest.mark.parametrize("n", [1, 2])
def test_sinkhorn_of_tiny_sets_is_the_translation_length(n):
    x = np.arange(2.0 * n).reshape(n, 2)
    assert sinkhorn(x, x + [3.0, 4.0]) == pytest.approx(5.0, abs=1e-4)


def test_sinkhorn_torch_float32_and_numpy_float64_agree():
    x, y = two_clouds(seed=5)
    expected = sinkhorn(x, y)
    got = sinkhorn(torch.from_numpy(x).float(), torch.from_numpy(y).float())
    assert got == pytest.approx(expected, abs=1e-4)


def test_sinkhorn_warns_when_not_converged():
    x, y = two_clouds(seed=6)
    with pytest.warns(ConvergenceWarning) as record:
        sinkhorn(x, y, max_iter=1, tol=1e-12)
    message = str(record[0].message)
    pattern = (
        r"sinkhorn did not converge in 1 L-BFGS iterations: the L1 marginal error "
        r"\d\.\d\de[-+]\d\d is above tol=1\.0e-12\. Increase max_iter, or tol, or epsilon "
        r"\(a larger epsilon converges faster but raises the cost by up to "
        r"epsilon \* log\(min\(n, m\)\)\)\."
    )
    assert re.fullmatch(pattern, message), message


def test_sinkhorn_reaches_the_tolerance_on_two_samples_of_one_mixture():
    # the floor case, where Sinkhorn's own iterations stall (see the sinkhorn docstring)
    rng = np.random.default_rng(0)
    centres = 5.0 * np.array([(i, j) for i in (-1, 0, 1) for j in (-1, 0, 1)])

    def draw(n):
        return centres[rng.integers(0, 9, n)] + 0.3**0.5 * rng.standard_normal((n, 2))

    x, y = draw(400), draw(400)
    w1 = wasserstein(x, y, p=1)
    value = sinkhorn(x, y)  # about 500 iterations; a ConvergenceWarning would fail the test
    assert w1 <= value <= w1 + 1e-3 * math.log(400)


def test_sinkhorn_has_no_gradient_side_effects():
    x = torch.randn(30, 2, generator=torch.Generator().manual_seed(0), requires_grad=True)
    assert isinstance(sinkhorn(x, x.detach() + 1.0), float)
    assert x.grad is None


# --------------------------------------------------------------------------- paper_sinkhorn
def _reference_oracle(x: np.ndarray, y: np.ndarray, eps=1e-3, max_iters=100, stop=1e-5) -> float:
    """Dense numpy transcription of sde_sampler/eval/sinkhorn.py (uniform weights, p=2)."""
    cost = np.sqrt(((x[:, None, :] - y[None, :, :]) ** 2).sum(-1))
    n = len(x)
    log_a = log_b = np.log(np.full(n, 1.0 / n))
    u, v = np.zeros(n), eps * log_b
    for _ in range(max_iters):
        u_prev, v_prev = u, v
        u = eps * (log_a - logsumexp((-cost + v[None, :]) / eps, axis=1))
        v = eps * (log_b - logsumexp((-cost + u[:, None]) / eps, axis=0))
        if np.abs(u_prev - u).max() < stop and np.abs(v_prev - v).max() < stop:
            break
    return float((np.exp((-cost + u[:, None] + v[None, :]) / eps) * cost).sum())


@pytest.mark.parametrize("epsilon", [1e-3, 0.1, 2.0])  # 2.0 stops early on the tolerance
def test_paper_sinkhorn_matches_the_dense_oracle(global_random_seed, epsilon):
    x, y = two_clouds(global_random_seed, n=9, m=9, d=2)
    expected = _reference_oracle(x, y, eps=epsilon)
    assert paper_sinkhorn(x, y, epsilon=epsilon) == pytest.approx(expected, rel=1e-10)


def test_paper_sinkhorn_reproduces_the_measurement_of_method_md():
    # method.md §6: 100 iterations give 0.74 where the converged value is 3.05
    x, y = shifted_gaussians(seed=0, n=2000)
    value = paper_sinkhorn(x.astype(np.float32), y.astype(np.float32))
    assert value == pytest.approx(0.7405, abs=1e-3)


@pytest.mark.parametrize("seed", [1, 2])
def test_paper_sinkhorn_is_far_below_exact_w1_on_other_draws(seed):
    x, y = shifted_gaussians(seed=seed, n=1000)
    value = paper_sinkhorn(x.astype(np.float32), y.astype(np.float32))
    assert value < 0.3 * wasserstein(x, y, p=1)


def test_paper_sinkhorn_holds_only_the_column_marginals():
    x, y = shifted_gaussians(seed=3, n=300)
    cost = _cost(torch.from_numpy(x), torch.from_numpy(y))
    u, v = _reference_iterations(cost, 1e-3, 100, 1e-5)
    plan = torch.exp((u[:, None] + v[None, :] - cost) / 1e-3)
    torch.testing.assert_close(plan.sum(0), torch.full((300,), 1 / 300, dtype=torch.float64))
    assert float((plan.sum(1) - 1 / 300).abs().sum()) > 0.5


def test_paper_sinkhorn_follows_the_input_dtype():
    x, y = two_clouds(seed=8, n=200, m=200, d=2)
    single = paper_sinkhorn(torch.from_numpy(x).float(), torch.from_numpy(y).float())
    assert single == pytest.approx(paper_sinkhorn(x, y), abs=1e-4)
