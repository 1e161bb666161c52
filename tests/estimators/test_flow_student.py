"""The invertible one-step student (``ConsistentDistiller(student='flow')``, issue 27): its
exact density, the weighted forward KL, a biased teacher corrected by the weights (with a
broken twin that ignores them), k-step sampling, validation and persistence."""

import io
import math
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import skcds
from skcds import ConsistentDistiller, DiffusionSampler, SelfConsistentSampler
from skcds._core.losses import weighted_forward_kl
from skcds._core.networks import FlowNet
from skcds.energies import GaussianMixture, from_log_prob
from skcds.metrics import wasserstein

MEAN = torch.tensor([1.0, -0.5], dtype=torch.float64)
SD = torch.tensor([0.6, 1.3], dtype=torch.float64)
GAUSSIAN = from_log_prob(
    lambda x: torch.distributions.Normal(MEAN.to(x), SD.to(x)).log_prob(x).sum(-1), dim=2
)  # normalised: log Z = 0
TEACHER = {"n_steps": 16, "max_iter": 30, "batch_size": 64}
FLOW = {"student": "flow", "max_iter": 30, "batch_size": 64}


@pytest.fixture(scope="module")
def teacher():
    return DiffusionSampler(**TEACHER, random_state=0).fit(GaussianMixture.grid())


@pytest.fixture(scope="module")
def student(teacher):
    return ConsistentDistiller(teacher, **FLOW, random_state=0).fit()


# ---------------------------------------------------------------- the flow network
def _flow(dim: int, seed: int) -> FlowNet:
    g = torch.Generator().manual_seed(seed)
    loc, scale = torch.randn(dim, generator=g), torch.rand(dim, generator=g) + 0.5
    net = FlowNet(dim, transforms=2, width=16, loc=loc, scale=scale, generator=g).double()
    with torch.no_grad():  # away from the identity the zero-ish initial splines are near
        for p in net.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return net


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), dim=st.integers(1, 4))
def test_the_log_density_is_the_change_of_variables(seed, dim):
    net = _flow(dim, seed)
    z = torch.randn(3, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x, log_q = net(z)
    for i in range(3):
        jacobian = torch.autograd.functional.jacobian(lambda zi: net(zi[None])[0][0], z[i])
        base = torch.distributions.Normal(0.0, 1.0).log_prob(z[i]).sum()
        expected = base - torch.linalg.slogdet(jacobian).logabsdet
        torch.testing.assert_close(log_q[i], expected, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(net.log_prob(x), log_q, rtol=1e-9, atol=1e-9)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), dim=st.integers(1, 4))
