"""A user's model that fails at some points never ends a fit: rows where it raises a
ValueError (or a failed Cholesky, an ArithmeticError) get zero density, with one warning
per call; a model that fails everywhere, or a programming error, still raises."""

import copy
import warnings

import numpy as np
import pytest
import torch

from skcds import ConsistentDistiller, DiffusionSampler, SelfConsistentSampler, refine
from skcds.energies import from_log_prob
from skcds.exceptions import EnergyError, ModelFailureWarning

from ..test_statistical import (
    MEAN,
    STD,
    BrokenSampler,
    assert_matches_gaussian,
    gaussian_log_prob,
)

TINY = {"n_steps": 8, "max_iter": 3, "batch_size": 32}
MESSAGE = "Expected value argument (Tensor of shape (32,)) to be within the support"


def raising_beyond(edge: float, log_prob=lambda x: -0.5 * (x**2).sum(-1)):
    """``log_prob``, raising as torch.distributions' validation does whenever a row of the
    batch has ``x_0 > edge`` (a point where the model's density is zero)."""

    def model(x):
        if bool((x[:, 0] > edge).any()):
            raise ValueError(MESSAGE)
        return log_prob(x)

    return model


def fit_recording(sampler, energy):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sampler.fit(energy)
    return [w for w in caught if issubclass(w.category, ModelFailureWarning)]


@pytest.fixture(scope="module")
def slab_fit():
    """N(MEAN, STD^2) whose model raises for x_0 > MEAN_0 + 2.5 STD_0 (0.6% of its mass)."""
    energy = from_log_prob(raising_beyond(MEAN[0] + 2.5 * STD[0], gaussian_log_prob), dim=2)
    sampler = DiffusionSampler(n_steps=32, max_iter=200, batch_size=256, random_state=0)
    return sampler, fit_recording(sampler, energy)


@pytest.mark.slow
def test_a_model_raising_on_a_slab_trains_to_the_target_and_warns_once(slab_fit):
    sampler, caught = slab_fit
    assert sampler.n_iter_ == 200
    assert len(caught) == 1
    message = str(caught[0].message)
    assert message.startswith("DiffusionSampler.fit: the model raised at ")
    assert f"ValueError: {MESSAGE}" in message
    with pytest.warns(ModelFailureWarning):  # some draws end in the slab: zero weight
        x, log_w = sampler.sample(4000, random_state=0, return_log_weights=True)
    assert_matches_gaussian(x)  # the truncation moves the mean by 0.009 only
    kept = np.isfinite(log_w)
    assert kept.mean() > 0.98
    w = np.exp(log_w[kept] - log_w[kept].max())
    np.testing.assert_allclose(w @ x[kept] / w.sum(), MEAN, atol=0.15)


@pytest.mark.slow
def test_the_slab_test_rejects_a_broken_sampler(slab_fit):
    broken = copy.copy(slab_fit[0])
    broken.__class__ = BrokenSampler
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModelFailureWarning)
        x = broken.sample(4000, random_state=0)
    with pytest.raises(AssertionError):
        assert_matches_gaussian(x)


@pytest.mark.parametrize("cls", [DiffusionSampler, SelfConsistentSampler])
def test_draws_that_end_where_the_model_raises_get_zero_weight(cls):
    energy = from_log_prob(raising_beyond(0.5), dim=2)
    with pytest.warns(ModelFailureWarning, match="raised at"):
        sampler = cls(**TINY, random_state=0).fit(energy)
    with pytest.warns(ModelFailureWarning, match=rf"{cls.__name__}\.sample: the model raised"):
        x, log_w = sampler.sample(400, n_steps=1, random_state=0, return_log_weights=True)
    beyond = x[:, 0] > 0.5
    assert 0 < beyond.sum() < len(x)  # an untrained sampler: both sides
    assert (log_w[beyond] == -np.inf).all() and np.isfinite(log_w[~beyond]).all()


def test_the_distiller_warns_once_for_its_teacher_and_itself():
    energy = from_log_prob(raising_beyond(0.5), dim=2)
    teacher = DiffusionSampler(**TINY, random_state=0)
    distiller = ConsistentDistiller(teacher, n_intervals=2, max_iter=2, batch_size=32)
    caught = fit_recording(distiller, energy)
    assert [str(w.message).split(":")[0] for w in caught] == ["ConsistentDistiller.fit"]


def test_a_model_raising_everywhere_gets_an_error_with_its_own_message():
    def model(x):
        raise RuntimeError("linalg.cholesky: The factorization could not be completed")

    energy = from_log_prob(model, dim=2)
    with pytest.raises(EnergyError, match=r"raised RuntimeError at all 16 probe.*cholesky") as info:
        DiffusionSampler(**TINY).fit(energy)
    assert isinstance(info.value.__cause__, RuntimeError)


def test_a_type_error_in_the_model_raises_at_once():
    calls = []

    def model(x):
        calls.append(len(x))
        return -0.5 * (x**2).sum(-1) + None

    with pytest.raises(TypeError, match="unsupported operand"):
        DiffusionSampler(**TINY).fit(from_log_prob(model, dim=2))
    assert calls == [16]  # the probe batch, once: never bisected


def test_a_model_that_starts_raising_mid_training_keeps_training():
    state = {"calls": 0}

    def model(x):
        state["calls"] += 1
        if state["calls"] > 20 and bool((x[:, 1] > 1.0).any()):
            raise ArithmeticError("log of a rounded zero")
        return -0.5 * (x**2).sum(-1)

    sampler = DiffusionSampler(n_steps=8, max_iter=10, batch_size=64, random_state=0)
    caught = fit_recording(sampler, from_log_prob(model, dim=2))
    assert sampler.n_iter_ == 10 and len(caught) == 1
    assert "ArithmeticError: log of a rounded zero" in str(caught[0].message)
    assert all(torch.isfinite(p).all() for p in sampler.control_.parameters())


def test_mcmc_moves_reject_points_where_the_model_raises():
    start = np.random.default_rng(0).standard_normal((2000, 2))
    start[:, 0] = -np.abs(start[:, 0])  # all where the model does not raise
    energy = from_log_prob(raising_beyond(0.5), dim=2)
    with pytest.warns(ModelFailureWarning, match=r"^skcds\.refine: the model raised"):
        moved = refine(energy, start, 30, random_state=0)
    assert (moved[:, 0] <= 0.5).all()
    assert (moved[:, 0] > 0).mean() > 0.1  # the chains did move into (0, 0.5]
    # the same test on the model without the slab (a broken twin) fails: MALA goes past 0.5
    free = refine(from_log_prob(lambda x: -0.5 * (x**2).sum(-1), dim=2), start, 30, random_state=0)
    assert (free[:, 0] > 0.5).mean() > 0.1


def test_sample_with_mcmc_steps_warns_once():
    energy = from_log_prob(raising_beyond(0.5), dim=2)
    with pytest.warns(ModelFailureWarning):
        sampler = DiffusionSampler(**TINY, random_state=0).fit(energy)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sampler.sample(300, mcmc_steps=3, random_state=0)
    failures = [w for w in caught if issubclass(w.category, ModelFailureWarning)]
    assert len(failures) == 1
