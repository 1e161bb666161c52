"""Real posteriors out of the box: preconditioning stays exact, the probe never breaks a valid
model, non-finite values get one policy whatever the seed, a late divergence keeps the model,
constrained models sample in their own coordinates, and the results reach ArviZ."""

import math
import warnings

import joblib
import numpy as np
import pytest
import torch
from torch.distributions import Gamma, HalfNormal, MultivariateNormal, Normal, constraints

import skcds
from skcds import ConsistentDistiller, DiffusionSampler, SelfConsistentSampler
from skcds.energies import (
    Constrained,
    Energy,
    Funnel,
    GaussianMixture,
    ManyWell,
    from_log_prob,
    precondition,
)
from skcds.exceptions import (
    ConvergenceWarning,
    EnergyError,
    ModelFailureWarning,
    UnreliableWeightsWarning,
)
from skcds.metrics import estimate_log_normalizer

TINY = {"n_steps": 8, "max_iter": 3, "batch_size": 32}


def _correlated_gaussian(scale: float) -> tuple[Energy, np.ndarray, np.ndarray]:
    """A normalised 3-D Gaussian with sds ``scale * (1, 2, 0.5)``, correlation 0.8, far from
    the origin: ``log Z = 0``."""
    sd = scale * np.array([1.0, 2.0, 0.5])
    corr = np.full((3, 3), 0.8) + 0.2 * np.eye(3)
    cov = corr * np.outer(sd, sd)
    loc = np.array([50.0, -20.0, 7.0]) * scale
    law = MultivariateNormal(torch.tensor(loc), torch.tensor(cov))
    return from_log_prob(lambda x: law.log_prob(x.double()).to(x.dtype), dim=3), loc, cov


@pytest.mark.parametrize("scale", [1e-3, 1e3])
def test_preconditioning_keeps_weights_exact(scale):
    energy, loc, cov = _correlated_gaussian(scale)
    sampler = DiffusionSampler(**TINY, precondition="auto", dtype="float64", random_state=0)
    sampler.fit(energy)
    assert sampler.preconditioning_.method == "laplace"
    x, log_w = sampler.sample(20_000, random_state=1, return_log_weights=True)
    # E_q[w] = Z = 1 for any q with valid (path) weights: log Z within 4 standard errors
    estimate = estimate_log_normalizer(log_w)
    assert abs(estimate.log_z) < 4 * estimate.stderr + 1e-3
    # samples come back in the user's coordinates
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    mean = w @ x
    assert np.all(np.abs(mean - loc) < 0.05 * np.sqrt(np.diag(cov)))


def test_without_preconditioning_a_far_target_is_not_reached():
    """The control experiment: the same budget in raw coordinates misses the mode."""
    energy, loc, cov = _correlated_gaussian(1e-3)
    sampler = DiffusionSampler(**TINY, precondition="none", dtype="float64", random_state=0)
    x = sampler.fit(energy).sample(2000, random_state=1)
    assert sampler.preconditioning_.method == "none"
    assert np.abs(x.mean(0) - loc).max() > 10 * np.sqrt(np.diag(cov)).max()


@pytest.mark.parametrize(
    "energy",
    [GaussianMixture.grid(), GaussianMixture.random(), ManyWell.mw54(), ManyWell.mw52()],
    ids=["gmm9", "gmm40", "mw54", "mw52"],
)
def test_auto_leaves_the_multimodal_benchmarks_alone(energy):
    assert precondition(energy).method == "none"


def test_auto_leaves_the_funnel_alone():
    """Its mode is 40 sds down the neck: the Laplace fit there is far worse than N(0, I)."""
    choice = precondition(Funnel())
    assert choice.method == "none" and "worse" in choice.reason


def test_auto_leaves_numpy_energies_alone():
    energy = from_log_prob(lambda x: -0.5 * ((x - 40) ** 2).sum(1), dim=2, backend="numpy")
    assert "Hessian" in precondition(energy).reason


def _regression_data():
    generator = torch.Generator().manual_seed(0)
    x = 100 + 15 * torch.randn(200, generator=generator, dtype=torch.float64)
    y = 26 + 0.6 * x + 18 * torch.randn(200, generator=generator, dtype=torch.float64)
    return x, y


X_DATA, Y_DATA = _regression_data()


def kidiq_like(theta: torch.Tensor) -> torch.Tensor:
    """Linear regression with a flat prior and torch.distributions' argument validation on
    (as a user writes it): a zero or infinite scale raises a ValueError."""
    beta0, beta1, log_sigma = theta[:, :1], theta[:, 1:2], theta[:, 2]
    mean = beta0 + beta1 * X_DATA.to(theta)
    sigma = log_sigma.exp()[:, None]
    return Normal(mean, sigma, validate_args=True).log_prob(Y_DATA.to(theta)).sum(-1) + log_sigma


