"""SelfConsistentSampler: k-step sampling, exact change-of-variables weights, validation,
training history and persistence, on tiny budgets."""

import io
import math
import re

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

import skcds._core.flow
import skcds._estimators._base
from skcds import DiffusionSampler, SelfConsistentSampler
from skcds._core.training import make_scheduler
from skcds.energies import GaussianMixture, from_log_prob

TINY = {"n_steps": 8, "max_iter": 20, "batch_size": 64}
VALID_K = [1, 2, 4, 8]

MEAN = torch.tensor([0.3, -0.2], dtype=torch.float64)
COV = torch.tensor([[0.81, 0.3], [0.3, 1.21]], dtype=torch.float64)


def gaussian_log_prob(x):
    """A normalised, correlated 2-D Gaussian (log Z = 0), well inside the truncated prior's
    box (|x_i| <= 3.89), so that the ODE sampler's support covers all but ~1e-3 of its mass."""
    return torch.distributions.MultivariateNormal(MEAN.to(x), COV.to(x)).log_prob(x)


GAUSSIAN = from_log_prob(gaussian_log_prob, dim=2)


@pytest.fixture(scope="module")
def fitted():
    return SelfConsistentSampler(student="jump", **TINY, random_state=0).fit(GaussianMixture.grid())


@pytest.fixture(scope="module")
def fitted_gaussian():
    return SelfConsistentSampler(student="jump", **TINY, random_state=0).fit(GAUSSIAN)


@pytest.fixture(scope="module")
def untrained_gaussian():
    return SelfConsistentSampler(student="jump", **{**TINY, "max_iter": 1}, random_state=0).fit(
        GAUSSIAN
    )


# ---------------------------------------------------------------- sampling


@pytest.mark.parametrize("k", VALID_K)
def test_every_valid_k_gives_finite_samples_and_weights(fitted, k):
    X, log_w = fitted.sample(32, n_steps=k, random_state=0, return_log_weights=True)
    assert X.shape == (32, 2) and log_w.shape == (32,)
    assert X.dtype == np.float32 and log_w.dtype == np.float32
    assert np.isfinite(X).all() and np.isfinite(log_w).all()
    X2, log_w2 = fitted.sample(32, n_steps=k, random_state=0, return_log_weights=True)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(log_w, log_w2)
    np.testing.assert_array_equal(fitted.sample(32, n_steps=k, random_state=0), X)
    assert not np.array_equal(fitted.sample(32, n_steps=k), fitted.sample(32, n_steps=k))
    tensor = fitted.sample(5, n_steps=k, return_tensor=True)
    assert isinstance(tensor, torch.Tensor) and tensor.shape == (5, 2)


def test_default_is_one_step(fitted):
    np.testing.assert_array_equal(
        fitted.sample(16, random_state=0), fitted.sample(16, n_steps=1, random_state=0)
    )


def test_sde_method_samples(fitted):
    X, log_w = fitted.sample(16, n_steps=8, method="sde", random_state=0, return_log_weights=True)
    assert X.shape == (16, 2) and np.isfinite(log_w).all()


