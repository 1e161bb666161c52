"""TemperedManyWell and BayesianLinearRegression: formulas, scores, exact log Z and samples."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.distributions import MultivariateNormal, Normal

from skcds.energies import BayesianLinearRegression, ManyWell, TemperedManyWell

F64 = torch.float64
LOG_2PI = math.log(2 * math.pi)


def log_integral(f) -> float:
    """``log`` of the integral of a 1-D density over the real line: scipy's quad if it is
    installed, else a fine trapezoid (both independent of the code under test)."""
    try:
        from scipy import integrate
    except ImportError:
        return log_trapezoid(f)
    value, _ = integrate.quad(f, -np.inf, np.inf, epsabs=0, epsrel=1e-13, limit=200)
    return math.log(value)


def log_trapezoid(f) -> float:
    """``log`` of the trapezoid rule on a fine grid of [-15, 15] (the integrands decay fast)."""
    t = np.linspace(-15.0, 15.0, 300_001)
    values = f(t)
    return math.log((values.sum() - 0.5 * (values[0] + values[-1])) * (t[1] - t[0]))


def brute_force_log_z(energy: TemperedManyWell, beta: float) -> float:
    """``log Z(beta)`` from 1-D integrals of the tempered density in ``x`` (no rescaling)."""
    delta, m = energy.separation, energy.n_double_wells
    well = log_integral(lambda t: np.exp(-beta * (t * t - delta) ** 2))
    gauss = log_integral(lambda t: np.exp(-0.5 * beta * t * t))
    return m * well + (energy.dim - m) * gauss


def well_moment(beta: float, delta: float, k: int) -> float:
    """``E[x^k]`` under ``exp(-beta (x^2 - delta)^2)``, by two 1-D integrals."""
    log_z = log_integral(lambda t: np.exp(-beta * (t * t - delta) ** 2))
    return math.exp(log_integral(lambda t: t**k * np.exp(-beta * (t * t - delta) ** 2)) - log_z)


def points(seed: int, n: int, dim: int, spread: float = 1.5) -> torch.Tensor:
    return spread * torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=F64)


# ------------------------------------------------------------------------ TemperedManyWell
def test_tempered_log_prob_matches_the_formula_and_many_well_at_beta_one():
    energy, x = TemperedManyWell(dim=7, n_double_wells=4, separation=2.0), points(0, 6, 7)
    beta = torch.linspace(0.3, 1.0, 6, dtype=F64)
    base = -((x[:, :4] ** 2 - 2.0) ** 2).sum(1) - 0.5 * (x[:, 4:] ** 2).sum(1)
    torch.testing.assert_close(energy.log_prob(x, beta[:, None]), beta * base)
    torch.testing.assert_close(energy.log_prob(x, 1.0), ManyWell(7, 4, 2.0).log_prob(x))
    torch.testing.assert_close(energy.at(1.0).log_prob(x), ManyWell(7, 4, 2.0).log_prob(x))


@given(seed=st.integers(0, 2**31 - 1), beta=st.floats(0.3, 1.0), n=st.integers(1, 4))
def test_tempered_closed_form_score_equals_autograd(seed, beta, n):
    energy = TemperedManyWell(dim=6, n_double_wells=4, separation=3.0)
    x = points(seed, n, 6).requires_grad_(True)
    c = torch.full((n, 1), beta, dtype=F64)
    (expected,) = torch.autograd.grad(energy._log_prob_at(x, c).sum(), x)
    torch.testing.assert_close(energy._grad_log_prob_at(x.detach(), c), expected)
    torch.testing.assert_close(energy.grad_log_prob(x.detach(), beta), expected)


def test_tempered_log_normalizer_at_beta_one_is_many_well():
    energy = TemperedManyWell.mw54()
    exact = ManyWell.mw54().log_normalizer
    assert abs(energy.log_normalizer_at(torch.tensor([1.0], dtype=F64)) - exact) < 1e-9
    assert abs(energy.at(1.0).log_normalizer - exact) < 1e-9


@pytest.mark.parametrize("beta", [0.3, 0.55, 1.0])
@pytest.mark.parametrize(
    "energy",
    [TemperedManyWell.mw54(), TemperedManyWell(dim=7, n_double_wells=3, separation=2.0)],
    ids=["mw54", "mw7-3-2"],
)
def test_tempered_log_normalizer_matches_numerical_integration(energy, beta):
    exact = energy.log_normalizer_at(torch.tensor([beta], dtype=F64))
    assert abs(exact - brute_force_log_z(energy, beta)) < 1e-9
    assert energy.at(beta).log_normalizer == exact


def test_the_two_integrators_agree():
    f = lambda t: t**2 * np.exp(-0.3 * (t * t - 4.0) ** 2)
    assert abs(log_integral(f) - log_trapezoid(f)) < 1e-10


def test_tempered_samples_match_one_dimensional_quadrature():
    """At beta=0.5: P(x_i > 0) = 1/2 and E[x_i^2] (quadrature) within 4 standard errors."""
    n, beta, energy = 20_000, 0.5, TemperedManyWell(dim=6, n_double_wells=4, separation=4.0)
    x = energy.at(beta).sample(n, generator=torch.Generator().manual_seed(0))
    assert x.shape == (n, 6) and x.dtype == F64
    second, fourth = (well_moment(beta, 4.0, k) for k in (2, 4))
    wells, gauss = x[:, :4], x[:, 4:]
    assert ((wells > 0).double().mean(0) - 0.5).abs().max() < 4 * math.sqrt(0.25 / n)
    error = math.sqrt((fourth - second**2) / n)
    assert ((wells**2).mean(0) - second).abs().max() < 4 * error
    # the Gaussian coordinates are N(0, 1 / beta): E[x^2] = 2, Var[x^2] = 2 * 2^2
    assert ((gauss**2).mean(0) - 1 / beta).abs().max() < 4 * math.sqrt(8.0 / n)


def test_tempered_members_sample_and_normalise_through_at():
    energy = TemperedManyWell.mw54()
    member = energy.at(0.7)
    assert member.can_sample and isinstance(member.log_normalizer, float)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    torch.testing.assert_close(member.sample(50, g1), energy.at(0.7).sample(50, g2))
    per_row = energy.at(torch.full((4, 1), 0.7, dtype=F64))
    assert not per_row.can_sample and per_row.log_normalizer is None
    with pytest.raises(ValueError, match="'context' must lie in the context's domain"):
        energy.at(1.5)


# --------------------------------------------------------------- BayesianLinearRegression
def naive_log_prob(energy: BayesianLinearRegression, w: torch.Tensor, c: float) -> torch.Tensor:
    """``log N(y | X w, sigma^2 I) + log N(w | 0, e^{2c} I)`` with torch.distributions."""
    mean = w @ energy.X.T
    log_lik = Normal(mean, energy.noise_scale).log_prob(energy.y).sum(1)
    return log_lik + Normal(0.0, math.exp(c)).log_prob(w).sum(1)


def evidence(energy: BayesianLinearRegression, c: float) -> float:
    """``log N(y; 0, sigma^2 I + s^2 X X^T)``, an N x N Gaussian (independent of the code)."""
    X = energy.X
    cov = energy.noise_scale**2 * torch.eye(X.shape[0], dtype=F64) + math.exp(2 * c) * X @ X.T
    return float(MultivariateNormal(torch.zeros(X.shape[0], dtype=F64), cov).log_prob(energy.y))


CONTEXTS = [math.log(0.1), -1.0, 0.0, 0.7, math.log(10.0)]


def test_regression_data_are_drawn_once_from_the_seed():
    a, b = BayesianLinearRegression(), BayesianLinearRegression(random_state=0)
    assert a.dim == 5 and a.X.shape == (20, 5) and a.y.shape == (20,)
    torch.testing.assert_close(a.X, b.X, rtol=0, atol=0)
    assert not torch.equal(a.X, BayesianLinearRegression(random_state=1).X)
    residual = a.y - a.X @ torch.as_tensor(a.true_weights)
    assert residual.abs().max() < 5.0  # noise N(0, 1) on 20 rows


@pytest.mark.parametrize("c", CONTEXTS)
def test_regression_log_prob_matches_torch_distributions(c):
    energy = BayesianLinearRegression(n_features=3, n_data=8, noise_scale=0.5)
    w = points(1, 5, 3)
    torch.testing.assert_close(energy.log_prob(w, c), naive_log_prob(energy, w, c))


@given(seed=st.integers(0, 2**31 - 1), c=st.floats(math.log(0.1), math.log(10.0)))
def test_regression_closed_form_score_equals_autograd(seed, c):
    energy = BayesianLinearRegression(n_features=4, n_data=10, noise_scale=0.8)
    w = points(seed, 3, 4).requires_grad_(True)
    contexts = torch.full((3, 1), c, dtype=F64)
    (expected,) = torch.autograd.grad(energy._log_prob_at(w, contexts).sum(), w)
    torch.testing.assert_close(energy._grad_log_prob_at(w.detach(), contexts), expected)
    torch.testing.assert_close(energy.grad_log_prob(w.detach(), c), expected)


@pytest.mark.parametrize("c", CONTEXTS)
def test_regression_log_normalizer_is_the_evidence(c):
    energy = BayesianLinearRegression(noise_scale=0.7)
    exact = energy.log_normalizer_at(torch.tensor([c], dtype=F64))
    assert abs(exact - evidence(energy, c)) < 1e-9
    assert energy.at(c).log_normalizer == exact
    # log Z = log rho(w | c) - log N(w | mean, cov) for every w
    mean, cov = energy.posterior_at(c)
    w = torch.as_tensor(mean) + points(2, 16, 5, spread=0.5)
    posterior = MultivariateNormal(torch.as_tensor(mean), torch.as_tensor(cov))
    differences = energy.log_prob(w, c) - posterior.log_prob(w)
    torch.testing.assert_close(differences, torch.full_like(differences, exact))


def test_regression_samples_match_the_posterior():
    n, c = 20_000, -0.5
    energy = BayesianLinearRegression(n_features=3, n_data=6, noise_scale=1.5)
    w = energy.at(c).sample(n, generator=torch.Generator().manual_seed(0))
    assert w.shape == (n, 3) and w.dtype == F64
    mean, cov = energy.posterior_at(c)
    var = np.diag(cov)
    assert (np.abs(w.mean(0).numpy() - mean) < 4 * np.sqrt(var / n)).all()
    sample_cov = np.cov(w.numpy(), rowvar=False)
    # the sample covariance's entries have standard error sqrt((S_ii S_jj + S_ij^2) / n)
    error = np.sqrt((np.outer(var, var) + cov**2) / n)
    assert (np.abs(sample_cov - cov) < 4 * error).all()


def test_regression_takes_ones_own_data():
    X, y = np.random.default_rng(0).normal(size=(12, 2)), np.arange(12.0)
    energy = BayesianLinearRegression(X=X, y=y, log_prior_scale=(-1.0, 1.0))
    assert energy.dim == 2 and energy.true_weights is None
    np.testing.assert_array_equal(energy.X.numpy(), X)
    assert abs(energy.at(0.5).log_normalizer - evidence(energy, 0.5)) < 1e-9


# ------------------------------------------------------------------------------ shared
FAMILIES = {
    "tempered": lambda: TemperedManyWell(dim=4, n_double_wells=2, separation=2.0),
    "regression": lambda: BayesianLinearRegression(n_features=4, n_data=7),
}
CENTRE = {"tempered": 0.5, "regression": 0.0}


@pytest.mark.parametrize("name", FAMILIES)
def test_pickle_round_trip(name):
    energy, x = FAMILIES[name](), points(4, 5, 4)
    clone = pickle.loads(pickle.dumps(energy))
    c = CENTRE[name]
    torch.testing.assert_close(clone.log_prob(x, c), energy.log_prob(x, c), rtol=0, atol=0)
    assert clone.log_normalizer_at(torch.tensor([c], dtype=F64)) == energy.log_normalizer_at(
        torch.tensor([c], dtype=F64)
    )
    assert repr(clone) == repr(energy)


@pytest.mark.parametrize("name", FAMILIES)
def test_float32(name):
    energy, x = FAMILIES[name]().to(torch.float32), points(5, 3, 4)
    c = CENTRE[name]
    assert energy.log_prob(x, c).dtype == F64
    assert energy.log_prob(x.float(), c).dtype == torch.float32
    torch.testing.assert_close(
        energy.log_prob(x.float(), c).double(),
        FAMILIES[name]().log_prob(x, c),
        rtol=1e-5,
        atol=1e-4,
    )
    assert energy.grad_log_prob(x.float(), c).dtype == torch.float32
    assert energy.at(c).sample(3).dtype == torch.float32


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: TemperedManyWell(dim=0), "'dim' must be an int >= 1; got 0."),
        (lambda: TemperedManyWell(dim=3, n_double_wells=4), "'n_double_wells' must be <= dim=3"),
        (lambda: TemperedManyWell(separation=-1.0), "'separation' must be a finite float > 0"),
        (lambda: TemperedManyWell(beta=(0.0, 1.0)), "'beta' must be a pair (low, high)"),
        (lambda: TemperedManyWell(beta=(1.0, 0.5)), "'beta' must be a pair (low, high)"),
        (lambda: TemperedManyWell(beta=0.5), "'beta' must be a pair (low, high)"),
        (lambda: TemperedManyWell.mw54(beta=(0.5, math.inf)), "'beta' must be a pair"),
        (lambda: BayesianLinearRegression(n_features=0), "'n_features' must be an int >= 1"),
        (lambda: BayesianLinearRegression(n_data=0), "'n_data' must be an int >= 1"),
        (lambda: BayesianLinearRegression(noise_scale=0.0), "'noise_scale' must be a finite"),
        (lambda: BayesianLinearRegression(random_state=-1), "'random_state' must be an int >= 0"),
        (
            lambda: BayesianLinearRegression(log_prior_scale=(1.0, 1.0)),
            "'log_prior_scale' must be a pair (low, high) of finite floats with low < high",
        ),
        (lambda: BayesianLinearRegression(X=np.ones((3, 2))), "pass both 'X' and 'y'"),
        (lambda: BayesianLinearRegression(X=np.ones(3), y=np.ones(3)), "'X' must be a 2-D array"),
        (
            lambda: BayesianLinearRegression(X=np.ones((3, 2)), y=np.ones(4)),
            "'y' must be of shape (3,), one target per row of X",
        ),
        (lambda: BayesianLinearRegression(X=np.ones((0, 2)), y=np.ones(0)), "'X' must have"),
    ],
)
def test_invalid_parameters_name_the_parameter(factory, message):
    with pytest.raises(ValueError) as error:
        factory()
    assert message in str(error.value)


def test_reprs_and_params():
    assert repr(TemperedManyWell.mw54()) == (
        "TemperedManyWell(dim=5, n_double_wells=5, separation=4.0, beta=(0.3, 1.0))"
    )
    assert TemperedManyWell.mw54().context_dim == 1
    energy = BayesianLinearRegression(noise_scale=2.0)
    assert energy.get_params()["noise_scale"] == 2.0 and energy.context_dim == 1
    assert energy.set_params(n_features=3).dim == 3