def test_a_validating_torch_distributions_model_fits_and_is_whitened():
    # the decay check used to put exp(+-1000) scales into Normal: ValueError from torch
    energy = from_log_prob(kidiq_like, dim=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sampler = SelfConsistentSampler(**TINY, random_state=0).fit(energy)
    assert sampler.preconditioning_.method == "laplace"
    x = sampler.sample(500, n_steps=1, random_state=0)
    assert abs(np.median(x[:, 1]) - 0.6) < 0.2 and abs(np.median(np.exp(x[:, 2])) - 18) < 6


def slab_nan(x: torch.Tensor) -> torch.Tensor:
    """A standard normal, NaN on the thin slab 0.3 < x_0 < 0.34 (about 1.5% of the prior)."""
    out = -0.5 * (x**2).sum(-1)
    return torch.where((x[:, 0] > 0.3) & (x[:, 0] < 0.34), torch.nan, out)


@pytest.mark.parametrize("seed", range(6))
def test_a_nan_slab_gets_the_same_outcome_whatever_the_seed(seed):
    """Masked and trained, never an error at the probe (whose 16 points may or may not hit
    the slab, depending on the seed)."""
    sampler = DiffusionSampler(**TINY, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NonFiniteWarning when the slab is hit often
        sampler.fit(from_log_prob(slab_nan, dim=2))
    assert sampler.n_iter_ == TINY["max_iter"]


class DivergesLate(Energy):
    """A Gaussian that returns NaN everywhere after ``after`` calls."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.dim, self.after, self.calls = 2, after, 0

    def _log_prob(self, x):
        self.calls += 1
        out = -0.5 * (x**2).sum(-1)
        return out if self.calls <= self.after else torch.full_like(out, math.nan)


def test_a_late_divergence_stops_with_a_warning_and_keeps_the_model():
    energy = DivergesLate(after=10**9)
    sampler = DiffusionSampler(n_steps=8, max_iter=6, batch_size=32, random_state=0)
    sampler.set_params(langevin=False)  # one evaluation per iteration: calls = iterations
    sampler.fit(energy)
    energy_ = sampler.energy_
    energy_.after = energy_.calls + 2  # two more good iterations, then NaN everywhere
    sampler.set_params(warm_start=True, max_iter=6)
    with (
        pytest.warns(ModelFailureWarning, match=r"returned NaN or \+inf at \d+ point"),
        pytest.warns(ConvergenceWarning, match=r"keeps its 8 completed.*precondition"),
    ):
        sampler.fit()
    assert sampler.n_iter_ == 8 and len(sampler.history_) == 8
    assert all(torch.isfinite(p).all() for p in sampler.control_.parameters())


def test_nothing_finite_at_the_first_iteration_is_still_an_error():
    energy = DivergesLate(after=0)
    with pytest.raises(EnergyError, match="NaN or \\+inf"):
        DiffusionSampler(**TINY, random_state=0).fit(energy)


def model(params: dict) -> torch.Tensor:
    """``y ~ Normal(mu, sigma)``, ``mu ~ Normal(0, 10)``, ``sigma ~ HalfNormal(5)`` and two
    independent ``rate ~ Gamma(2, 1)``."""
    data = torch.tensor([2.1, 3.4, 1.9, 2.8], dtype=params["mu"].dtype)
    mu, sigma = params["mu"], params["sigma"]
    likelihood = Normal(mu[:, None], sigma[:, None]).log_prob(data).sum(-1)
    prior = Normal(0.0, 10.0).log_prob(mu) + HalfNormal(5.0).log_prob(sigma)
    return likelihood + prior + Gamma(2.0, 1.0).log_prob(params["rate"]).sum(-1)


CONSTRAINED = Constrained(
    model,
    {"mu": constraints.real, "sigma": constraints.positive, "rate": (2, constraints.positive)},
)


def test_a_constrained_model_samples_in_its_own_coordinates():
    sampler = SelfConsistentSampler(**TINY, random_state=0).fit(CONSTRAINED)
    x, log_w = sampler.sample(300, n_steps=1, random_state=0, return_log_weights=True)
    assert x.shape == (300, 4) and log_w.shape == (300,)
    assert (x[:, 1:] > 0).all()


def test_to_inference_data_names_the_parameters():
    az = pytest.importorskip("arviz")
    sampler = DiffusionSampler(**TINY, random_state=0).fit(CONSTRAINED)
    idata = sampler.to_inference_data(200, random_state=0)
    posterior = idata.posterior
    assert posterior["mu"].shape == (1, 200) and posterior["rate"].shape == (1, 200, 2)
    assert (posterior["sigma"].values > 0).all()
    assert idata.sample_stats["log_weight"].shape == (1, 200)
    assert np.isfinite(idata.sample_stats["lp"].values).all()
    x = sampler.sample(200, random_state=0)  # the same draws
    np.testing.assert_allclose(posterior["sigma"].values[0], x[:, 1], rtol=1e-5)
    assert set(az.summary(idata).index) >= {"mu", "sigma", "rate[0]", "rate[1]"}


@pytest.mark.parametrize("refinement", [{"mcmc_steps": 2}, {"imh_steps": 2}])
def test_mcmc_refined_draws_reach_arviz_without_weights(refinement):
    pytest.importorskip("arviz")
    sampler = DiffusionSampler(**TINY, random_state=0).fit(CONSTRAINED)
    idata = sampler.to_inference_data(100, random_state=0, **refinement)
    assert "log_weight" not in idata.sample_stats and "lp" in idata.sample_stats
    plain = sampler.to_inference_data(100, random_state=0).posterior["sigma"].values
    assert not np.array_equal(idata.posterior["sigma"].values, plain)


def test_the_distiller_works_in_its_teachers_coordinates():
    energy = from_log_prob(kidiq_like, dim=3)
    teacher = DiffusionSampler(**TINY, random_state=0).fit(energy)
    student = ConsistentDistiller(teacher, n_intervals=4, max_iter=2, batch_size=16)
    student.fit()
    assert student.preconditioning_ is teacher.preconditioning_
    assert student.energy_.base.get_params() == teacher.energy_.base.get_params()
    x = student.sample(200, random_state=0)
    assert abs(np.median(np.exp(x[:, 2])) - 18) < 10  # in the user's coordinates


def test_a_preconditioned_model_round_trips(tmp_path):
    energy = from_log_prob(kidiq_like, dim=3)
    sampler = DiffusionSampler(**TINY, random_state=0).fit(energy)
    expected = sampler.sample(50, random_state=3)
    joblib.dump(sampler, tmp_path / "model.joblib")
    np.testing.assert_array_equal(
        joblib.load(tmp_path / "model.joblib").sample(50, random_state=3), expected
    )
    skcds.save(sampler, tmp_path / "model.skcds")
    loaded = skcds.load(tmp_path / "model.skcds", energy=energy)
    assert loaded.preconditioning_.method == "laplace"
    np.testing.assert_array_equal(loaded.sample(50, random_state=3), expected)


def test_heavy_tailed_weights_get_a_plain_language_warning(monkeypatch):
    with pytest.warns(ModelFailureWarning, match="NaN or \\+inf"):
        sampler = DiffusionSampler(**TINY, random_state=0).fit(from_log_prob(slab_nan, dim=2))
    rng = np.random.default_rng(0)
    heavy = torch.as_tensor(np.log(rng.pareto(1 / 0.9, 4000) + 1.0))
    monkeypatch.setattr(sampler, "_draw", lambda *args, **kwargs: (None, heavy))
    with pytest.warns(UnreliableWeightsWarning, match="not to be trusted.*mcmc_steps"):
        estimate = sampler.estimate_log_normalizer(4000)
    assert estimate.khat > 0.7 and not estimate.reliable


@pytest.mark.parametrize("energy", [GaussianMixture.grid(), Funnel()], ids=["gmm9", "funnel"])
def test_auto_trains_the_synthetic_targets_exactly_as_before(energy):
    """'auto' leaves them alone and draws nothing from the training generator, so the
    synthetic benchmarks are unchanged: bitwise the same weights as precondition='none'."""
    fits = [
        DiffusionSampler(**TINY, precondition=p, random_state=0).fit(energy)
        for p in ("auto", "none")
    ]
    for a, b in zip(*(f.control_.parameters() for f in fits), strict=True):
        assert torch.equal(a, b)


def refuses_far_points(x: torch.Tensor) -> torch.Tensor:
    """A model that raises away from its mass, as a GP kernel whose Cholesky fails at a huge
    amplitude or a ``torch.distributions`` scale that underflowed."""
    if bool((x.abs() > 6).any()):
        raise ValueError("Expected parameter scale to satisfy the constraint GreaterThan(0)")
    return -0.5 * (x**2).sum(-1)


def test_the_probe_never_breaks_a_model_that_refuses_far_points():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sampler = DiffusionSampler(**TINY, random_state=0).fit(from_log_prob(refuses_far_points, 2))
    assert sampler.n_iter_ == TINY["max_iter"]