@pytest.mark.parametrize(
    ("k", "message"),
    [
        (3, "'n_steps' must divide the training grid of 8 steps (one of 1, 2, 4, 8); got 3."),
        (16, "'n_steps' must divide the training grid of 8 steps (one of 1, 2, 4, 8); got 16."),
        (0, "'n_steps' must be an int >= 1; got 0."),
        (2.0, "'n_steps' must be an int >= 1; got 2.0."),
        (True, "'n_steps' must be an int >= 1; got True."),
    ],
    ids=["3", "16", "0", "2.0", "True"],
)
def test_invalid_k_is_refused(fitted, k, message):
    with pytest.raises(ValueError) as error:
        fitted.sample(3, n_steps=k)
    assert str(error.value) == message
    with pytest.raises(ValueError) as error:
        fitted.estimate_log_normalizer(10, n_steps=k)
    assert str(error.value) == message


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"n_steps": 6},
            "The 'n_steps' parameter of SelfConsistentSampler must be a power of two >= 2. "
            "Got 6 instead.",
        ),
        (
            {"n_steps": 1},
            "The 'n_steps' parameter of SelfConsistentSampler must be a power of two >= 2. "
            "Got 1 instead.",
        ),
        (
            {"update": "both"},
            "The 'update' parameter of SelfConsistentSampler must be one of ['alternate', "
            "'sum']. Got 'both' instead.",
        ),
        (
            {"reference": "ou"},
            "The 'reference' parameter of SelfConsistentSampler must be one of ['vp']. "
            "Got 'ou' instead.",
        ),
        (
            {"consistency_weight": -1},
            "The 'consistency_weight' parameter of SelfConsistentSampler must be a finite "
            "float >= 0. Got -1 instead.",
        ),
        (
            {"consistency_weight": math.inf},
            "The 'consistency_weight' parameter of SelfConsistentSampler must be a finite "
            "float >= 0. Got inf instead.",
        ),
    ],
)
def test_invalid_parameters_are_named(params, message):
    with pytest.raises(ValueError) as error:
        SelfConsistentSampler(student="jump", **{**TINY, **params}).fit(GaussianMixture.grid())
    assert str(error.value) == message


def test_sampling_before_fit_is_not_fitted():
    with pytest.raises(NotFittedError):
        SelfConsistentSampler(
            student="jump",
        ).sample(3)
    with pytest.raises(NotFittedError):
        SelfConsistentSampler(
            student="jump",
        ).estimate_log_normalizer(3)


# ---------------------------------------------------------------- training


@pytest.mark.parametrize("update", ["alternate", "sum"])
def test_history_records_both_losses(update):
    params = {"n_steps": 4, "max_iter": 3, "batch_size": 16, "random_state": 0}
    sampler = SelfConsistentSampler(student="jump", **params, update=update).fit(
        GaussianMixture.grid()
    )
    assert sampler.n_iter_ == 3 and len(sampler.history_) == 3
    for row in sampler.history_:
        assert {"loss", "consistency_loss", "learning_rate", "grad_norm"} <= set(row)
        assert math.isfinite(row["loss"]) and row["consistency_loss"] >= 0
    assert any(row["consistency_loss"] > 0 for row in sampler.history_)


def test_alternate_updates_step_the_schedule_once_per_iteration(monkeypatch):
    """Two optimiser steps per iteration, one learning-rate step: with the schedule made to
    decay at every step, row i has ``lr0 * gamma**i``, as for the DiffusionSampler."""
    monkeypatch.setattr(
        skcds._estimators._base,
        "make_scheduler",
        lambda optimizer, max_iter: make_scheduler(optimizer, max_iter, step_size=1),
    )
    params = {"n_steps": 4, "max_iter": 5, "batch_size": 8, "random_state": 0}
    scds = SelfConsistentSampler(student="jump", **params, update="alternate").fit(
        GaussianMixture.grid()
    )
    dis = DiffusionSampler(**params).fit(GaussianMixture.grid())
    gamma = 0.02 ** (1 / 5)
    expected = [5e-3 * gamma**i for i in range(5)]
    np.testing.assert_allclose([r["learning_rate"] for r in scds.history_], expected, rtol=1e-12)
    np.testing.assert_allclose([r["learning_rate"] for r in dis.history_], expected, rtol=1e-12)
    assert scds._scheduler.last_epoch == dis._scheduler.last_epoch == 5
    assert scds._optimizer.param_groups[0]["lr"] == pytest.approx(5e-3 * 0.02)


def test_fit_is_deterministic_under_random_state():
    params = {"n_steps": 4, "max_iter": 3, "batch_size": 16, "random_state": 3}
    a = SelfConsistentSampler(student="jump", **params).fit(GaussianMixture.grid())
    b = SelfConsistentSampler(student="jump", **params).fit(GaussianMixture.grid())
    assert [r["consistency_loss"] for r in a.history_] == [
        r["consistency_loss"] for r in b.history_
    ]
    np.testing.assert_array_equal(a.sample(5, random_state=0), b.sample(5, random_state=0))


