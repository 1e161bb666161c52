"""The Energy contract, checked on every public target of ``skcds.energies``.

Every :class:`Energy` subclass in ``skcds.energies.__all__`` is enrolled automatically: with
its default constructor, or with the factories in ``FACTORIES`` for the ones that need data
(and for extra configurations worth covering). A family of densities (a
:class:`ConditionalEnergy`) is enrolled through a member, ``family.at(c)``. A new target that
cannot be built either way makes ``test_every_public_energy_is_enrolled`` fail.
"""

from __future__ import annotations

import copy
import functools
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.distributions import Dirichlet, Normal, constraints

from skcds import energies
from skcds.energies import (
    LGCP,
    AffineTransformed,
    BayesianLinearRegression,
    Box,
    ConditionalEnergy,
    Constrained,
    Energy,
    GaussianMixture,
    LogisticRegressionPosterior,
    ManyWell,
    TemperedManyWell,
    from_log_prob,
    ordered,
)


def standard_normal_log_prob(x: torch.Tensor) -> torch.Tensor:
    """A module-level (hence picklable) log-density for the wrapper's entry."""
    return -0.5 * (x * x).sum(-1)


def constrained_log_prob(params: dict) -> torch.Tensor:
    """A module-level (picklable) model with a real, a positive, a simplex and an ordered
    parameter, written with torch.distributions."""
    dtype = params["mu"].dtype
    data = torch.tensor([0.3, -1.2, 2.0], dtype=dtype)
    mu, sigma = params["mu"], params["sigma"]
    likelihood = Normal(mu[:, None], sigma[:, None]).log_prob(data).sum(-1)
    cuts = Normal(0.0, 2.0).log_prob(params["cuts"]).sum(-1)
    weights = Dirichlet(torch.full((3,), 2.0, dtype=dtype)).log_prob(params["w"])
    return likelihood + Normal(0.0, 1.0).log_prob(mu) - sigma + cuts + weights


