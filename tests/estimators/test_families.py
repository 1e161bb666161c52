"""Samplers of a family of densities (issue 28): one network for every context of a
:class:`~skcds.energies.ConditionalEnergy`. Draws at a context against that member (with a
broken twin that ignores the context), a constant context against the unconditional
sampler, unconditional samplers bitwise as before, errors, persistence and the API."""

import copy
import io
import math
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch

import skcds
from skcds import ConsistentDistiller, DiffusionSampler, SelfConsistentSampler
from skcds.energies import (
    BayesianLinearRegression,
    Box,
    FiniteSet,
    GaussianMixture,
    TemperedManyWell,
    from_log_prob,
)
from skcds.metrics import wasserstein

SHIFTS = (-1.5, 0.0, 1.5)
LOG_2PI = math.log(2 * math.pi)
TINY = {"n_steps": 16, "batch_size": 64, "random_state": 0, "early_stopping": False}


def shifted_normal(x, c):
    """``N(c (1, 1), I)``, normalised (``log Z(c) = 0``): the family of the tests
    (module-level: it pickles)."""
    return -0.5 * ((x - c) ** 2).sum(-1) - LOG_2PI


FAMILY = from_log_prob(shifted_normal, dim=2, context=Box(-2.0, 2.0))


@pytest.fixture(scope="module")
def scds():
    return SelfConsistentSampler(**TINY, max_iter=120).fit(FAMILY)


@pytest.fixture(scope="module")
def dis():
    return DiffusionSampler(**TINY, max_iter=120).fit(FAMILY)


def assert_matches_member(x: np.ndarray, c: float) -> None:
    """Draws ``x`` of ``N(c 1, I)``: means within 0.35, sds in [0.7, 1.4] (coarse: tiny fits)."""
    assert np.all(np.abs(x.mean(0) - c) < 0.35), (c, x.mean(0))
    assert np.all((x.std(0) > 0.7) & (x.std(0) < 1.4)), (c, x.std(0))


class ContextBlind(SelfConsistentSampler):
    """Deliberately broken: its networks always see the middle of the domain."""

    def _conditioned(self, contexts):
        middle = None if contexts is None else torch.zeros_like(contexts)
        return super()._conditioned(middle)


@pytest.mark.parametrize("c", SHIFTS)
def test_one_step_draws_match_the_member_at_each_context(scds, c):
    assert_matches_member(scds.sample(4000, context=c, random_state=0), c)


def test_a_sampler_that_ignores_the_context_is_rejected(scds):
    blind = copy.copy(scds)
    blind.__class__ = ContextBlind
    assert_matches_member(blind.sample(4000, context=0.0, random_state=0), 0.0)  # the middle
    for c in (-1.5, 1.5):
        with pytest.raises(AssertionError):
            assert_matches_member(blind.sample(4000, context=c, random_state=0), c)


@pytest.mark.parametrize("c", SHIFTS)
def tilted_normal(x, c):
    """``N(c 1, I)`` with ``log Z(c) = 5 c + log 2 pi``: 20 nats across the domain."""
    return -0.5 * ((x - c) ** 2).sum(-1) + 5.0 * c[:, 0]


class ContextsMixed(SelfConsistentSampler):
    """Deliberately broken: one context per trajectory, and losses that compare weights
    across contexts (the whole batch as one group)."""

    @property
    def _context_groups(self):
        return None

    def _training_contexts(self):
        return self._domain_contexts(self._local_batch, self._generator, sharded=True)


@pytest.mark.parametrize("cls, broken", [(SelfConsistentSampler, False), (ContextsMixed, True)])
def test_the_losses_compare_weights_within_a_context(cls, broken):
    family = from_log_prob(tilted_normal, dim=2, context=Box(-2.0, 2.0))
    sampler = cls(**TINY, max_iter=120).fit(family)
    draws = [sampler.sample(4000, context=c, random_state=0) for c in (-1.5, 1.5)]
    if not broken:
        for c, x in zip((-1.5, 1.5), draws, strict=True):
            assert_matches_member(x, c)
        return
    with pytest.raises(AssertionError):
        for c, x in zip((-1.5, 1.5), draws, strict=True):
            assert_matches_member(x, c)


@pytest.mark.parametrize("c", SHIFTS)
def test_the_diffusion_sampler_draws_match_the_member(dis, c):
    assert_matches_member(dis.sample(4000, context=c, random_state=0), c)


def test_one_context_per_row(scds):
    c = np.linspace(-2.0, 2.0, 4000)
    x = scds.sample(4000, context=c[:, None], random_state=0)
    slope = np.polyfit(c, x[:, 0], 1)[0]  # x = c + noise: slope 1
    assert abs(slope - 1.0) < 0.15, slope