# ---------------------------------------------------------------- valid weights


@pytest.mark.filterwarnings("ignore::skcds.exceptions.UnreliableWeightsWarning")  # tiny models
@pytest.mark.parametrize("target", ["gmm-grid", "gaussian"])
@pytest.mark.parametrize("k", [1, 2, 8])
def test_elbo_does_not_exceed_log_z(fitted, fitted_gaussian, target, k):
    sampler = fitted if target == "gmm-grid" else fitted_gaussian
    log_z = 0.0  # both targets are normalised
    est = sampler.estimate_log_normalizer(4000, n_steps=k, random_state=1)
    assert math.isfinite(est.elbo) and est.elbo_stderr > 0
    assert est.elbo <= log_z + 4 * est.elbo_stderr, (target, k, est)
    assert est.elbo <= est.log_z  # Jensen, on the same weights
    assert est.log_z <= log_z + 4 * est.stderr  # the log of an unbiased estimate: biased low


def mean_weight(log_w: np.ndarray) -> tuple[float, float]:
    """``mean(exp(log_w))`` and its standard error."""
    w = np.exp(log_w.astype(np.float64))
    return float(w.mean()), float(w.std() / math.sqrt(w.size))


def assert_unbiased(sampler, k: int, n: int = 20_000) -> None:
    """``E_q[rho / q] = Z = 1``: the importance estimate of Z is within 4 standard errors."""
    _, log_w = sampler.sample(n, n_steps=k, random_state=2, return_log_weights=True)
    mean, stderr = mean_weight(log_w)
    assert abs(mean - 1.0) < 4 * stderr, (k, mean, stderr)


@pytest.mark.parametrize("k", [1, 2])
def test_importance_estimate_of_z_is_unbiased(untrained_gaussian, k):
    # measured (float32): k = 1: 1.0031 +- 0.0035; k = 2: 1.0001 +- 0.0019
    assert_unbiased(untrained_gaussian, k)


@pytest.mark.parametrize("k", [1, 2])
def test_weights_without_the_log_determinant_are_rejected(untrained_gaussian, k, monkeypatch):
    """Deliberately broken: every step's Jacobian replaced by the identity (log det = 0).
    The same check must reject it (measured: 0.945 +- 0.003 at k = 1, 1.185 +- 0.002 at k = 2).
    """

    def identity(control, process, energy, t, dt, x, step=None, score=None):
        return torch.eye(x.shape[1], dtype=x.dtype, device=x.device).expand(x.shape[0], -1, -1)

    monkeypatch.setattr(skcds._core.flow, "step_jacobian", identity)
    with pytest.raises(AssertionError):
        assert_unbiased(untrained_gaussian, k)


def test_diffusion_sampler_ode_has_finite_and_unbiased_weights():
    params = {"n_steps": 8, "max_iter": 3, "batch_size": 16, "random_state": 0}
    dis = DiffusionSampler(**params).fit(GaussianMixture.grid())
    X, log_w = dis.sample(64, method="ode", return_log_weights=True, random_state=0)
    assert X.shape == (64, 2) and log_w.shape == (64,) and np.isfinite(log_w).all()
    dis = DiffusionSampler(**{**params, "max_iter": 1}).fit(GAUSSIAN)
    _, log_w = dis.sample(20_000, n_steps=2, method="ode", return_log_weights=True, random_state=2)
    mean, stderr = mean_weight(log_w)
    assert abs(mean - 1.0) < 4 * stderr, (mean, stderr)


# ---------------------------------------------------------------- sklearn and persistence


def test_joblib_round_trip_keeps_samples_and_weights(fitted, tmp_path):
    joblib.dump(fitted, tmp_path / "scds.joblib")
    loaded = joblib.load(tmp_path / "scds.joblib")
    assert isinstance(loaded, SelfConsistentSampler)
    for k in (1, 8):
        a = fitted.sample(20, n_steps=k, random_state=0, return_log_weights=True)
        b = loaded.sample(20, n_steps=k, random_state=0, return_log_weights=True)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