def test_the_inverse_undoes_the_forward_map(seed, dim):
    net = _flow(dim, seed)
    z = 2 * torch.randn(64, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x, _ = net(z)
    back = net.flow.transform(None)((x - net.loc) / net.scale)
    torch.testing.assert_close(back, z, rtol=1e-7, atol=1e-7)


def test_building_the_flow_leaves_the_global_rng_alone_and_follows_the_generator():
    state = torch.random.get_rng_state()
    a = FlowNet(3, generator=torch.Generator().manual_seed(5))
    b = FlowNet(3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


# ---------------------------------------------------------------- the loss
def test_the_weighted_forward_kl_is_minimised_by_the_target_not_the_proposal():
    """Draws of N(0, 1) weighted towards N(1.5, 0.7^2): over the Gaussian family, the
    loss's minimiser is the target; without the weights, the proposal."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200_000, 1, generator=g, dtype=torch.float64)
    target, proposal = torch.distributions.Normal(1.5, 0.7), torch.distributions.Normal(0.0, 1.0)
    log_w = (target.log_prob(x) - proposal.log_prob(x)).sum(-1)

    def minimiser(log_w):
        loc = torch.zeros((), dtype=torch.float64, requires_grad=True)
        log_scale = torch.zeros((), dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS([loc, log_scale], max_iter=100)

        def closure():
            optimizer.zero_grad()
            log_q = torch.distributions.Normal(loc, log_scale.exp()).log_prob(x).sum(-1)
            loss, _ = weighted_forward_kl(log_q, log_w)
            loss.backward()
            return loss

        optimizer.step(closure)
        return loc.item(), log_scale.detach().exp().item()

    assert minimiser(log_w) == pytest.approx((1.5, 0.7), abs=0.02)
    assert minimiser(torch.zeros_like(log_w)) == pytest.approx((0.0, 1.0), abs=0.02)


def test_the_loss_ignores_rows_without_a_finite_weight():
    log_q = torch.tensor([-1.0, float("nan"), -3.0])
    log_w = torch.tensor([0.0, float("-inf"), float("nan")])
    value, n_masked = weighted_forward_kl(log_q, log_w)
    assert float(value) == 1.0 and int(n_masked) == 2


# ---------------------------------------------------------------- a biased teacher
class _Unweighted(ConsistentDistiller):
    """The broken twin: learns the teacher's draws as they are (every weight equal)."""

    def _teacher_sde(self, n, generator):
        roll = super()._teacher_sde(n, generator)
        return roll._replace(log_target=roll.log_rnd)


@pytest.fixture(scope="module")
def biased_teacher():
    """Four steps, three iterations: its law is off by 0.19 in the mean and 41% in an sd
    (the test checks that it is off)."""
    return DiffusionSampler(n_steps=4, max_iter=3, batch_size=128, random_state=0).fit(GAUSSIAN)


def _moment_errors(sampler) -> tuple[float, float]:
    x = torch.as_tensor(sampler.sample(20_000, random_state=1), dtype=torch.float64)
    return float((x.mean(0) - MEAN).abs().max()), float((x.std(0) / SD - 1).abs().max())


@pytest.mark.parametrize("broken", [False, True])
def test_a_biased_teachers_draws_are_corrected_by_their_weights(biased_teacher, broken):
    assert max(_moment_errors(biased_teacher)) > 0.2  # the teacher really is biased
    cls = _Unweighted if broken else ConsistentDistiller
    student = cls(biased_teacher, student="flow", max_iter=300, batch_size=512, random_state=0)
    mean_error, sd_error = _moment_errors(student.fit())
    passes = mean_error < 0.1 and sd_error < 0.1
    assert passes is not broken, (mean_error, sd_error)


# ---------------------------------------------------------------- sampling
def test_one_step_weights_are_finite_and_estimate_log_z(teacher):
    energy = GaussianMixture.grid()
    sampler = ConsistentDistiller(teacher, student="flow", max_iter=200, random_state=0).fit()
    estimate = sampler.estimate_log_normalizer(4000, random_state=0)
    assert abs(estimate.log_z - 0.0) < 0.1 and estimate.ess > 0.1
    assert estimate.elbo < 0.0  # a true lower bound: log Z = 0
    assert sampler.n_features_in_ == energy.dim


def test_k_steps_of_independent_mh_move_a_poor_flow_towards_the_target():
    teacher = DiffusionSampler(n_steps=16, max_iter=5, batch_size=128, random_state=0)
    poor = ConsistentDistiller(teacher, GAUSSIAN, student="flow", max_iter=10, random_state=0)
    poor.fit()
    noise = torch.randn(4000, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    exact = (MEAN + SD * noise).numpy()
    w1 = [wasserstein(poor.sample(4000, n_steps=k, random_state=1), exact) for k in (1, 8)]
    assert w1[1] < 0.8 * w1[0], w1


def test_k_steps_are_not_limited_by_the_consistency_grid(student):
    x = student.sample(5, n_steps=student.n_intervals + 3, random_state=0)
    assert x.shape == (5, 2) and np.isfinite(x).all()


def test_multistep_weights_are_refused_with_the_reason(student):
    with pytest.raises(ValueError, match="n_steps=1"):
        student.sample(3, n_steps=2, return_log_weights=True)


def test_sampling_is_reproducible_under_a_seed(student):
    a, wa = student.sample(6, random_state=4, return_log_weights=True)
    b, wb = student.sample(6, random_state=4, return_log_weights=True)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(wa, wb)


def test_history_records_the_teachers_batch_ess(student):
    ess = [row["teacher_ess"] for row in student.history_]
    assert len(ess) == student.n_iter_ and all(0 < e <= 1 for e in ess)


def test_the_reverse_kl_term_trains(teacher):
    sampler = ConsistentDistiller(teacher, **FLOW, reverse_kl=0.5, random_state=0).fit()
    assert all(math.isfinite(row["loss"]) for row in sampler.history_)


def test_the_flow_works_at_the_scale_of_the_teachers_draws(student):
    x = torch.as_tensor(student.teacher_.sample(4000, random_state=0))
    torch.testing.assert_close(student.control_.loc, x.mean(0), atol=0.2, rtol=0)
    torch.testing.assert_close(student.control_.scale, x.std(0), atol=0, rtol=0.1)


# ---------------------------------------------------------------- parameters
def test_learning_rate_auto_is_per_student(teacher):
    flow = ConsistentDistiller(teacher, **FLOW).fit()
    consistency = ConsistentDistiller(
        teacher, student="consistency", n_intervals=4, max_iter=2, batch_size=16
    ).fit()
    assert flow.history_[0]["learning_rate"] == 1e-3
    assert consistency.history_[0]["learning_rate"] == 5e-3


def test_the_consistency_student_is_unchanged_by_learning_rate_auto(teacher):
    options = {"n_intervals": 4, "max_iter": 5, "batch_size": 16, "random_state": 0}
    options["student"] = "consistency"
    auto = ConsistentDistiller(teacher, **options).fit()
    explicit = ConsistentDistiller(teacher, learning_rate=5e-3, **options).fit()
    a, b = (sampler.sample(9, random_state=1) for sampler in (auto, explicit))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("student", "flows"),
        ("reverse_kl", -1.0),
        ("reverse_kl", math.inf),
        ("learning_rate", "fast"),
    ],
)
def test_invalid_parameters_name_the_parameter(teacher, name, value):
    with pytest.raises(ValueError, match=f"'{name}'"):
        ConsistentDistiller(teacher, **{**FLOW, name: value}).fit()


# ---------------------------------------------------------------- persistence
def _reloaded(sampler, tmp_path) -> tuple:
    """``sampler`` back from joblib and from ``skcds.save``."""
    buffer = io.BytesIO()
    joblib.dump(sampler, buffer)
    buffer.seek(0)
    skcds.save(sampler, tmp_path / "model")
    return joblib.load(buffer), skcds.load(tmp_path / "model")


def test_joblib_and_skcds_save_round_trip(student, tmp_path):
    pickled, saved = _reloaded(student, tmp_path)
    expected = student.sample(7, random_state=2, return_log_weights=True)
    for loaded in (pickled, saved):
        assert isinstance(loaded.control_, FlowNet)
        got = loaded.sample(7, random_state=2, return_log_weights=True)
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_array_equal(a, b)
    saved.set_params(warm_start=True, max_iter=2).fit()
    assert saved.n_iter_ == student.n_iter_ + 2


# ---------------------------------------------------------------- the earlier samplers
def test_the_jump_and_consistency_students_are_bitwise_those_of_before():
    """The samplers as they were before the flow student (``student='jump'``,
    ``student='consistency'`` and DIS), against draws saved by that code
    (``tests/estimators/data/before_flow_student.py``, commit c870b15)."""
    saved = np.load(Path(__file__).parent / "data" / "before_flow_student.npz")
    energy = GaussianMixture.grid()
    tiny = {"n_steps": 8, "max_iter": 6, "batch_size": 32, "random_state": 0, "dtype": "float64"}
    dis = DiffusionSampler(**tiny).fit(energy)
    scds = SelfConsistentSampler(student="jump", **tiny).fit(energy)
    options = {"n_intervals": 4, "max_iter": 6, "batch_size": 32, "random_state": 0}
    cdds = ConsistentDistiller(dis, student="consistency", **options, dtype="float64").fit()
    sde = {"method": "sde", "n_steps": 8}
    for name, sampler, kwargs in (
        ("dis", dis, {}),
        ("scds", scds, {}),
        ("scds_sde", scds, sde),
        ("cdds", cdds, {}),
    ):
        x, log_w = sampler.sample(16, random_state=1, return_log_weights=True, **kwargs)
        np.testing.assert_array_equal(x, saved[f"{name}_x"])
        np.testing.assert_array_equal(log_w, saved[f"{name}_log_w"])


# ---------------------------------------------------------------- SelfConsistentSampler
SCDS_FLOW = {"student": "flow", "n_steps": 8, "max_iter": 30, "batch_size": 64}


@pytest.fixture(scope="module")
def scds_flow():
    return SelfConsistentSampler(**SCDS_FLOW, random_state=0).fit(GaussianMixture.grid())


def test_scds_trains_the_diffusion_sampler_and_the_flow_together(scds_flow):
    rows = scds_flow.history_
    assert {"loss", "flow_loss", "teacher_ess"} <= rows[-1].keys()
    assert isinstance(scds_flow.flow_, FlowNet) and scds_flow.n_iter_ == 30
    assert "consistency_loss" not in rows[-1]  # the jump is not trained


def test_scds_flow_samples_in_one_step_with_exact_weights_by_default(scds_flow, monkeypatch):
    calls = []
    forward = FlowNet.forward
    monkeypatch.setattr(FlowNet, "forward", lambda net, z: calls.append(1) or forward(net, z))
    x, log_w = scds_flow.sample(50, random_state=0, return_log_weights=True)
    assert len(calls) == 1 and x.shape == (50, 2) and np.isfinite(log_w).all()


def test_scds_flow_keeps_the_diffusion_sampler(scds_flow):
    x, log_w = scds_flow.sample(
        20, method="sde", n_steps=8, random_state=0, return_log_weights=True
    )
    assert np.isfinite(x).all() and np.isfinite(log_w).all()


def test_scds_flow_k_steps_any_k(scds_flow):
    assert scds_flow.sample(4, n_steps=3, random_state=0).shape == (4, 2)
    with pytest.raises(ValueError, match="n_steps=1"):
        scds_flow.sample(4, n_steps=3, return_log_weights=True)


def test_method_flow_needs_the_flow_student():
    sampler = SelfConsistentSampler(student="jump", n_steps=4, max_iter=2, batch_size=16)
    sampler.set_params(random_state=0).fit(GaussianMixture.grid())
    with pytest.raises(ValueError, match="student='flow'"):
        sampler.sample(3, method="flow")
    assert sampler.flow_ is None


def test_scds_flow_monitors_and_diagnoses_the_flow(scds_flow):
    assert scds_flow._monitor_options() == (1, {"method": "flow"})
    assert scds_flow.diagnose(n_samples=500).trusted is not None


def test_scds_flow_round_trips_and_continues(scds_flow, tmp_path):
    pickled, saved = _reloaded(scds_flow, tmp_path)
    expected = scds_flow.sample(5, random_state=3)
    for loaded in (pickled, saved):
        np.testing.assert_array_equal(loaded.sample(5, random_state=3), expected)
    saved.set_params(warm_start=True, max_iter=2).fit()
    assert saved.n_iter_ == 32


def test_scds_flow_fit_is_deterministic_and_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    a = SelfConsistentSampler(**{**SCDS_FLOW, "max_iter": 3}, random_state=1)
    b = SelfConsistentSampler(**{**SCDS_FLOW, "max_iter": 3}, random_state=1)
    xa, xb = (s.fit(GAUSSIAN).sample(8, random_state=0) for s in (a, b))
    np.testing.assert_array_equal(xa, xb)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_scds_flow_learns_a_gaussian():
    sampler = SelfConsistentSampler(
        student="flow", n_steps=16, max_iter=300, batch_size=256, random_state=0
    ).fit(GAUSSIAN)
    mean_error, sd_error = _moment_errors(sampler)
    assert mean_error < 0.1 and sd_error < 0.1, (mean_error, sd_error)


def test_the_flow_leaves_torch_distributions_validation_as_it_was():
    """zuko's import switches it off for the whole process; skcds restores it."""
    before = torch.distributions.Distribution._validate_args
    for setting in (True, False, before):
        torch.distributions.Distribution.set_default_validate_args(setting)
        FlowNet(2)
        assert torch.distributions.Distribution._validate_args is setting


def test_distilling_a_flow_is_deterministic_and_leaves_the_global_rng_alone(teacher):
    state = torch.random.get_rng_state()
    a, b = (ConsistentDistiller(teacher, **FLOW, random_state=3).fit() for _ in range(2))
    losses = [[row["loss"] for row in s.history_] for s in (a, b)]
    assert losses[0] == losses[1]
    assert torch.equal(torch.random.get_rng_state(), state)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), dim=st.integers(1, 5))
def test_sampling_matches_zukos_own_inverse(seed, dim):
    """FlowNet's inverse takes one network pass fewer per coupling than zuko's (the last
    pass's parameters give the log-determinant): the same draws and densities."""
    net = _flow(dim, seed)
    z = torch.randn(32, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x, log_q = net(z)
    y, log_det = net.flow.transform(None).inv.call_and_ladj(z)
    base = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    torch.testing.assert_close(x, net.loc + net.scale * y, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(log_q, base - log_det - net.log_scale.sum(), rtol=1e-10, atol=1e-10)
