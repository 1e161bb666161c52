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
    return mcmc.MALAResult(x, 1.0, 0)


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