def test_clone_and_get_params():
    sampler = SelfConsistentSampler(
        student="jump", **TINY, update="sum", consistency_weight=0.5, random_state=0
    )
    params = sampler.get_params()
    assert params["update"] == "sum" and params["consistency_weight"] == 0.5
    assert params["n_steps"] == 8
    twin = clone(sampler)
    assert twin is not sampler and twin.get_params() == params
    assert not hasattr(twin, "n_iter_")


def test_score_is_a_finite_float(fitted):
    score = fitted.score()
    assert isinstance(score, float) and math.isfinite(score)
    assert score == fitted.score()  # fixed random_state
    assert score == pytest.approx(
        fitted.estimate_log_normalizer(4096, n_steps=1, random_state=0).elbo
    )


def test_a_folding_map_warns_that_its_weights_are_invalid():
    """Coarse Euler jumps of a barely trained sampler on a stiff 50-D target fold: the
    determinant's sign differs between samples, which proves the map is not injective."""
    from skcds.energies import ManyWell
    from skcds.exceptions import InvalidWeightsWarning

    sampler = SelfConsistentSampler(
        student="jump", n_steps=8, max_iter=5, batch_size=64, random_state=0
    )
    sampler.fit(ManyWell.mw52())
    with pytest.warns(
        InvalidWeightsWarning, match=r"The 8-step deterministic map is not injective"
    ):
        sampler.sample(300, n_steps=8, random_state=1, return_log_weights=True)


# ---------------------------------------------------------------- one-step levers (issue 15)

LEVERS = {
    "flow_map_weight": 1.0,
    "fold_weight": 1.0,
    "kl_weight": 0.1,
    "consistency_target": "ema",
}


@pytest.mark.parametrize(
    "levers",
    [
        {"flow_map_weight": 1.0},
        {"fold_weight": 1.0},
        {"kl_weight": 0.1},
        {"consistency_target": "ema"},
        LEVERS,
    ],
)
def test_levers_train_deterministically_and_change_the_updates(levers):
    params = {"n_steps": 8, "max_iter": 4, "batch_size": 16, "random_state": 3}
    energy = GaussianMixture.grid()
    a = SelfConsistentSampler(student="jump", **params, **levers).fit(energy)
    b = SelfConsistentSampler(student="jump", **params, **levers).fit(energy)
    paper = SelfConsistentSampler(
        student="jump",
        **params,
        flow_map_weight=0.0,
        fold_weight=0.0,
        kl_weight=0.0,
        consistency_target="online",
    ).fit(energy)
    losses = [r["consistency_loss"] for r in a.history_]
    assert losses == [r["consistency_loss"] for r in b.history_]
    assert all(math.isfinite(v) for v in losses)
    np.testing.assert_array_equal(a.sample(5, random_state=0), b.sample(5, random_state=0))
    if levers != {"fold_weight": 1.0}:  # the hinge is zero while the map keeps orientation
        assert losses != [r["consistency_loss"] for r in paper.history_]


def test_ema_teacher_survives_pickling_and_resumes_bitwise(tmp_path):
    """A warm start from a pickle continues the EMA teacher exactly as one without it."""
    params = {"n_steps": 4, "max_iter": 3, "batch_size": 16, "random_state": 0, **LEVERS}
    energy = GaussianMixture.grid()
    joblib.dump(
        SelfConsistentSampler(student="jump", **params).fit(energy), tmp_path / "half.joblib"
    )
    resumed = joblib.load(tmp_path / "half.joblib").set_params(warm_start=True).fit(energy)
    direct = (
        SelfConsistentSampler(student="jump", **params)
        .fit(energy)
        .set_params(warm_start=True)
        .fit(energy)
    )
    assert resumed.n_iter_ == direct.n_iter_ == 6
    teachers = (resumed._teacher.module, direct._teacher.module)
    pairs = zip(*(t.parameters() for t in teachers), strict=True)
    for p, q in pairs:
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert [r["consistency_loss"] for r in resumed.history_] == [
        r["consistency_loss"] for r in direct.history_
    ]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"consistency_target": "teacher"},
            "The 'consistency_target' parameter of SelfConsistentSampler must be one of "
            "['ema', 'online']. Got 'teacher' instead.",
        ),
        (
            {"flow_map_weight": -0.5},
            "The 'flow_map_weight' parameter of SelfConsistentSampler must be a finite "
            "float >= 0. Got -0.5 instead.",
        ),
        (
            {"fold_weight": math.nan},
            "The 'fold_weight' parameter of SelfConsistentSampler must be a finite "
            "float >= 0. Got nan instead.",
        ),
    ],
)
def test_invalid_lever_parameters_are_named(params, message):
    with pytest.raises(ValueError) as error:
        SelfConsistentSampler(student="jump", **{**TINY, **params}).fit(GaussianMixture.grid())
    assert str(error.value) == message