def test_log_z_at_each_context_and_the_curve(scds):
    for c in SHIFTS:
        estimate = scds.estimate_log_normalizer(4000, context=c, random_state=0)
        assert abs(estimate.log_z) < 0.1, (c, estimate)
    curve = scds.log_normalizer_curve(SHIFTS, n_samples=2000)
    assert curve.contexts.shape == (3, 1) and curve.log_z.shape == (3,)
    assert np.all(np.abs(curve.log_z) < 0.1), curve
    assert np.all(curve.elbo <= curve.log_z + 1e-9) and np.all(curve.stderr > 0)
    again = scds.log_normalizer_curve(np.array(SHIFTS)[:, None], n_samples=2000)
    np.testing.assert_array_equal(curve.log_z, again.log_z)


def test_score_averages_the_elbo_over_the_domain(scds):
    score = scds.score()
    assert score == scds.score() and -1.0 < score <= 0.05
    at_one = scds.score(context=1.0)
    assert at_one == scds.estimate_log_normalizer(4096, context=1.0, random_state=0).elbo


def test_a_constant_context_gives_the_unconditional_sampler_in_law():
    """The family over a one-point domain and the plain density of that member, fitted
    alike: their draws agree with each other as closely as with the truth."""
    member = 0.7
    family = from_log_prob(shifted_normal, dim=2, context=FiniteSet([member]))
    plain = from_log_prob(lambda x: shifted_normal(x, member), dim=2)
    conditional = SelfConsistentSampler(**TINY, max_iter=120).fit(family)
    unconditional = SelfConsistentSampler(**TINY, max_iter=120).fit(plain)
    a = conditional.sample(4000, context=member, random_state=0)
    b = unconditional.sample(4000, random_state=0)
    truth = FAMILY.at(member)
    exact = (member + torch.randn(4000, 2, generator=torch.Generator().manual_seed(3))).numpy()
    assert_matches_member(a, member), assert_matches_member(b, member)
    assert wasserstein(a, b) < 1.5 * max(wasserstein(a, exact), wasserstein(b, exact)) + 0.05
    assert truth.log_normalizer is None  # a user's family has no exact log Z


def test_the_distiller_learns_the_family(dis):
    student = ConsistentDistiller(dis, max_iter=120, batch_size=64, random_state=0).fit()
    for c in (-1.5, 1.5):
        assert_matches_member(student.sample(4000, context=c, random_state=0), c)


def test_unconditional_samplers_are_bitwise_those_of_before():
    """Against draws saved by the code before families existed
    (``tests/estimators/data/before_contexts.py``, commit 250e062)."""
    import importlib.util

    path = Path(__file__).parent / "data" / "before_contexts.py"
    spec = importlib.util.spec_from_file_location("before_contexts", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    saved = np.load(path.with_suffix(".npz"))
    now = module.draws()
    assert sorted(now) == sorted(saved.files)
    for name in saved.files:
        np.testing.assert_array_equal(now[name], saved[name], err_msg=name)


# ---------------------------------------------------------------- the API around a context
def test_imh_steps_and_mcmc_steps_at_a_context(scds):
    x = scds.sample(500, context=1.0, imh_steps=1, mcmc_steps=2, random_state=0)
    assert x.shape == (500, 2) and np.isfinite(x).all()
    with pytest.raises(ValueError, match="one context for all draws"):
        scds.sample(4, context=np.zeros((4, 1)) + [[0.0], [1.0], [0.5], [0.2]], mcmc_steps=1)


def test_diagnose_and_inference_data_at_a_context(scds):
    diagnosis = scds.diagnose(n_samples=500, context=1.0)
    assert diagnosis.steps[0].valid
    arviz = pytest.importorskip("arviz")
    data = scds.to_inference_data(200, context=1.0, random_state=0)
    posterior = arviz.extract(data) if hasattr(arviz, "extract") else data.posterior
    assert posterior["x"].size == 400


def test_persistence_keeps_the_family(scds, tmp_path):
    buffer = io.BytesIO()
    joblib.dump(scds, buffer)
    buffer.seek(0)
    loaded = joblib.load(buffer)
    np.testing.assert_array_equal(
        loaded.sample(50, context=1.0, random_state=3), scds.sample(50, context=1.0, random_state=3)
    )
    assert loaded.flow_.context is None and loaded.control_.context is None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, "'context' is required"),
        ({"context": 3.0}, r"box \[\[-2.\], \[2.\]\]"),
        ({"context": [[0.0, 1.0]]}, "or one per row"),
        ({"context": np.zeros((3, 1))}, r"\(5, 1\)"),
        ({"context": np.nan}, "finite"),
    ],
)
def test_bad_contexts_get_clear_errors(scds, kwargs, match):
    with pytest.raises(ValueError, match=match):
        scds.sample(5, **kwargs)


