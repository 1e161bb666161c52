"""ConsistentDistiller: the boundary condition, an untouched teacher, one-step and multistep
sampling, exact one-step weights, validation and persistence, on tiny budgets."""

import copy
import io
import math
import warnings

import joblib
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from skcds import ConsistentDistiller, DiffusionSampler, SelfConsistentSampler
from skcds._core.networks import ConsistencyNet, ControlNet
from skcds.energies import GaussianMixture, from_log_prob
from skcds.exceptions import InvalidWeightsWarning

TEACHER = {"n_steps": 16, "max_iter": 30, "batch_size": 64}
STUDENT = {"student": "consistency", "n_intervals": 4, "max_iter": 20, "batch_size": 64}

MEAN = torch.tensor([0.3, -0.2], dtype=torch.float64)
COV = torch.tensor([[0.81, 0.3], [0.3, 1.21]], dtype=torch.float64)
GAUSSIAN = from_log_prob(
    lambda x: torch.distributions.MultivariateNormal(MEAN.to(x), COV.to(x)).log_prob(x), dim=2
)  # normalised: log Z = 0


@pytest.fixture(scope="module")
def teacher():
    return DiffusionSampler(**TEACHER, random_state=0).fit(GaussianMixture.grid())


@pytest.fixture(scope="module")
def student(teacher):
    return ConsistentDistiller(teacher, **STUDENT, random_state=0).fit()


def _snapshot(sampler):
    return {
        "state": {k: v.clone() for k, v in sampler.control_.state_dict().items()},
        "ema": {k: v.clone() for k, v in sampler._ema.module.state_dict().items()},
        "generator": sampler._generator.get_state().clone(),
        "n_iter": sampler.n_iter_,
        "history": copy.deepcopy(sampler.history_),
        "params": sampler.get_params(deep=False),
    }


def _same(a, b) -> bool:
    tensors = all(torch.equal(a[key][k], b[key][k]) for key in ("state", "ema") for k in a[key])
    return (
        tensors
        and torch.equal(a["generator"], b["generator"])
        and a["n_iter"] == b["n_iter"]
        and a["history"] == b["history"]
        and a["params"] == b["params"]
    )


# ---------------------------------------------------------------- the teacher


def test_a_fitted_teacher_is_used_as_it_is_and_left_untouched(teacher):
    before = _snapshot(teacher)
    student = ConsistentDistiller(teacher, **STUDENT, random_state=1).fit()
    assert student.teacher_ is teacher
    assert _same(before, _snapshot(teacher))


def test_an_unfitted_teacher_is_cloned_and_fitted_on_the_same_energy():
    unfitted = DiffusionSampler(**TEACHER, random_state=0)
    student = ConsistentDistiller(unfitted, **STUDENT, random_state=0).fit(GAUSSIAN)
    assert not hasattr(unfitted, "n_iter_")
    assert student.teacher_ is not unfitted and student.teacher_.n_iter_ == TEACHER["max_iter"]
    assert student.teacher_.energy_.dim == 2 and student.n_features_in_ == 2


def test_a_self_consistent_teacher_distils_with_its_step_conditioning():
    scds = SelfConsistentSampler(n_steps=8, max_iter=5, batch_size=32, random_state=0)
    student = ConsistentDistiller(scds, **STUDENT, random_state=0).fit(GAUSSIAN)
    assert np.isfinite(student.sample(16, random_state=0)).all()


def test_the_student_starts_as_a_copy_of_the_teachers_network(teacher):
    net = ConsistencyNet.from_control(teacher._sampling_control)
    teacher_state = teacher._sampling_control.state_dict()
    for name, value in net.state_dict().items():
        torch.testing.assert_close(value, teacher_state[name])


# ---------------------------------------------------------------- boundary condition


