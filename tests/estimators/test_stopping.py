"""Training that stops when it is done: the monitored ELBO, early stopping, a time budget."""

import math
import time

import numpy as np
import pytest
import torch

from skcds import ConsistentDistiller, DiffusionSampler, SelfConsistentSampler
from skcds.energies import GaussianMixture, from_log_prob

pytestmark = pytest.mark.filterwarnings("ignore::skcds.exceptions.UnreliableWeightsWarning")
SMALL = {"n_steps": 8, "batch_size": 32, "random_state": 0}


def standard_normal(x: torch.Tensor) -> torch.Tensor:
    return -0.5 * (x**2).sum(-1) - x.shape[1] * 0.5 * math.log(2 * math.pi)


NORMAL = from_log_prob(standard_normal, dim=2)  # the prior itself: nothing left to learn


def test_the_elbo_is_monitored_in_history():
    sampler = DiffusionSampler(**SMALL, max_iter=12, monitor_every=4, early_stopping=False)
    sampler.fit(NORMAL)
    checked = [row for row in sampler.history_ if "elbo" in row]
    assert [row["iteration"] for row in checked] == [3, 7, 11]
    assert all(row["elbo"] <= 0.05 and 0 < row["ess"] <= 1 for row in checked)  # log Z = 0
    assert sampler.stop_reason_ == "max_iter" and sampler.n_iter_ == 12


@pytest.mark.parametrize("cls", [DiffusionSampler, SelfConsistentSampler])
def test_a_plateau_stops_training_early(cls):
    sampler = cls(**SMALL, max_iter=400, monitor_every=4, n_iter_no_change=3, tol=0.05)
    sampler.fit(NORMAL)
    assert sampler.stop_reason_ == "converged" and sampler.n_iter_ < 400
    elbos = [row["elbo"] for row in sampler.history_ if "elbo" in row]
    best = np.maximum.accumulate(elbos)
    assert len(elbos) >= 4  # the last 3 checks each failed to beat the best before by tol
    assert all(elbos[i] <= best[i - 1] + 0.05 for i in range(len(elbos) - 3, len(elbos)))


def test_the_distiller_monitors_its_one_step_weights():
    teacher = DiffusionSampler(**SMALL, max_iter=5).fit(NORMAL)
    student = ConsistentDistiller(teacher, n_intervals=4, max_iter=40, batch_size=32,
                                  monitor_every=4, n_iter_no_change=2, tol=10.0)  # fmt: skip
    student.fit()
    assert student.stop_reason_ == "converged" and student.n_iter_ == 12


def test_monitoring_leaves_the_training_draws_alone():
    runs = [
        DiffusionSampler(**SMALL, max_iter=8, monitor_every=every, early_stopping=False)
        for every in (3, 1000)
    ]
    for run in runs:
        run.fit(GaussianMixture.grid())
    for a, b in zip(runs[0].control_.parameters(), runs[1].control_.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_time_budget_is_respected_within_one_iteration():
    sampler = DiffusionSampler(**SMALL, max_iter=100_000, max_time=1.0)
    start = time.perf_counter()
    sampler.fit(GaussianMixture.grid())
    wall = time.perf_counter() - start
    assert sampler.stop_reason_ == "max_time" and sampler.n_iter_ < 100_000
    elapsed = [row["elapsed"] for row in sampler.history_]
    longest = max(np.diff([0.0, *elapsed]))
    assert elapsed[-1] < 1.0 + longest  # training time: at most one iteration past
    assert wall < 1.0 + longest + 5.0  # plus set-up (probe, preconditioning search)


def test_warm_start_continues_after_an_early_stop():
    sampler = DiffusionSampler(**SMALL, max_iter=400, monitor_every=4, n_iter_no_change=3,
                               tol=0.05)  # fmt: skip
    sampler.fit(NORMAL)
    stopped = sampler.n_iter_
    sampler.set_params(warm_start=True, max_iter=5, early_stopping=False).fit()
    assert sampler.n_iter_ == stopped + 5 and sampler.stop_reason_ == "max_iter"
    assert [row["iteration"] for row in sampler.history_] == list(range(stopped + 5))


def test_invalid_stopping_parameters_are_refused():
    with pytest.raises(ValueError, match="'max_time' parameter .* None or a float > 0"):
        DiffusionSampler(max_time=0).fit(NORMAL)
    with pytest.raises(ValueError, match="'tol' parameter .* a float >= 0"):
        DiffusionSampler(tol=-1.0).fit(NORMAL)


def test_diagnose_reports_every_step_count_with_advice():
    sampler = SelfConsistentSampler(student="jump", **SMALL, max_iter=6, monitor_every=3)
    diagnosis = sampler.fit(NORMAL).diagnose(500)
    assert [s.n_steps for s in diagnosis.steps] == [1, 2, 4, 8]
    assert diagnosis.n_iter == 6 and diagnosis.stop_reason == "max_iter"
    for s in diagnosis.steps:
        assert s.valid is False or (math.isfinite(s.elbo) and 0 < s.ess <= 1)
        assert s.reliable == (s.valid and s.khat <= 0.7 and s.n_steps in diagnosis.trusted)
    assert diagnosis.advice[0].startswith(("Trustworthy", "Not yet trustworthy"))
    text = repr(diagnosis)
    assert "k-hat" in text and "Diagnosis after 6 iterations" in text


def test_diagnose_says_when_nothing_can_be_trusted(monkeypatch):
    """A deliberately broken sampler (heavy-tailed weights) gets the 'not yet' verdict."""
    sampler = DiffusionSampler(**SMALL, max_iter=3).fit(NORMAL)
    rng = np.random.default_rng(0)
    heavy = torch.as_tensor(np.log(rng.pareto(1 / 0.9, 4000) + 1.0))
    monkeypatch.setattr(sampler, "_draw", lambda *args, **kwargs: (None, heavy))
    diagnosis = sampler.diagnose(4000)
    assert diagnosis.trusted == [] and diagnosis.advice[0].startswith("Not yet trustworthy")
    assert any("heavy-tailed" in line for line in diagnosis.advice)


def test_diagnose_needs_a_fitted_sampler():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        DiffusionSampler().diagnose()