def tempered_normal_log_prob(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """A module-level family: N(0, I / c)."""
    return -0.5 * c[:, 0] * (x * x).sum(-1)


def _small_lgcp() -> LGCP:
    points = np.random.default_rng(0).uniform(size=(30, 2))
    return LGCP(points, n_bins=8)


def _small_logistic(prior_scale: float | None) -> LogisticRegressionPosterior:
    rng = np.random.default_rng(1)
    X = np.concatenate([np.ones((40, 1)), rng.normal(size=(40, 4))], axis=1)
    y = (X[:, 1] + 0.5 * rng.normal(size=40) > 0).astype(int)
    return LogisticRegressionPosterior(X, y, prior_scale=prior_scale)


# name -> factory, for energies whose constructor needs data and for extra configurations
FACTORIES = {
    "GaussianMixture": GaussianMixture.grid,
    "GaussianMixture.random": GaussianMixture.random,
    "GaussianMixture.diagonal": lambda: GaussianMixture(
        [[0.0, 1.0, -1.0], [2.0, -2.0, 0.5]], [[0.5, 1.0, 2.0], [1.5, 0.7, 0.3]], [0.3, 0.7]
    ),
    "ManyWell.mw52": ManyWell.mw52,
    "LGCP": _small_lgcp,
    "LogisticRegressionPosterior": lambda: _small_logistic(1.0),
    "LogisticRegressionPosterior.no_prior": lambda: _small_logistic(None),
    "from_log_prob": lambda: from_log_prob(standard_normal_log_prob, dim=3),
    "from_log_prob.context": lambda: from_log_prob(
        tempered_normal_log_prob, dim=3, context=Box(0.5, 2.0)
    ).at(1.5),
    "TemperedManyWell": lambda: TemperedManyWell.mw54().at(0.6),
    "BayesianLinearRegression": lambda: BayesianLinearRegression().at(0.5),
    "AffineTransformed": lambda: AffineTransformed(
        _small_logistic(1.0), np.full(5, 0.3), np.tril(np.full((5, 5), 0.1)) + 0.5 * np.eye(5)
    ),
    "Constrained": lambda: Constrained(
        constrained_log_prob,
        {
            "mu": constraints.real,
            "sigma": constraints.positive,
            "w": (3, constraints.simplex),
            "cuts": (2, ordered),
        },
    ),
}
# where "reasonable inputs" are centred
CENTRES = {"LGCP": lambda energy: energy.prior_mean}


def _public_energy_classes() -> dict[str, type]:
    objects = {name: getattr(energies, name) for name in energies.__all__}
    return {
        name: obj
        for name, obj in objects.items()
        if isinstance(obj, type)
        and issubclass(obj, Energy)
        and obj not in (Energy, ConditionalEnergy)
    }


CASES = {
    **{
        name: cls
        for name, cls in _public_energy_classes().items()
        if not issubclass(cls, ConditionalEnergy)  # enrolled through a member
    },
    **FACTORIES,
}


@functools.cache
def build(name: str) -> Energy:
    return CASES[name]()


def reasonable_points(name: str, n: int, seed: int, spread: float, dtype) -> torch.Tensor:
    energy = build(name)
    centre = CENTRES.get(name.split(".")[0], lambda e: 0.0)(energy)
    g = torch.Generator().manual_seed(seed)
    return centre + spread * torch.randn(n, energy.dim, generator=g, dtype=torch.float64).to(dtype)


points = dict(n=st.integers(1, 5), seed=st.integers(0, 2**31 - 1), spread=st.floats(0.1, 2.5))
names = pytest.mark.parametrize("name", sorted(CASES))
dtypes = pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
TOLERANCE = {torch.float32: dict(rtol=1e-5, atol=1e-3), torch.float64: dict(rtol=1e-10, atol=1e-9)}


def test_every_public_energy_is_enrolled():
    built = {type(getattr(build(name), "family", build(name))) for name in CASES}
    missing = set(_public_energy_classes().values()) - built
    assert not missing, f"add a factory to FACTORIES for {sorted(c.__name__ for c in missing)}"


@names
@dtypes
@given(**points)
def test_shape_dtype_and_finiteness(name, dtype, n, seed, spread):
    energy = build(name)
    x = reasonable_points(name, n, seed, spread, dtype)
    out, grad = energy.log_prob(x), energy.grad_log_prob(x)
    assert out.shape == (n,) and out.dtype == dtype
    assert grad.shape == (n, energy.dim) and grad.dtype == dtype
    assert torch.isfinite(out).all() and torch.isfinite(grad).all()


@names
@dtypes
@given(**points)
def test_batch_equals_row_by_row(name, dtype, n, seed, spread):
    energy = build(name)
    x = reasonable_points(name, n, seed, spread, dtype)
    rows = torch.cat([energy.log_prob(x[i : i + 1]) for i in range(n)])
    torch.testing.assert_close(energy.log_prob(x), rows, **TOLERANCE[dtype])
    grad_rows = torch.cat([energy.grad_log_prob(x[i : i + 1]) for i in range(n)])
    torch.testing.assert_close(energy.grad_log_prob(x), grad_rows, **TOLERANCE[dtype])


@names
@given(**points)
def test_float32_agrees_with_float64(name, n, seed, spread):
    energy = build(name)
    x = reasonable_points(name, n, seed, spread, torch.float64)
    lp64, lp32 = energy.log_prob(x), energy.log_prob(x.float())
    torch.testing.assert_close(lp32.double(), lp64, rtol=1e-5, atol=1e-3)


@names
@given(**points)
def test_closed_form_score_equals_autograd(name, n, seed, spread):
    energy = build(name)
    x = reasonable_points(name, n, seed, spread, torch.float64)
    expected = Energy._grad_log_prob(energy, x)
    torch.testing.assert_close(energy.grad_log_prob(x), expected, rtol=1e-9, atol=1e-9)


@names
def test_pickle_and_deepcopy_round_trip(name):
    energy = build(name)
    x = reasonable_points(name, 4, 0, 1.0, torch.float64)
    for clone in (pickle.loads(pickle.dumps(energy)), copy.deepcopy(energy)):
        assert type(clone) is type(energy) and clone.dim == energy.dim
        torch.testing.assert_close(clone.log_prob(x), energy.log_prob(x), rtol=0, atol=0)
        assert clone.log_normalizer == energy.log_normalizer


@names
def test_buffers_follow_module_to(name):
    energy = copy.deepcopy(build(name)).to(torch.float32)
    x = reasonable_points(name, 3, 0, 1.0, torch.float64)
    assert energy.log_prob(x).dtype == torch.float64  # the input's dtype, not the buffers'
    if energy.can_sample:
        assert energy.sample(2).dtype == torch.float32


@names
def test_log_normalizer_type(name):
    log_z = build(name).log_normalizer
    assert log_z is None or (isinstance(log_z, float) and np.isfinite(log_z))


def _stein_z_scores(energy: Energy, x: torch.Tensor) -> torch.Tensor:
    """z-scores of Stein's identities E[d_i log p] = 0 and E[x_i d_i log p] = -1 under p."""
    score = energy.grad_log_prob(x)
    stats = torch.cat([score, x * score + 1.0], dim=1)  # both have mean zero under p
    return stats.mean(0) / (stats.std(0) / x.shape[0] ** 0.5)


SAMPLEABLE = sorted(name for name in CASES if build(name).can_sample)


@pytest.mark.parametrize("name", SAMPLEABLE)
@pytest.mark.parametrize("broken", [False, True], ids=["exact", "shifted-twin"])
def test_exact_samples_satisfy_stein_identities(name, broken, global_random_seed):
    energy = build(name)
    x = energy.sample(20_000, generator=torch.Generator().manual_seed(global_random_seed))
    assert x.shape == (20_000, energy.dim) and torch.isfinite(energy.log_prob(x)).all()
    if broken:
        x = x + 0.5
    worst = _stein_z_scores(energy, x).abs().max()
    assert (worst > 6.0) == broken, f"max |z| = {worst:.2f}"


@pytest.mark.parametrize("name", SAMPLEABLE)
def test_sampling_is_deterministic_given_a_generator(name):
    energy = build(name)
    first = energy.sample(50, generator=torch.Generator().manual_seed(3))
    again = energy.sample(50, generator=torch.Generator().manual_seed(3))
    other = energy.sample(50, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert not torch.equal(first, other)


@pytest.mark.parametrize("name", SAMPLEABLE)
@pytest.mark.parametrize("n", [0, 1, 7])
def test_sample_returns_exactly_n(name, n):
    assert build(name).sample(n).shape == (n, build(name).dim)


@pytest.mark.parametrize("name", sorted(set(CASES) - set(SAMPLEABLE)))
def test_no_exact_sampler_raises(name):
    energy = build(name)
    with pytest.raises(NotImplementedError) as e:
        energy.sample(1)
    assert str(e.value) == f"{type(energy).__name__} has no exact sampler."