# ---------------------------------------------------------------- MALA refinement


def moment_error(X) -> float:
    sd = COV.diagonal().sqrt().numpy()
    mean = np.abs((X.mean(0) - MEAN.numpy()) / sd).max()
    cov = np.abs((np.cov(X.T) - COV.numpy()) / np.outer(sd, sd)).max()
    return float(max(mean, cov))


def test_refinement_pulls_a_biased_sampler_to_the_target(untrained_gaussian):
    raw = untrained_gaussian.sample(4000, random_state=0)
    refined = untrained_gaussian.sample(4000, random_state=0, mcmc_steps=100)
    assert moment_error(raw) > 0.15  # one iteration of training: visibly biased
    assert moment_error(refined) < 0.08
    again = untrained_gaussian.sample(4000, random_state=0, mcmc_steps=100)
    np.testing.assert_array_equal(refined, again)


def test_independent_mh_with_its_own_draws_pulls_a_biased_sampler_to_the_target(
    untrained_gaussian,
):
    raw = untrained_gaussian.sample(4000, random_state=0)
    corrected = untrained_gaussian.sample(4000, random_state=0, imh_steps=5)
    assert moment_error(raw) > 0.15
    assert moment_error(corrected) < 0.08
    np.testing.assert_array_equal(
        corrected, untrained_gaussian.sample(4000, random_state=0, imh_steps=5)
    )
    both = untrained_gaussian.sample(4000, random_state=0, imh_steps=5, mcmc_steps=5)
    assert moment_error(both) < 0.08


