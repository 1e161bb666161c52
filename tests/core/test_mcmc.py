"""MALA refinement: invariance of the target, pull toward it, tuning, and a broken twin that
the same statistical check rejects."""

import math

import pytest
import torch

from skcds._core import mcmc
from skcds.energies import from_log_prob

F64 = torch.float64
MEAN = torch.tensor([3.0, -1.0, 0.5], dtype=F64)
COV = torch.tensor([[4.0, 1.2, 0.0], [1.2, 1.0, 0.3], [0.0, 0.3, 0.25]], dtype=F64)
PRECISION = torch.linalg.inv(COV)


def _log_prob(x):
    z = x - MEAN.to(x)
    return -0.5 * ((z @ PRECISION.to(x)) * z).sum(-1)


ENERGY = from_log_prob(_log_prob, dim=3).double()


def exact(n, seed):
    g = torch.Generator().manual_seed(seed)
    return MEAN + torch.randn(n, 3, generator=g, dtype=F64) @ torch.linalg.cholesky(COV).T


def max_moment_error(x) -> float:
    """Largest standardised error of the means and of the covariance entries."""
    sd = COV.diagonal().sqrt()
    mean_error = ((x.mean(0) - MEAN) / sd).abs().max()
    cov_error = ((torch.cov(x.T) - COV) / torch.outer(sd, sd)).abs().max()
    return float(max(mean_error, cov_error))


def _broken_mala(energy, x, n_steps, *, step_size, generator):
    """The twin without the Metropolis correction (unadjusted Langevin): biased at this step."""
    for _ in range(n_steps):
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        x = x + 0.5 * step_size**2 * energy._grad_log_prob(x) + step_size * noise
    return mcmc.MCMCResult(x, 1.0, 0)


@pytest.mark.parametrize("kernel", ["mala", "broken"])
def test_refinement_leaves_exact_samples_exact_and_the_check_rejects_a_broken_kernel(kernel):
    g = torch.Generator().manual_seed(0)
    x0 = exact(20_000, seed=1)
    assert max_moment_error(x0) < 0.05  # the check accepts exact samples
    step = 0.5  # large for the stiffest direction: unadjusted, the variance is 1.7x there
    move = mcmc.mala if kernel == "mala" else _broken_mala
    result = move(ENERGY, x0, 10, step_size=step, generator=g)
    if kernel == "mala":
        assert 0.05 < result.acceptance < 0.95
        assert max_moment_error(result.x) < 0.05
    else:
        assert max_moment_error(result.x) > 0.2


def test_refinement_pulls_a_biased_sampler_toward_the_target():
    g = torch.Generator().manual_seed(0)
    biased = torch.randn(4000, 3, generator=g, dtype=F64)  # N(0, I), far from the target
    assert max_moment_error(biased) > 1.0
    scale = torch.ones(3, dtype=F64)
    step, cost = mcmc.tune_step_size(ENERGY, biased[:256], scale=scale, generator=g)
    result = mcmc.mala(ENERGY, biased, 200, step_size=step, scale=scale, generator=g)
    assert max_moment_error(result.x) < 0.1
    assert result.n_evaluations == 4000 * 201 and cost == 256 * 20 * 3


def test_tuning_reaches_the_target_acceptance_and_is_seeded():
    pilot = exact(256, seed=2)
    a = mcmc.tune_step_size(ENERGY, pilot, generator=torch.Generator().manual_seed(5))
    b = mcmc.tune_step_size(ENERGY, pilot, generator=torch.Generator().manual_seed(5))
    assert a == b
    g = torch.Generator().manual_seed(6)
    rate = mcmc.mala(ENERGY, exact(4000, seed=3), 20, step_size=a[0], generator=g).acceptance
    assert abs(rate - mcmc.TARGET_ACCEPTANCE) < 0.12


