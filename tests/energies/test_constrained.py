"""Constrained: a model on constrained parameters, sampled in unconstrained coordinates."""

from __future__ import annotations

import math
import pickle

import joblib
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.distributions import (
    AffineTransform,
    Beta,
    Dirichlet,
    Gamma,
    Normal,
    TransformedDistribution,
    biject_to,
    constraints,
    transform_to,
)

from skcds.energies import Constrained, ordered
from skcds.energies._constrained import OrderedTransform
from skcds.exceptions import EnergyError

F64 = dict(dtype=torch.float64)


def _t(*values):
    return torch.tensor(values[0] if len(values) == 1 else values, **F64)


# float64 parameters: Gamma, Beta and Dirichlet cast the value to their parameters' dtype
GAMMA = Gamma(_t(2.0), _t(3.0))
BETA = Beta(_t(2.0), _t(5.0))
DIRICHLET = Dirichlet(_t(1.5, 2.0, 3.0, 0.7))


def _sorted_normals_log_prob(x: torch.Tensor) -> torch.Tensor:
    """Density of the order statistics of K iid N(0, 1): K! prod phi(x_k) on x_0 < ... < x_K."""
    k = x.shape[-1]
    return Normal(_t(0.0), _t(1.0)).log_prob(x).sum(-1) + math.lgamma(k + 1)


# name -> (support, log-density of the constrained value, the same distribution in torch)
CASES = {
    "real": (constraints.real, Normal(_t(0.5), _t(2.0)).log_prob, Normal(_t(0.5), _t(2.0))),
    "positive": (constraints.positive, GAMMA.log_prob, GAMMA),
    "nonnegative": (constraints.nonnegative, GAMMA.log_prob, GAMMA),
    "greater_than": (
        constraints.greater_than(2.0),
        TransformedDistribution(GAMMA, AffineTransform(2.0, 1.0)).log_prob,
        TransformedDistribution(GAMMA, AffineTransform(2.0, 1.0)),
    ),
    "greater_than_eq": (
        constraints.greater_than_eq(-1.0),
        TransformedDistribution(GAMMA, AffineTransform(-1.0, 1.0)).log_prob,
        TransformedDistribution(GAMMA, AffineTransform(-1.0, 1.0)),
    ),
    "less_than": (
        constraints.less_than(-1.0),
        TransformedDistribution(GAMMA, AffineTransform(-1.0, -1.0)).log_prob,
        TransformedDistribution(GAMMA, AffineTransform(-1.0, -1.0)),
    ),
    "interval": (
        constraints.interval(-1.0, 3.0),
        TransformedDistribution(BETA, AffineTransform(-1.0, 4.0)).log_prob,
        TransformedDistribution(BETA, AffineTransform(-1.0, 4.0)),
    ),
    "unit_interval": (constraints.unit_interval, BETA.log_prob, BETA),
    "half_open_interval": (constraints.half_open_interval(0.0, 1.0), BETA.log_prob, BETA),
}
VECTOR_CASES = {
    "simplex": ((4, constraints.simplex), DIRICHLET.log_prob, DIRICHLET),
    "real_vector": (
        (3, constraints.real_vector),
        lambda x: Normal(_t(0.0), _t(1.5)).log_prob(x).sum(-1),
        None,
    ),
    "ordered": ((3, ordered), _sorted_normals_log_prob, None),
}


def _energy(name: str) -> Constrained:
    support, log_prob, _ = {**CASES, **VECTOR_CASES}[name]
    return Constrained(lambda p: log_prob(p["theta"]), {"theta": support})