def test_independent_mh_refuses_noisy_weights(untrained_gaussian):
    with pytest.raises(ValueError, match="imh_steps needs exact log-weights"):
        untrained_gaussian.sample(10, imh_steps=2, log_det="stochastic")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"imh_steps": -2}, "'imh_steps' must be an int >= 0; got -2"),
        ({"imh_steps": 1, "return_log_weights": True}, "return_log_weights=True needs imh"),
        ({"mcmc_steps": -1}, "'mcmc_steps' must be an int >= 0; got -1"),
        ({"mcmc_steps": 2.5}, "'mcmc_steps' must be an int >= 0; got 2.5"),
        ({"mcmc_steps": 3, "return_log_weights": True}, "return_log_weights=True needs"),
    ],
)
def test_refinement_arguments_are_checked(fitted, kwargs, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        fitted.sample(10, **kwargs)


def test_models_saved_before_the_levers_existed_keep_the_papers_algorithm(tmp_path):
    """A pickle or ``skcds.save`` file without the new parameters was trained by the paper's
    algorithm; a warm start must continue it so, not switch to the new defaults."""
    import skcds

    sampler = SelfConsistentSampler(student="jump", **TINY, random_state=0).fit(
        GaussianMixture.grid()
    )
    state = sampler.__getstate__()
    for name in ("flow_map_weight", "fold_weight", "kl_weight"):
        del state[name]
    old = SelfConsistentSampler.__new__(SelfConsistentSampler)
    old.__setstate__(state)
    assert (old.flow_map_weight, old.fold_weight, old.kl_weight) == (0.0, 0.0, 0.0)
    assert (
        SelfConsistentSampler(
            student="jump",
        ).fold_weight
        == 10.0
    )  # new models get the new defaults

    skcds.save(sampler, tmp_path / "model.skcds")
    payload = torch.load(tmp_path / "model.skcds", weights_only=True)
    params = payload["estimator"]["params"]  # encoded as {"kind": "dict", "items": [...]}
    new = {"flow_map_weight", "fold_weight", "kl_weight"}
    params["items"] = [item for item in params["items"] if item[0] not in new]
    torch.save(payload, tmp_path / "old.skcds")
    loaded = skcds.load(tmp_path / "old.skcds", energy=GaussianMixture.grid())
    assert (loaded.flow_map_weight, loaded.fold_weight, loaded.kl_weight) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    "switches, column",
    [
        ({"_kl_last_jump": True}, "last_jump_kl"),
        ({"_kl_last_jump": True, "_penalise_last_jump": True}, "last_jump_kl"),
        ({"_sde_match_weight": 0.3}, "sde_match"),
        ({"_volume_weight": 1.0}, "volume_consistency"),
        ({"_score_match_weight": 1.0}, "score_match"),
    ],
)
def test_study_switches_add_their_term_and_leave_the_default_alone(switches, column):
    """The one-step study's private switches (benchmarks/one_step_study.py) add their loss
    term when set; the same fit without them records no such term."""
    params = {"n_steps": 8, "max_iter": 3, "batch_size": 16, "random_state": 3}
    energy = GaussianMixture.grid()
    plain = SelfConsistentSampler(student="jump", **params).fit(energy)
    switched = SelfConsistentSampler(student="jump", **params)
    for name, value in switches.items():
        setattr(switched, name, value)
    switched.fit(energy)
    assert all(math.isfinite(r[column]) for r in switched.history_)
    assert column not in plain.history_[0]


def test_fold_spread_switch_penalises_folds_in_the_prior_tails(monkeypatch):
    """``_fold_spread`` (1.5 by default): the 1-step fold penalty also at widened prior
    draws, so a map that folds only out there is penalised (narrow draws do not see it);
    ``0`` trains as the default of before, without those draws."""
    params = {"n_steps": 8, "max_iter": 1, "batch_size": 16, "random_state": 3}
    energy = GaussianMixture.grid()
    sampler = SelfConsistentSampler(student="jump", **params).fit(energy)
    args = (sampler.control_, sampler.reference_, sampler._dynamics_energy, sampler._grid(8))
    sampler._fold_spread = 3.0
    assert float(sampler._tail_penalty(args, 64).detach()) == 0.0  # monotone at the start

    class FoldsBeyondTwo(torch.nn.Module):  # x0 -> x0 - 3 (|x0| - 2)+ sign(x0): reversed past 2
        def forward(self, x):
            bend = torch.relu(x[:, :1].abs() - 2.0) * torch.sign(x[:, :1])
            return x - 3.0 * torch.cat([bend, torch.zeros_like(bend)], 1)

    import skcds._estimators._self_consistent as module

    def folding_jump(control, process, energy, x, length, score=None):
        x = x.detach().requires_grad_(True)
        jac = torch.func.vmap(torch.func.jacrev(lambda r: FoldsBeyondTwo()(r[None])[0]))(x)
        return FoldsBeyondTwo()(x), jac

    monkeypatch.setattr(module, "first_jump", folding_jump)
    wide = float(sampler._tail_penalty(args, 256).detach())
    sampler._fold_spread = 0.5  # draws within |x0| < 1.95: no fold seen
    narrow = float(sampler._tail_penalty(args, 256).detach())
    monkeypatch.undo()
    assert wide > 0.1 and narrow == 0.0
    assert SelfConsistentSampler._fold_spread == 1.5
    params["max_iter"] = 2
    default = SelfConsistentSampler(student="jump", **params).fit(energy)
    off = SelfConsistentSampler(student="jump", **params)
    off._fold_spread = 0.0
    off.fit(energy)
    assert all(math.isfinite(r["fold_penalty"]) for r in default.history_ + off.history_)
    assert default.history_[1]["loss"] != off.history_[1]["loss"]  # the draws differ