def test_non_finite_proposals_are_rejected_and_chains_stay_finite():
    def half_space(x):  # -inf for x_0 < 0: a proposal there must never be accepted
        value = -0.5 * x.square().sum(-1)
        return torch.where(x[:, 0] < 0, torch.full_like(value, -math.inf), value)

    energy = from_log_prob(half_space, dim=2).double()
    x = torch.rand(500, 2, dtype=F64) + 0.1
    result = mcmc.mala(energy, x, 30, step_size=1.0, generator=torch.Generator().manual_seed(0))
    assert bool(torch.isfinite(result.x).all()) and bool((result.x[:, 0] >= 0).all())
    assert 0 < result.acceptance < 1


def test_zero_moves_return_the_input():
    x = exact(10, seed=0)
    result = mcmc.mala(ENERGY, x, 0, step_size=0.5)
    assert torch.equal(result.x, x) and result.n_evaluations == 10


# ---------------------------------------------------------------- independent Metropolis–Hastings


def _mixture_log_prob(x, w_left):
    """Log-density of ``w_left N(-4, 1) + (1 - w_left) N(4, 1)`` in 1-D, shape (n,)."""
    parts = torch.stack([-0.5 * (x[:, 0] + 4) ** 2, -0.5 * (x[:, 0] - 4) ** 2])
    weights = torch.tensor([w_left, 1 - w_left], dtype=x.dtype)[:, None]
    return torch.logsumexp(parts + weights.log(), 0) - 0.5 * math.log(2 * math.pi)


def _mixture_proposal(n, generator, exact_weights=True):
    """Draws of the 80/20 mixture and their log-weights against the 50/50 target (or, for
    the broken twin, weights that ignore the proposal's density)."""
    left = torch.rand(n, generator=generator, dtype=F64) < 0.8
    y = (torch.where(left, -4.0, 4.0) + torch.randn(n, generator=generator, dtype=F64))[:, None]
    log_q = _mixture_log_prob(y, 0.8) if exact_weights else torch.zeros(n, dtype=F64)
    return y, _mixture_log_prob(y, 0.5) - log_q


@pytest.mark.parametrize("exact_weights", [True, False])
def test_independent_mh_moves_mass_between_modes_and_rejects_a_twin_with_wrong_weights(
    exact_weights,
):
    """The sampler puts 80 % of its mass on the left mode of a 50/50 target, 8 standard
    deviations from the other: MALA could not move it, independent MH with exact weights
    balances the modes; with weights that ignore the proposal's density it cannot."""
    g = torch.Generator().manual_seed(0)
    n = 20_000
    x, log_w = _mixture_proposal(n, g, exact_weights)
    assert float((x[:, 0] > 0).double().mean()) == pytest.approx(0.2, abs=0.01)
    result = mcmc.independent_mh(
        x, log_w, lambda: _mixture_proposal(n, g, exact_weights), 20, generator=g
    )
    right = float((result.x[:, 0] > 0).double().mean())
    assert result.n_evaluations == 20 * n
    if exact_weights:
        assert right == pytest.approx(0.5, abs=0.02)
        assert 0.3 < result.acceptance < 0.9
    else:
        assert right < 0.3


def test_independent_mh_keeps_exact_draws_exact_and_leaves_invalid_states():
    """Exact proposals (constant weights): always accepted, the law stays the target; a
    chain at a NaN or -inf weight moves at the first finite proposal."""
    g = torch.Generator().manual_seed(1)
    x0 = exact(20_000, seed=2)
    log_w0 = torch.zeros(20_000, dtype=F64)
    log_w0[:10] = torch.nan
    log_w0[10:20] = -torch.inf
    result = mcmc.independent_mh(
        x0, log_w0, lambda: (exact(20_000, seed=3), torch.zeros(20_000, dtype=F64)), 1, g
    )
    assert max_moment_error(result.x) < 0.05
    assert not torch.equal(result.x[:20], x0[:20])
    nothing = mcmc.independent_mh(x0, log_w0, lambda: None, 0, g)
    assert torch.equal(nothing.x, x0)