@given(
    st.lists(st.floats(-50, 50, allow_nan=False), min_size=6, max_size=6),
    st.integers(0, 2**16),
)
def test_the_consistency_function_is_the_identity_at_the_end_time(values, seed):
    net = ConsistencyNet(3, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():  # a non-trivial output layer, as after training
        net.output.weight.normal_(generator=torch.Generator().manual_seed(seed))
    x = torch.tensor(values).reshape(2, 3)
    assert torch.equal(net(torch.tensor(0.0), x), x)
    assert not torch.equal(net(torch.tensor(0.5), x), x)


def test_the_trained_student_is_the_identity_at_the_end_time(student):
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(student.control_(torch.tensor(0.0), x), x)


# ---------------------------------------------------------------- sampling


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_every_k_up_to_the_coarse_grid_gives_finite_deterministic_samples(student, k):
    X = student.sample(40, n_steps=k, random_state=0)
    assert X.shape == (40, 2) and X.dtype == np.float32 and np.isfinite(X).all()
    np.testing.assert_array_equal(X, student.sample(40, n_steps=k, random_state=0))
    assert not np.array_equal(X, student.sample(40, n_steps=k, random_state=1))


def test_one_step_is_the_default(student):
    np.testing.assert_array_equal(
        student.sample(20, random_state=3), student.sample(20, n_steps=1, random_state=3)
    )


def test_one_step_sampling_is_one_network_evaluation(student, monkeypatch):
    calls = []
    net = student._sampling_control
    original = type(net).forward
    monkeypatch.setattr(type(net), "forward", lambda *a: calls.append(1) or original(*a))
    student.sample(100, random_state=0)
    assert len(calls) == 1
    calls.clear()
    student.sample(100, n_steps=3, random_state=0)
    assert len(calls) == 3


@pytest.mark.parametrize("k", [0, 5, -1])
def test_more_steps_than_the_coarse_grid_or_none_is_refused(student, k):
    with pytest.raises(ValueError, match="n_steps"):
        student.sample(4, n_steps=k)


def test_multistep_weights_are_refused_with_the_reason(student):
    with pytest.raises(ValueError, match="one-step sampler only"):
        student.sample(4, n_steps=2, return_log_weights=True)


def test_sampling_an_unfitted_student_raises():
    with pytest.raises(NotFittedError):
        ConsistentDistiller(DiffusionSampler()).sample(3)


# ---------------------------------------------------------------- weights


def test_one_step_weights_are_exact_for_a_linear_map(teacher):
    """With a zero output layer the one-step map is ``x -> c_skip(T) x``: its density is the
    scaled prior's, known in closed form."""
    student = ConsistentDistiller(teacher, **STUDENT, random_state=0).fit(GAUSSIAN)
    linear = copy.deepcopy(student)
    linear._ema = None
    with torch.no_grad():
        linear.control_.output.weight.zero_()
        linear.control_.output.bias.zero_()
    X, log_w = linear.sample(500, random_state=0, return_log_weights=True)
    c_skip = 0.25 / (1 + 0.25)
    x = torch.as_tensor(X, dtype=torch.float64)
    log_q = linear.reference_.prior_log_prob(x / c_skip) - 2 * math.log(c_skip)
    expected = GAUSSIAN.log_prob(x) - log_q
    np.testing.assert_allclose(log_w, expected.numpy(), rtol=1e-4, atol=1e-4)


def test_stochastic_log_det_agrees_with_the_exact_one_on_average(student):
    _, exact = student.sample(200, random_state=0, return_log_weights=True, log_det="exact")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InvalidWeightsWarning)
        _, noisy = student.sample(
            200, random_state=0, return_log_weights=True, log_det="stochastic"
        )
    assert abs(float(np.mean(noisy - exact))) < 0.1  # probe noise averages out over samples


@pytest.mark.filterwarnings("ignore::skcds.exceptions.UnreliableWeightsWarning")  # tiny models
def test_the_elbo_stays_below_the_true_log_z_where_the_map_does_not_fold():
    teacher = DiffusionSampler(**TEACHER, random_state=0).fit(GAUSSIAN)
    student = ConsistentDistiller(teacher, **STUDENT, random_state=0).fit()
    with warnings.catch_warnings():
        warnings.simplefilter("error", InvalidWeightsWarning)  # the map must not fold here
        estimate = student.estimate_log_normalizer(20_000, random_state=0)
    assert estimate.elbo < 0.0 + 4 * estimate.elbo_stderr
    assert estimate.log_z < 0.0 + 4 * estimate.stderr + 0.05
    assert student.score() == pytest.approx(
        student.estimate_log_normalizer(4096, random_state=0).elbo
    )


def test_a_folding_one_step_map_is_flagged(student):
    folding = copy.deepcopy(student)
    folding._ema = None
    with torch.no_grad():  # output = -x scaled: c_skip x + c_out F flips orientation
        folding.control_.output.weight.zero_()
        folding.control_.state_embedding.weight.copy_(torch.eye(64, 2) * 5)
        folding.control_.output.weight.copy_(-torch.eye(2, 64) * 2)
    with pytest.warns(InvalidWeightsWarning, match="1-step deterministic map is not injective"):
        folding.sample(2000, random_state=0, return_log_weights=True)


# ---------------------------------------------------------------- training options


@pytest.mark.parametrize(
    "options",
    [{"solver": "heun"}, {"target": "ema"}, {"loss": "pseudo_huber"}],
)
def test_training_options_run_and_record_history(teacher, options):
    student = ConsistentDistiller(teacher, **STUDENT, random_state=0, **options).fit()
    assert len(student.history_) == STUDENT["max_iter"]
    row = student.history_[-1]
    assert math.isfinite(row["loss"]) and 0 <= row["interval"] < STUDENT["n_intervals"]
    assert np.isfinite(student.sample(16, random_state=0)).all()


def test_fit_is_deterministic_under_a_seed(teacher):
    a = ConsistentDistiller(teacher, **STUDENT, random_state=5).fit().sample(8, random_state=0)
    b = ConsistentDistiller(teacher, **STUDENT, random_state=5).fit().sample(8, random_state=0)
    np.testing.assert_array_equal(a, b)


