"""The Energy base class and the user wrappers from_log_prob / from_energy."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from skcds.energies import Energy, from_energy, from_log_prob
from skcds.exceptions import EnergyError

F64 = torch.float64


def torch_log_prob(x: torch.Tensor) -> torch.Tensor:
    return torch.sin(x).sum(-1) - 0.25 * (x**4).sum(-1)


def numpy_log_prob(x: np.ndarray) -> np.ndarray:
    return np.sin(x).sum(-1) - 0.25 * (x**4).sum(-1)


def analytic_score(x: torch.Tensor) -> torch.Tensor:
    return torch.cos(x) - x**3


def points(n: int = 6, dim: int = 3, dtype=F64) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(0), dtype=dtype)


def test_sign_convention_of_the_two_wrappers():
    x = points()
    expected = torch_log_prob(x)
    torch.testing.assert_close(from_log_prob(torch_log_prob, dim=3).log_prob(x), expected)
    energy = from_energy(lambda x: -torch_log_prob(x), dim=3)
    torch.testing.assert_close(energy.log_prob(x), expected)
    torch.testing.assert_close(energy.energy(x), -expected)


def test_torch_backend_gradient_is_autograd():
    x = points()
    grad = from_log_prob(torch_log_prob, dim=3).grad_log_prob(x)
    torch.testing.assert_close(grad, analytic_score(x))


@pytest.mark.parametrize("wrap, sign", [(from_log_prob, 1.0), (from_energy, -1.0)])
def test_numpy_backend_value_and_finite_difference_gradient(wrap, sign):
    energy = wrap(lambda a: sign * numpy_log_prob(a), dim=3, backend="numpy")
    x = points()
    torch.testing.assert_close(energy.log_prob(x), torch_log_prob(x))
    torch.testing.assert_close(energy.grad_log_prob(x), analytic_score(x), rtol=1e-6, atol=1e-6)
    # the autograd path goes through the same finite differences
    autograd = Energy._grad_log_prob(energy, x)
    torch.testing.assert_close(autograd, analytic_score(x), rtol=1e-6, atol=1e-6)


def test_numpy_backend_keeps_the_input_dtype():
    energy = from_log_prob(numpy_log_prob, dim=3, backend="numpy")
    x = points(dtype=torch.float32)
    assert energy.log_prob(x).dtype == torch.float32
    assert energy.grad_log_prob(x).dtype == torch.float32


def test_wrappers_have_no_sampler_and_no_normalizer():
    energy = from_log_prob(torch_log_prob, dim=3)
    assert not energy.can_sample and energy.log_normalizer is None
    with pytest.raises(NotImplementedError) as e:
        energy.sample(3)
    assert str(e.value) == "_CallableLogProb has no exact sampler."


def test_module_level_function_pickles():
    energy = pickle.loads(pickle.dumps(from_log_prob(torch_log_prob, dim=3)))
    torch.testing.assert_close(energy.log_prob(points()), torch_log_prob(points()))


def test_minus_infinity_is_allowed():
    energy = from_log_prob(lambda x: torch.where(x[:, 0] > 0, 0.0, -torch.inf), dim=1)
    out = energy.log_prob(torch.tensor([[1.0], [-1.0]]))
    assert out.tolist() == [0.0, -float("inf")]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: from_log_prob("not a function", dim=2),
            TypeError,
            "'fn' must be callable; got str.",
        ),
        (
            lambda: from_log_prob(torch_log_prob, dim=0),
            ValueError,
            "'dim' must be a positive int; got 0.",
        ),
        (
            lambda: from_energy(torch_log_prob, dim=2, backend="jax"),
            ValueError,
            "'backend' must be one of ['numpy', 'torch']; got 'jax'.",
        ),
        (
            lambda: from_log_prob(lambda x: np.zeros(len(x)), dim=2).log_prob(torch.zeros(1, 2)),
            EnergyError,
            "the wrapped function must return a torch.Tensor; got ndarray. For a numpy "
            "function pass backend='numpy'.",
        ),
        (
            lambda: from_log_prob(lambda x: x, dim=2).log_prob(torch.zeros(3, 2)),
            EnergyError,
            "_CallableLogProb.log_prob must return a tensor of shape (3,) for an input of "
            "shape (3, 2); got (3, 2).",
        ),
        (
            lambda: from_log_prob(lambda x: x, dim=2, backend="numpy").log_prob(torch.zeros(3, 2)),
            EnergyError,
            "the wrapped numpy function must return an array of shape (3,) for an input of "
            "shape (3, 2); got (3, 2).",
        ),
        (
            lambda: from_log_prob(lambda x: x.sum(1) / 0, dim=2).log_prob(torch.zeros(3, 2)),
            EnergyError,
            "_CallableLogProb.log_prob returned 3 non-finite value(s) (NaN or +inf) for 3 "
            "input(s); -inf (zero density) is allowed, NaN and +inf are not.",
        ),
        (
            lambda: from_log_prob(torch_log_prob, dim=2).log_prob(np.zeros((3, 2))),
            TypeError,
            "'x' must be a torch.Tensor of shape (n, 2); got ndarray.",
        ),
        (
            lambda: from_log_prob(torch_log_prob, dim=2).log_prob(torch.zeros(3, 2).long()),
            TypeError,
            "'x' must be a floating-point tensor; got dtype torch.int64.",
        ),
        (
            lambda: from_log_prob(torch_log_prob, dim=2).grad_log_prob(torch.zeros(3)),
            ValueError,
            "'x' must be of shape (n, 2); got shape (3,).",
        ),
    ],
)
def test_error_messages(call, error, message):
    with pytest.raises(error) as e:
        call()
    assert str(e.value) == message


class _Sampleable(Energy):
    dim = 1

    def _log_prob(self, x):
        return -0.5 * x[:, 0] ** 2

    def _sample(self, n, generator):
        return torch.randn(n, 1, generator=generator)


@pytest.mark.parametrize("n", [-1, 2.0, "3"])
def test_sample_rejects_a_bad_n(n):
    with pytest.raises(ValueError) as e:
        _Sampleable().sample(n)
    assert str(e.value) == f"'n' must be a non-negative int; got {n!r}."


def test_sample_accepts_numpy_integers():
    assert _Sampleable().can_sample
    assert _Sampleable().sample(np.int64(4)).shape == (4, 1)


# ---------------------------------------------------------------- scikit-learn parameters
def test_energy_params_are_the_constructor_arguments_and_rebuild_it():
    from sklearn.base import clone

    from skcds.energies import Funnel, GaussianMixture, ManyWell

    assert Funnel(dim=4).get_params() == {"dim": 4, "scale": 3.0}
    assert ManyWell.mw54().get_params() == {"dim": 5, "n_double_wells": 5, "separation": 4.0}
    mixture = GaussianMixture.grid()
    twin = clone(mixture)
    assert twin is not mixture
    x = torch.randn(7, 2, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(twin.log_prob(x), mixture.log_prob(x))


def test_set_params_rebuilds_and_unknown_names_are_refused():
    from skcds.energies import Funnel

    funnel = Funnel()
    assert funnel.set_params(dim=3) is funnel and funnel.dim == 3
    assert funnel.log_prob(torch.zeros(2, 3)).shape == (2,)
    with pytest.raises(ValueError, match=r"Invalid parameter\(s\) \['dimension'\] for Funnel"):
        funnel.set_params(dimension=3)


def test_energy_parameters_nest_in_a_sampler():
    from sklearn.base import clone

    from skcds import DiffusionSampler
    from skcds.energies import Funnel

    sampler = DiffusionSampler(Funnel(dim=3))
    assert sampler.get_params()["energy__dim"] == 3
    sampler.set_params(energy__dim=6)
    assert sampler.energy.dim == 6 and clone(sampler).energy.dim == 6