def test_favour_long_jumps_switch_changes_the_jumps_trained():
    """``_favour_long_jumps`` (study switch): the self-consistency loss sees other jumps (its
    first value differs from that of two identical plain fits)."""
    params = {"n_steps": 8, "max_iter": 2, "batch_size": 16, "random_state": 3}
    energy = GaussianMixture.grid()
    plain = SelfConsistentSampler(student="jump", **params).fit(energy)
    again = SelfConsistentSampler(student="jump", **params).fit(energy)
    switched = SelfConsistentSampler(student="jump", **params)
    switched._favour_long_jumps = True
    switched.fit(energy)
    first = [s.history_[0]["consistency_loss"] for s in (plain, again, switched)]
    assert first[0] == first[1] != first[2]


def test_log_variance_switch_replaces_the_one_step_kl():
    """``_one_step_log_variance`` (study switch): the one-step term is the variance of the
    log-weights, not their negative mean, so the recorded term changes and stays >= 0."""
    params = {"n_steps": 8, "max_iter": 3, "batch_size": 16, "random_state": 3}
    energy = GaussianMixture.grid()
    plain = SelfConsistentSampler(student="jump", **params).fit(energy)
    switched = SelfConsistentSampler(student="jump", **params)
    switched._one_step_log_variance = True
    switched.fit(energy)
    first = switched.history_[0]["one_step_kl"]
    assert first >= 0 and first != plain.history_[0]["one_step_kl"]


def test_damp_long_jumps_switch_scales_the_langevin_term_by_the_jump_length():
    """``_damp_long_jumps`` (study switch): a jump of ``k`` grid steps carries ``1 / k`` of the
    Langevin scale (one grid step's drift); the grid step itself is undamped, and the switch
    survives a joblib round trip."""
    energy = GaussianMixture.grid()
    sampler = SelfConsistentSampler(
        student="jump", n_steps=8, max_iter=2, batch_size=16, random_state=0
    )
    sampler._damp_long_jumps = True
    sampler.fit(energy)
    net, t, sigma = sampler.control_, torch.tensor([0.5]), torch.tensor([1.0])
    grid, jump = (net.time_features(t, sigma, torch.tensor([d])).scale for d in (1 / 8, 1.0))
    net.langevin_step = None
    plain = net.time_features(t, sigma, torch.tensor([1 / 8])).scale
    net.langevin_step = 1 / 8
    torch.testing.assert_close(jump, grid / 8)
    assert torch.equal(grid, plain)  # the grid step is undamped
    undamped = SelfConsistentSampler(
        student="jump", n_steps=8, max_iter=2, batch_size=16, random_state=0
    )
    assert undamped.fit(energy).control_.langevin_step is None
    buffer = io.BytesIO()
    joblib.dump(sampler, buffer)
    buffer.seek(0)
    loaded = joblib.load(buffer)
    np.testing.assert_array_equal(
        loaded.sample(20, n_steps=2, random_state=1), sampler.sample(20, n_steps=2, random_state=1)
    )


def test_prior_scale_switch_trains_in_scaled_coordinates():
    """``_prior_scale = s`` (study switch): training in ``x = s z``; samples come back in the
    user's coordinates and the weights stay those of the user's target."""
    energy = GaussianMixture.grid()
    sampler = SelfConsistentSampler(
        student="jump", n_steps=8, max_iter=2, batch_size=16, random_state=0
    )
    sampler._prior_scale = 4.0
    sampler.fit(energy)
    assert sampler.preconditioning_.method == "diagonal"
    x = sampler.sample(50, random_state=0, return_tensor=True)
    z, _ = sampler._draw(50, None, 0, False, model_space=False)
    torch.testing.assert_close(x, 4.0 * z)
    _, log_w = sampler.sample(50, random_state=0, return_log_weights=True)
    assert np.isfinite(log_w).all()