def test_errors_of_the_family_api(scds):
    with pytest.raises(ValueError, match="takes one context"):
        scds.estimate_log_normalizer(10, context=np.array([[0.0], [1.0]]))
    with pytest.raises(ValueError, match="'context' is required"):
        scds.estimate_log_normalizer(10)
    plain = DiffusionSampler(n_steps=4, max_iter=2, batch_size=8, random_state=0)
    plain.fit(GaussianMixture.grid())
    with pytest.raises(ValueError, match="without context, so pass context=None"):
        plain.sample(3, context=1.0)
    with pytest.raises(ValueError, match="needs a sampler fitted on a ConditionalEnergy"):
        plain.log_normalizer_curve([1.0])


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: SelfConsistentSampler(student="jump"), "student='flow' only"),
        (lambda: DiffusionSampler(precondition="laplace"), "precondition='auto' or 'none'"),
    ],
)
def test_configurations_that_cannot_learn_a_family(make, match):
    with pytest.raises(ValueError, match=match):
        make().set_params(max_iter=1, batch_size=8, n_steps=4).fit(FAMILY)


def test_the_distiller_needs_a_teacher_of_the_family(dis):
    plain = DiffusionSampler(n_steps=4, max_iter=2, batch_size=8, random_state=0)
    plain.fit(from_log_prob(lambda x: shifted_normal(x, 0.0), dim=2))
    with pytest.raises(ValueError, match="teacher was fitted on 0"):
        ConsistentDistiller(plain, max_iter=1, batch_size=8).fit(FAMILY)
    with pytest.raises(ValueError, match="student='flow' only"):
        options = {"student": "consistency", "n_intervals": 4, "max_iter": 1, "batch_size": 8}
        ConsistentDistiller(dis, **options).fit()


def test_a_warm_start_keeps_the_context_dimension(dis):
    warm = copy.deepcopy(dis).set_params(warm_start=True, max_iter=1)
    with pytest.raises(ValueError, match="contexts of dimension 1"):
        warm.fit(from_log_prob(lambda x: shifted_normal(x, 0.0), dim=2))
    warm.fit(FAMILY)  # the same family continues
    assert warm.n_iter_ == dis.n_iter_ + 1


@pytest.mark.parametrize("family", [TemperedManyWell.mw54(), BayesianLinearRegression()])
def test_built_in_families_persist_with_skcds_save(family, tmp_path):
    sampler = SelfConsistentSampler(n_steps=8, max_iter=5, batch_size=16, random_state=0)
    sampler.fit(family)
    skcds.save(sampler, tmp_path / "model.skcds")
    loaded = skcds.load(tmp_path / "model.skcds")  # no energy= needed: built in
    c = float(family.context.low[0] + family.context.high[0]) / 2
    np.testing.assert_array_equal(
        loaded.sample(10, context=c, random_state=0), sampler.sample(10, context=c, random_state=0)
    )


def test_the_family_api_before_fit_is_not_fitted():
    from sklearn.exceptions import NotFittedError

    for call in (
        lambda s: s.sample(3, context=1.0),
        lambda s: s.estimate_log_normalizer(3, context=1.0),
        lambda s: s.log_normalizer_curve([1.0]),
    ):
        with pytest.raises(NotFittedError):
            call(SelfConsistentSampler())


def test_resuming_a_family_from_a_checkpoint_is_the_uninterrupted_run(tmp_path):
    from skcds.callbacks import Checkpoint

    family, path = TemperedManyWell.mw54(), tmp_path / "checkpoint.skcds"
    options = {"n_steps": 8, "batch_size": 32, "random_state": 0, "early_stopping": False}
    full = SelfConsistentSampler(**options, max_iter=5, callbacks=[Checkpoint(path, every=3)])
    full.fit(family)
    resumed = skcds.load(path)  # after iteration 3, then never again
    assert resumed.n_iter_ == 3
    resumed.set_params(warm_start=True, max_iter=2).fit(family)
    for a, b in zip(resumed.flow_.parameters(), full.flow_.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    np.testing.assert_array_equal(
        resumed.sample(32, context=0.5, random_state=1),
        full.sample(32, context=0.5, random_state=1),
    )