def test_warm_start_continues_without_refitting_the_teacher(teacher):
    student = ConsistentDistiller(teacher, **STUDENT, random_state=0, warm_start=True).fit()
    student.fit()
    assert student.n_iter_ == 2 * STUDENT["max_iter"] and student.teacher_ is teacher


# ---------------------------------------------------------------- validation


def test_a_teacher_that_is_not_a_diffusion_sampler_is_refused():
    with pytest.raises(TypeError, match="'teacher' must be a DiffusionSampler"):
        ConsistentDistiller("dis").fit(GAUSSIAN)


@pytest.mark.parametrize("reference", ["ou", "brownian"])
def test_a_teacher_without_the_dis_flow_is_refused(reference):
    with pytest.raises(ValueError, match=f"teacher's 'reference' must be 'vp'; got {reference!r}"):
        ConsistentDistiller(DiffusionSampler(reference=reference)).fit(GAUSSIAN)


def test_an_unfitted_teacher_without_energy_is_refused():
    with pytest.raises(ValueError, match="needs an energy"):
        ConsistentDistiller(DiffusionSampler()).fit()


def test_an_energy_of_another_dimension_is_refused(teacher):
    three = from_log_prob(lambda x: -0.5 * (x**2).sum(-1), dim=3)
    with pytest.raises(ValueError, match="fitted on 2 dimensions, but 'energy' has 3"):
        ConsistentDistiller(teacher, **STUDENT).fit(three)


def test_more_intervals_than_teacher_steps_are_refused(teacher):
    with pytest.raises(ValueError, match="'n_intervals' must be at most the teacher's n_steps"):
        ConsistentDistiller(teacher, student="consistency", n_intervals=17, max_iter=1).fit()


@pytest.mark.parametrize(
    "name, value",
    [
        ("solver", "rk4"),
        ("target", "frozen"),
        ("loss", "l1"),
        ("target_decay", 1.0),
        ("n_intervals", 0),
        ("max_iter", 0),
    ],
)
def test_invalid_parameters_name_the_parameter(teacher, name, value):
    with pytest.raises(ValueError, match=f"'{name}' parameter of ConsistentDistiller"):
        ConsistentDistiller(teacher, **{**STUDENT, name: value}).fit()


def test_clone_keeps_the_teacher_parameter(teacher):
    params = clone(ConsistentDistiller(teacher, n_intervals=5)).get_params(deep=False)
    assert params["n_intervals"] == 5 and isinstance(params["teacher"], DiffusionSampler)


# ---------------------------------------------------------------- persistence


def test_a_saved_student_samples_without_the_teacher(student):
    buffer = io.BytesIO()
    joblib.dump(student, buffer)
    buffer.seek(0)
    loaded = joblib.load(buffer)
    del loaded.teacher_, loaded._teacher_control
    loaded.teacher = None
    np.testing.assert_array_equal(
        loaded.sample(10, random_state=0), student.sample(10, random_state=0)
    )
    _, log_w = loaded.sample(10, random_state=0, return_log_weights=True)
    assert np.isfinite(log_w).all()


def test_the_control_net_trunk_is_shared_by_both_networks():
    """ControlNet and ConsistencyNet evaluate the same trunk: equal weights, equal features."""
    control = ControlNet(2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        control.output.weight.normal_(generator=torch.Generator().manual_seed(1))
    net = ConsistencyNet.from_control(control)
    from skcds._core.networks import _trunk

    x, t = torch.randn(5, 2), torch.tensor([0.3])
    torch.testing.assert_close(
        _trunk(net, net.time_embedding(t)[:, None][0], x),
        _trunk(control, control.time_embedding(t)[:, None][0], x),
    )


def test_the_output_clip_follows_the_training_schedule():
    """A fixed clip of 10 caps the one-step map at |x| <= 0.2 |x0| + 4.47 (the reference
    code's setting, which cannot reach the GMM's outer modes); the schedule lifts it."""
    from skcds._core.training import apply_clip_schedule

    net = ConsistencyNet(2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        net.output.bias.fill_(1e3)
    x = torch.zeros(1, 2)
    with torch.no_grad():
        capped = float(net(torch.tensor(1.0), x).max())
    assert capped == pytest.approx(10 * 0.5 / math.sqrt(1.25), rel=1e-6)
    apply_clip_schedule(net, 500)
    assert float(net.clip_model) == 250.0
    with torch.no_grad():
        assert float(net(torch.tensor(1.0), x).max()) > 100


def test_independent_mh_uses_the_one_step_weights_only(student):
    corrected = student.sample(100, random_state=0, imh_steps=2)
    assert corrected.shape == (100, student.n_features_in_) and np.isfinite(corrected).all()
    with pytest.raises(ValueError, match="one-step sampler only"):
        student.sample(10, n_steps=2, imh_steps=1)
