"""Nothing is lost: Ctrl-C during fit keeps a consistent model at the last completed
iteration, and a run resumed from a periodic checkpoint is the uninterrupted run, for each
of the three samplers."""

import copy
import signal

import pytest
import torch

import skcds
from skcds import ConsistentDistiller, DiffusionSampler, SelfConsistentSampler
from skcds.callbacks import Checkpoint
from skcds.energies import Energy, GaussianMixture

TINY = {"batch_size": 16, "random_state": 0}


class InterruptibleGrid(Energy):
    """The 9-mode grid, whose next evaluation after ``arm()`` delivers a Ctrl-C: a SIGINT
    (as the terminal sends) or a bare ``KeyboardInterrupt`` (as a second Ctrl-C, or one in
    a thread where no handler can be set, would surface)."""

    def __init__(self, how: str = "signal") -> None:
        super().__init__()
        self.grid, self.dim, self.how, self.armed = GaussianMixture.grid(), 2, how, False

    def _log_prob(self, x):
        if self.armed:
            self.armed = False
            if self.how == "signal":
                signal.raise_signal(signal.SIGINT)
            else:
                raise KeyboardInterrupt
        return self.grid._log_prob(x)


@pytest.fixture(scope="module")
def teacher():
    return DiffusionSampler(n_steps=8, max_iter=3, **TINY).fit(GaussianMixture.grid())


def make(name, teacher, **params):
    if name == "dis":
        return DiffusionSampler(n_steps=8, **TINY, **params)
    if name == "scds":
        return SelfConsistentSampler(n_steps=8, **TINY, **params)
    return ConsistentDistiller(teacher, n_intervals=4, **TINY, **params)


def state(sampler) -> dict:
    """Everything training changes, except wall-clock times."""
    return {
        "control": copy.deepcopy(sampler.control_.state_dict()),
        "optimizer": copy.deepcopy(sampler._optimizer.state_dict()["state"]),
        "lr": sampler._optimizer.param_groups[0]["lr"],
        "history": [{k: v for k, v in row.items() if k != "elapsed"} for row in sampler.history_],
        "n_iter": sampler.n_iter_,
    }


def assert_same(a: dict, b: dict) -> None:
    assert a["n_iter"] == b["n_iter"] and a["lr"] == b["lr"] and a["history"] == b["history"]
    for key in a["control"]:
        torch.testing.assert_close(a["control"][key], b["control"][key], rtol=0, atol=0)
    for index, moments in a["optimizer"].items():
        for key, value in moments.items():
            torch.testing.assert_close(value, b["optimizer"][index][key], rtol=0, atol=0)


def interrupted_fit(sampler, energy, at: int):
    """Fit, arming a Ctrl-C during iteration ``at``; return the snapshots after each
    completed iteration (taken by a callback)."""
    snapshots = []

    def watch(estimator, record):
        snapshots.append(state(estimator))
        if record["iteration"] == at - 1:
            estimator.energy_.armed = True

    sampler.set_params(callbacks=[watch])
    with pytest.warns(UserWarning, match="interrupted by the user after"):
        sampler.fit(energy)
    return snapshots


@pytest.mark.parametrize("name", ["dis", "scds", "cdds"])
def test_ctrl_c_finishes_the_iteration_then_stops_with_a_usable_model(name, teacher):
    handler = signal.getsignal(signal.SIGINT)
    sampler = make(name, teacher, max_iter=8)
    snapshots = interrupted_fit(sampler, InterruptibleGrid("signal"), at=3)

    # the iteration that was running when Ctrl-C came completed (callbacks included)
    assert sampler.n_iter_ == 4 == len(snapshots) == len(sampler.history_)
    assert_same(state(sampler), snapshots[-1])
    assert signal.getsignal(signal.SIGINT) is handler  # the user's handler is back

    # ... and continuing gives exactly the uninterrupted run
    sampler.set_params(callbacks=None, warm_start=True, max_iter=4).fit()
    reference = make(name, teacher, max_iter=8).fit(InterruptibleGrid())
    assert_same(state(sampler), state(reference))
    assert torch.isfinite(torch.as_tensor(sampler.sample(32, random_state=0))).all()


@pytest.mark.parametrize("name", ["dis", "scds", "cdds"])
def test_keyboard_interrupt_inside_the_energy_applies_nothing_of_its_iteration(name, teacher):
    sampler = make(name, teacher, max_iter=8)
    snapshots = interrupted_fit(sampler, InterruptibleGrid("raise"), at=3)

    assert sampler.n_iter_ == 3 == len(sampler.history_)
    assert_same(state(sampler), snapshots[-1])
    sampler.set_params(callbacks=None, warm_start=True, max_iter=2).fit()
    assert sampler.n_iter_ == 5
    assert torch.isfinite(torch.as_tensor(sampler.sample(32, random_state=0))).all()


@pytest.mark.parametrize("name", ["dis", "scds", "cdds"])
def test_resuming_from_a_checkpoint_is_the_uninterrupted_run(name, teacher, tmp_path):
    path = tmp_path / "checkpoint.skcds"
    energy = GaussianMixture.grid()
    full = make(name, teacher, max_iter=7, callbacks=[Checkpoint(path, every=4)]).fit(energy)

    resumed = skcds.load(path)  # written after iteration 4, then never again
    assert resumed.n_iter_ == 4 and resumed.callbacks is None
    resumed.set_params(warm_start=True, max_iter=resumed.max_iter - resumed.n_iter_)
    resumed.fit(energy)
    assert_same(state(resumed), state(full))
    torch.testing.assert_close(
        torch.as_tensor(resumed.sample(64, random_state=1)),
        torch.as_tensor(full.sample(64, random_state=1)),
    )


def test_checkpoint_never_leaves_a_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.skcds"
    sampler = make("dis", None, max_iter=2, callbacks=[Checkpoint(path, every=1)])
    sampler.fit(GaussianMixture.grid())
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        sampler.set_params(warm_start=True, max_iter=1).fit()
    assert path.read_bytes() == before  # the last good checkpoint is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.skcds"]


@pytest.mark.parametrize("every", [0, -1, 1.5, True, "10"])
def test_checkpoint_rejects_a_bad_period(tmp_path, every):
    with pytest.raises(ValueError, match="'every' must be an int >= 1"):
        Checkpoint(tmp_path / "model.skcds", every=every)


def test_checkpoint_rejects_a_missing_folder_at_once(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Checkpoint(tmp_path / "missing" / "model.skcds")