def _z(dim: int, n: int = 7, seed: int = 0, spread: float = 1.5, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return spread * torch.randn(n, dim, generator=g, dtype=torch.float64).to(dtype)


def _everything_log_prob(params: dict) -> torch.Tensor:
    """A module-level (picklable) model with one parameter of each supported kind."""
    total = Normal(_t(0.0), _t(1.0)).log_prob(params["beta"]).sum(-1)
    total = total + GAMMA.log_prob(params["sigma"]) + BETA.log_prob(params["p"])
    total = total + DIRICHLET.log_prob(params["w"]) + _sorted_normals_log_prob(params["cuts"])
    return total + Normal(_t(0.0), _t(1.0)).log_prob(params["m"]).sum((-1, -2))


EVERYTHING = {
    "beta": (2, constraints.real),
    "sigma": constraints.positive,
    "p": constraints.unit_interval,
    "w": (4, constraints.simplex),
    "cuts": (3, ordered),
    "m": ((2, 2), constraints.interval(-2.0, 5.0)),
    "shift": constraints.greater_than(5.0),
    "top": constraints.less_than(-4.0),
}


def _everything() -> Constrained:
    return Constrained(_everything_log_prob, EVERYTHING)


# ---------------------------------------------------------------- density


@pytest.mark.parametrize("name", sorted(CASES))
def test_scalar_density_is_torchs_transformed_distribution(name):
    support, _, distribution = CASES[name]
    energy = _energy(name)
    z = _z(1)
    expected = TransformedDistribution(distribution, [biject_to(support).inv]).log_prob(z[:, 0])
    torch.testing.assert_close(energy.log_prob(z), expected)


def test_simplex_density_is_torchs_transformed_dirichlet():
    energy = _energy("simplex")
    assert energy.dim == 3 and energy.model_dim == 4
    z = _z(3)
    expected = TransformedDistribution(DIRICHLET, [biject_to(constraints.simplex).inv])
    torch.testing.assert_close(energy.log_prob(z), expected.log_prob(z))


def test_ordered_density_in_two_dimensions_by_hand():
    # x = (z0, z0 + exp(z1)): |det dx/dz| = exp(z1)
    energy = _energy("ordered")
    energy2 = Constrained(lambda p: _sorted_normals_log_prob(p["x"]), {"x": (2, ordered)})
    z = _z(2)
    x = torch.stack([z[:, 0], z[:, 0] + z[:, 1].exp()], dim=1)
    expected = math.log(2) + Normal(_t(0.0), _t(1.0)).log_prob(x).sum(-1) + z[:, 1]
    torch.testing.assert_close(energy2.log_prob(z), expected)
    assert energy.dim == energy.model_dim == 3


def _reduced(energy: Constrained, z: torch.Tensor) -> torch.Tensor:
    """The model-space point without each simplex's last (dependent) component."""
    parts = energy.unflatten(energy.transform(z))
    keep = []
    for name, value in parts.items():
        if type(energy.param_constraints[name]) is type(constraints.simplex):
            value = value[..., :-1]
        keep.append(value.reshape(z.shape[0], -1))
    return torch.cat(keep, dim=-1)


def test_log_det_is_the_autograd_jacobian_of_every_map():
    """The density of a flat model is the log |det| of the map z -> x, here by autograd."""
    energy = Constrained(lambda p: torch.zeros(p["sigma"].shape[0], **F64), EVERYTHING)
    z = _z(energy.dim, n=3)
    for row in z:
        jacobian = torch.autograd.functional.jacobian(lambda v: _reduced(energy, v[None])[0], row)
        assert jacobian.shape == (energy.dim, energy.dim)
        expected = torch.linalg.slogdet(jacobian).logabsdet
        torch.testing.assert_close(energy.log_prob(row[None])[0], expected)


def _trapezoid(values: torch.Tensor, step: float) -> float:
    return float(torch.trapezoid(values, dx=step))


@pytest.mark.parametrize("name", sorted(CASES))
def test_normalised_model_integrates_to_one_in_1d(name):
    # the Gamma cases: x - a = exp(z) with exp(8) far in the tail; the others: both tails
    upper = 30.0 if name == "real" or "interval" in name else 8.0
    grid = torch.linspace(-30, upper, 6001, **F64)
    density = _energy(name).log_prob(grid[:, None]).exp()
    assert _trapezoid(density, float(grid[1] - grid[0])) == pytest.approx(1.0, abs=1e-8)


@pytest.mark.parametrize(
    "name, lower, upper",
    [("simplex", (-30, -30), (30, 30)), ("ordered", (-12, -30), (12, 4))],
)
def test_normalised_model_integrates_to_one_in_2d(name, lower, upper):
    if name == "simplex":
        dirichlet = Dirichlet(_t(2.0, 3.0, 4.0))
        energy = Constrained(lambda p: dirichlet.log_prob(p["w"]), {"w": (3, constraints.simplex)})
    else:
        energy = Constrained(lambda p: _sorted_normals_log_prob(p["x"]), {"x": (2, ordered)})
    a = torch.linspace(lower[0], upper[0], 801, **F64)
    b = torch.linspace(lower[1], upper[1], 801, **F64)
    grid = torch.cartesian_prod(a, b)
    density = energy.log_prob(grid).exp().reshape(801, 801)
    inner = torch.trapezoid(density, dx=float(b[1] - b[0]), dim=1)
    assert _trapezoid(inner, float(a[1] - a[0])) == pytest.approx(1.0, abs=1e-7)


# ---------------------------------------------------------------- maps


@given(seed=st.integers(0, 2**31 - 1), spread=st.floats(0.1, 3.0), n=st.integers(1, 6))
def test_transform_round_trip(seed, spread, n):
    energy = _everything()
    z = _z(energy.dim, n=n, seed=seed, spread=spread)
    x = energy.transform(z)
    assert x.shape == (n, energy.model_dim) and x.dtype == torch.float64
    torch.testing.assert_close(energy.inverse_transform(x), z, rtol=1e-7, atol=1e-7)


def test_reference_draws_round_trip_through_the_unconstrained_space():
    g = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    energy = Constrained(
        _everything_log_prob,
        {"sigma": constraints.positive, "w": (4, constraints.simplex), "cuts": (3, ordered)},
    )
    draws = energy.flatten(
        {
            "sigma": GAMMA.sample((50,)),
            "w": DIRICHLET.sample((50,)),
            "cuts": torch.randn(50, 3, generator=g, **F64).sort(-1).values,
        }
    )
    z = energy.inverse_transform(draws)
    assert z.shape == (50, energy.dim) and torch.isfinite(z).all()
    torch.testing.assert_close(energy.transform(z), draws)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_model_space_values_satisfy_their_constraints(dtype):
    energy = _everything()
    spread = 2.0 if dtype == torch.float32 else 5.0  # see the float32 test below
    x = energy.transform(_z(energy.dim, n=2000, spread=spread, dtype=dtype))
    assert x.dtype == dtype
    for name, value in energy.unflatten(x).items():
        assert bool(energy.param_constraints[name].check(value).all()), name


def test_ordered_constraint_and_its_registered_bijection():
    assert isinstance(ordered, constraints.Constraint) and ordered.event_dim == 1
    assert bool(ordered.check(_t(-1.0, 0.0, 2.0))) and not bool(ordered.check(_t(0.0, 0.0)))
    assert isinstance(biject_to(ordered), OrderedTransform)
    assert isinstance(transform_to(ordered), OrderedTransform)
    t = biject_to(ordered)
    z = _z(4)
    torch.testing.assert_close(t.inv(t(z)), z)
    assert t.domain is constraints.real_vector and t.codomain is ordered and t.bijective


def test_far_from_the_origin_in_float32_values_round_to_the_bound():
    """Documented, not clamped: float32 exp(-30) = 9.4e-14 is a valid positive value, but
    5 + exp(-30) rounds to 5 (greater_than(5) fails), and exp(z) = 0 below z ~ -104."""
    energy = _everything()
    z = torch.full((1, energy.dim), -30.0)
    params = energy.unflatten(energy.transform(z))
    assert params["sigma"].item() > 0
    assert params["shift"].item() == 5.0 and params["top"].item() == -4.0
    assert not bool(energy.param_constraints["shift"].check(params["shift"]).all())
    params64 = energy.unflatten(energy.transform(z.double()))
    for name, value in params64.items():
        assert bool(energy.param_constraints[name].check(value).all()), name
    assert _energy("positive").transform(torch.full((1, 1), -110.0)).item() == 0.0


def _validating_log_prob(params: dict) -> torch.Tensor:
    """A model whose torch distributions validate their arguments and values."""
    dtype = params["mu"].dtype
    data = torch.tensor([0.3, -1.2, 2.0], dtype=dtype)
    mu, sigma = params["mu"][:, None], params["sigma"][:, None]
    total = Normal(mu, sigma, validate_args=True).log_prob(data).sum(-1)
    total = total + Gamma(torch.tensor(2.0, dtype=dtype), 3.0, validate_args=True).log_prob(
        params["sigma"]
    )
    total = total + Beta(torch.tensor(2.0, dtype=dtype), 2.0, validate_args=True).log_prob(
        params["p"]
    )
    concentration = torch.tensor([2.0, 2.0, 2.0], dtype=dtype)
    return total + Dirichlet(concentration, validate_args=True).log_prob(params["w"])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("value", [-30.0, 30.0])
def test_validating_model_at_extreme_unconstrained_values(dtype, value):
    energy = Constrained(
        _validating_log_prob,
        {
            "mu": constraints.real,
            "sigma": constraints.positive,
            "p": constraints.unit_interval,
            "w": (3, constraints.simplex),
        },
    )
    z = torch.full((2, energy.dim), value, dtype=dtype)
    z[1] = torch.linspace(-value, value, energy.dim)
    out = energy.log_prob(z)  # no ValueError from the distributions' validation
    assert out.dtype == dtype and torch.isfinite(out).all()
    grad = energy.grad_log_prob(z)
    if dtype == torch.float32 and value < 0:
        # float32, sigma = exp(-30): the score wrt log(sigma), (x - mu)^2 / sigma^2 ~ 1e29, is
        # representable, but autograd goes through d/dsigma ~ 1 / sigma^3, which overflows
        grad = grad[:, [0, 2, 3, 4]]
    assert torch.isfinite(grad).all()


# ---------------------------------------------------------------- shapes and layout


def test_shapes_names_and_blocks():
    seen = {}

    def log_prob(params):
        seen.update({name: tuple(value.shape) for name, value in params.items()})
        return _everything_log_prob(params)

    energy = Constrained(log_prob, EVERYTHING)
    assert energy.dim == 2 + 1 + 1 + 3 + 3 + 4 + 1 + 1
    assert energy.model_dim == energy.dim + 1  # the simplex's dependent component
    assert energy.blocks == {
        "beta": 2, "sigma": 1, "p": 1, "w": 4, "cuts": 3, "m": 4, "shift": 1, "top": 1
    }  # fmt: skip
    assert energy.shapes["m"] == (2, 2) and energy.shapes["sigma"] == ()
    assert energy.param_names[:4] == ["beta[0]", "beta[1]", "sigma", "p"]
    assert energy.param_names[11:15] == ["m[0,0]", "m[0,1]", "m[1,0]", "m[1,1]"]
    assert len(energy.param_names) == energy.model_dim
    out = energy.log_prob(_z(energy.dim, n=5))
    assert out.shape == (5,)
    assert seen == {
        "beta": (5, 2), "sigma": (5,), "p": (5,), "w": (5, 4), "cuts": (5, 3),
        "m": (5, 2, 2), "shift": (5,), "top": (5,),
    }  # fmt: skip
    assert energy.transform(_z(energy.dim, n=0)).shape == (0, energy.model_dim)
    assert energy.inverse_transform(torch.zeros(0, energy.model_dim)).shape == (0, energy.dim)
    assert "model_dim=17" in repr(energy)


def test_unflatten_and_flatten_for_tensors_and_arrays():
    energy = _everything()
    x = energy.transform(_z(energy.dim, n=6))
    parts = energy.unflatten(x)
    assert parts["m"].shape == (6, 2, 2) and isinstance(parts["m"], torch.Tensor)
    torch.testing.assert_close(energy.flatten(parts), x)
    # (chains, draws, model_dim) numpy, as for an ArviZ export
    draws = x.numpy().reshape(2, 3, energy.model_dim)
    arrays = energy.unflatten(draws)
    assert isinstance(arrays["w"], np.ndarray) and arrays["w"].shape == (2, 3, 4)
    assert arrays["sigma"].shape == (2, 3)
    np.testing.assert_array_equal(energy.flatten(arrays), draws)
    point = energy.flatten({name: np.asarray(v[0]) for name, v in parts.items()})
    assert point.shape == (energy.model_dim,)


def test_inverse_transform_accepts_array_likes():
    energy = Constrained(_everything_log_prob, {"mu": constraints.real, "s": constraints.positive})
    z = energy.inverse_transform([[0.5, 2.0]])
    assert z.dtype == torch.float64
    torch.testing.assert_close(z, _t(0.5, math.log(2.0))[None])


# ---------------------------------------------------------------- errors


def _zero(params):
    return next(iter(params.values())).reshape(-1)[:0]


@pytest.mark.parametrize(
    "log_prob, supports, error, match",
    [
        (None, {"a": constraints.real}, TypeError, "'log_prob' must be a callable.*got NoneType"),
        (_zero, {}, ValueError, "'supports' must name at least one parameter"),
        (_zero, [("a", constraints.real)], TypeError, "'supports' must be a dict.*got list"),
        (_zero, {"a": constraints.positive_definite}, ValueError, "unsupported.*Supported:.*real"),
        (_zero, {"a": constraints.nonnegative_integer}, ValueError, "Supported:.*ordered"),
        (_zero, {"a": constraints.greater_than}, TypeError, "class _GreaterThan. Call it"),
        (_zero, {"a": "positive"}, TypeError, r"supports\['a'\].*got str"),
        (_zero, {"a": (0, constraints.real)}, ValueError, "positive int or a tuple.*got 0"),
        (_zero, {"a": ((2, -1), constraints.real)}, ValueError, r"got \(2, -1\)"),
        (_zero, {"a": (2.5, constraints.real)}, ValueError, "positive int.*got 2.5"),
        (_zero, {"a": (True, constraints.real)}, ValueError, "positive int.*got True"),
        (_zero, {"a": (constraints.real, 3)}, ValueError, r"\(shape, constraint\) pair"),
        (_zero, {"a": (1, constraints.simplex)}, ValueError, "at least 2 components.*size 1"),
        (_zero, {"a": constraints.simplex}, ValueError, "constraint on vectors; give its size"),
        (_zero, {"a": ordered}, ValueError, "constraint on vectors"),
        (_zero, {"a": constraints.interval(2.0, 1.0)}, ValueError, "lower_bound must be below"),
        (
            _zero,
            {"a": (2, constraints.greater_than(torch.zeros(2)))},
            ValueError,
            "lower_bound must be a finite real number.*per-element",
        ),
        (_zero, {"a": constraints.less_than(math.inf)}, ValueError, "finite real number"),
        (_zero, {1: constraints.real}, TypeError, "keys must be non-empty strings"),
        (
            _zero,
            {"a": (2, constraints.independent(constraints.simplex, 1))},
            ValueError,
            "around an element-wise constraint",
        ),
    ],
)
def test_invalid_arguments_are_refused_with_clear_messages(log_prob, supports, error, match):
    with pytest.raises(error, match=match):
        Constrained(log_prob, supports)


def test_wrong_inputs_and_outputs_are_refused():
    energy = Constrained(lambda p: p["a"].sum(-1, keepdim=True), {"a": (2, constraints.real)})
    with pytest.raises(EnergyError, match=r"must return a torch.Tensor of shape \(3,\).*\(3, 1\)"):
        energy.log_prob(torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"'z' must be of shape \(n, 2\)"):
        energy.transform(torch.zeros(3, 3))
    positive = _energy("positive")
    with pytest.raises(ValueError, match="'theta' must satisfy GreaterThan.*1 row.*first: \\[1\\]"):
        positive.inverse_transform(_t(1.0, -1.0)[:, None])
    with pytest.raises(ValueError, match="boundary.*row\\(s\\) \\[0\\]"):
        _energy("nonnegative").inverse_transform(torch.zeros(1, 1, **F64))
    with pytest.raises(ValueError, match=r"'x_model' must be of shape \(n, 4\)"):
        _energy("simplex").inverse_transform(torch.zeros(2, 3, **F64))
    with pytest.raises(ValueError, match="'params' must be a dict with keys"):
        positive.flatten({"other": torch.ones(2)})
    with pytest.raises(ValueError, match=r"'x_model' must be of shape \(\.\.\., 1\)"):
        positive.unflatten(np.zeros((2, 2)))


# ---------------------------------------------------------------- pickling, params, gradients


@pytest.mark.parametrize("dumps, loads", [(pickle.dumps, pickle.loads), ("joblib", "joblib")])
def test_pickle_round_trip(dumps, loads, tmp_path):
    energy = _everything()
    if dumps == "joblib":
        joblib.dump(energy, tmp_path / "energy.joblib")
        clone = joblib.load(tmp_path / "energy.joblib")
    else:
        clone = loads(dumps(energy))
    z = _z(energy.dim)
    torch.testing.assert_close(clone.log_prob(z), energy.log_prob(z), rtol=0, atol=0)
    torch.testing.assert_close(clone.transform(z), energy.transform(z), rtol=0, atol=0)
    assert clone.param_names == energy.param_names


def test_constraints_pickle():
    for support in [*(c for c, _, _ in CASES.values()), constraints.simplex, ordered]:
        clone = pickle.loads(pickle.dumps(support))
        assert type(clone) is type(support) and repr(clone) == repr(support)
        assert type(biject_to(clone)) is type(biject_to(support))


def test_get_and_set_params_rebuild_the_layout():
    energy = _everything()
    assert energy.get_params()["supports"] is EVERYTHING
    energy.set_params(supports={"sigma": constraints.positive})
    assert energy.dim == energy.model_dim == 1 and energy.param_names == ["sigma"]


def test_gradients_are_finite_and_match_finite_differences():
    energy = _everything()
    z = _z(energy.dim, n=4).requires_grad_(True)
    grad = energy.grad_log_prob(z.detach())
    assert torch.isfinite(grad).all()
    assert torch.autograd.gradcheck(lambda v: energy._log_prob(v), (z,))
