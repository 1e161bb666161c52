"""Data-parallel training and sampling on torch.distributed: 2 gloo processes on the CPU,
spawned by the tests (each launch bounded by a timeout), against the 1-process run."""

import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch.multiprocessing import ProcessExitedException, ProcessRaisedException

import skcds
from skcds import ConsistentDistiller, DiffusionSampler, SelfConsistentSampler
from skcds.callbacks import Checkpoint
from skcds.distributed import launch, rank, world_size
from skcds.energies import GaussianMixture, TemperedManyWell

pytestmark = [
    pytest.mark.skipif(not dist.is_available(), reason="no torch.distributed"),
    pytest.mark.filterwarnings("ignore::skcds.exceptions.UnreliableWeightsWarning"),  # tiny
]
TIMEOUT = 60.0  # seconds a collective waits for a missing rank
DIS = {"n_steps": 8, "max_iter": 4, "batch_size": 32, "dtype": "float64", "random_state": 0}


def _trained_parameters(sampler) -> list:
    """The control's parameters, and the flow student's where the sampler has one."""
    flow = getattr(sampler, "flow_", None)
    return [*sampler.control_.parameters(), *(flow.parameters() if flow is not None else ())]


def _summary(sampler) -> dict:
    """What a run produced: weights, loss history and weighted samples (numpy)."""
    x, log_w = sampler.sample(64, random_state=1, return_log_weights=True)
    return {
        "params": [p.detach().numpy().copy() for p in _trained_parameters(sampler)],
        "loss": [row["loss"] for row in sampler.history_],
        "x": x,
        "log_w": log_w,
        "log_z": sampler.estimate_log_normalizer(64, random_state=2).log_z,
        "imh": sampler.sample(64, random_state=3, imh_steps=2),  # proposals are draws too
    }


def fit_dis(checkpoint=None) -> dict:
    torch.set_num_threads(1)
    callbacks = [Checkpoint(checkpoint, every=2)] if checkpoint else None
    sampler = DiffusionSampler(**DIS, callbacks=callbacks).fit(GaussianMixture.grid())
    return {"rank": rank(), "world": world_size(), **_summary(sampler)}


def fit_all() -> dict:
    """The three samplers, data-parallel when run under launch."""
    torch.set_num_threads(1)
    energy = GaussianMixture.grid()
    scds = SelfConsistentSampler(**DIS).fit(energy)
    teacher = DiffusionSampler(**DIS).fit(energy)
    cdds = ConsistentDistiller(teacher, n_intervals=4, max_iter=3, batch_size=32, random_state=0)
    cdds.fit()
    return {name: _summary(s) for name, s in {"scds": scds, "cdds": cdds}.items()}


def fit_family() -> dict:
    """SCDS on a family of densities: one context per training row and per draw (rows
    sliced per rank) and one for all."""
    torch.set_num_threads(1)
    # batch 64: one context per group of 32 trajectories, a group on each rank
    sampler = SelfConsistentSampler(**{**DIS, "batch_size": 64}).fit(TemperedManyWell.mw54())
    contexts = np.linspace(0.3, 1.0, 64)[:, None]
    x, log_w = sampler.sample(64, context=contexts, random_state=1, return_log_weights=True)
    odd = sampler.sample(63, context=contexts[:63], random_state=1)  # the last rank padded
    return {
        "odd": odd,
        "params": [p.detach().numpy().copy() for p in _trained_parameters(sampler)],
        "x": x,
        "log_w": log_w,
        "log_z": sampler.estimate_log_normalizer(64, context=0.5, random_state=2).log_z,
        "imh": sampler.sample(64, context=contexts, random_state=3, n_steps=3),
    }


def fails_on_rank_one(how: str) -> None:
    torch.set_num_threads(1)
    if rank() == 1:
        if how == "raise":
            raise RuntimeError("rank 1 failed")
        os._exit(3)  # dies without a word
    DiffusionSampler(**{**DIS, "max_iter": 50}).fit(GaussianMixture.grid())


@pytest.fixture(scope="module")
def two_process_dis(tmp_path_factory):
    checkpoint = tmp_path_factory.mktemp("ddp") / "model.skcds"
    return launch(fit_dis, 2, str(checkpoint), timeout=TIMEOUT), checkpoint


def test_two_processes_with_half_batches_equal_one_process(two_process_dis):
    results, _ = two_process_dis
    single = fit_dis()
    assert [r["rank"] for r in results] == [0, 1] and results[0]["world"] == 2
    for result in results:  # both ranks hold the same model as the 1-process run
        for a, b in zip(result["params"], single["params"], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(result["loss"], single["loss"], rtol=1e-9)
        # sampling is sharded and gathered: the same draws and weights as one process
        np.testing.assert_allclose(result["x"], single["x"], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(result["log_w"], single["log_w"], rtol=1e-9, atol=1e-12)
        assert result["log_z"] == pytest.approx(single["log_z"], rel=1e-9, abs=1e-12)
        np.testing.assert_allclose(result["imh"], single["imh"], rtol=1e-9, atol=1e-12)


def test_a_checkpoint_of_a_two_process_run_loads_in_one_process(two_process_dis):
    results, checkpoint = two_process_dis
    loaded = skcds.load(checkpoint)  # written by rank 0 at iteration 4
    assert loaded.n_iter_ == 4
    for a, b in zip(loaded.control_.parameters(), results[0]["params"], strict=True):
        np.testing.assert_allclose(a.detach().numpy(), b, rtol=1e-12)
    x, log_w = loaded.sample(64, random_state=1, return_log_weights=True)
    np.testing.assert_allclose(x, results[0]["x"], rtol=1e-9, atol=1e-12)


def test_every_sampler_trains_data_parallel_and_deterministically():
    first, second = (launch(fit_all, 2, timeout=TIMEOUT) for _ in range(2))
    for name in ("scds", "cdds"):
        for ranks in (first, second):  # the ranks agree
            for a, b in zip(ranks[0][name]["params"], ranks[1][name]["params"], strict=True):
                np.testing.assert_array_equal(a, b)
        for a, b in zip(first[0][name]["params"], second[0][name]["params"], strict=True):
            np.testing.assert_array_equal(a, b)  # and a run is reproducible
        assert np.isfinite(first[0][name]["x"]).all()


def test_a_family_trains_and_samples_data_parallel_as_in_one_process():
    results, single = launch(fit_family, 2, timeout=TIMEOUT), fit_family()
    for result in results:
        for a, b in zip(result["params"], single["params"], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
        for key in ("x", "log_w", "imh"):
            np.testing.assert_allclose(result[key], single[key], rtol=1e-9, atol=1e-12)
        assert result["log_z"] == pytest.approx(single["log_z"], rel=1e-9, abs=1e-12)
        # 63 draws: equal to one process's where W divides the count, else the same law
        assert result["odd"].shape == (63, 5) and np.isfinite(result["odd"]).all()
        np.testing.assert_allclose(result["odd"][:32], single["odd"][:32], rtol=1e-9)


@pytest.mark.parametrize(
    ("how", "error"), [("raise", ProcessRaisedException), ("exit", ProcessExitedException)]
)
def test_a_failing_rank_ends_the_run_with_an_error_not_a_hang(how, error):
    with pytest.raises(error):
        launch(fails_on_rank_one, 2, how, timeout=TIMEOUT)


def test_a_batch_that_does_not_split_evenly_is_refused():
    with pytest.raises(ProcessRaisedException, match="multiple of 2"):
        launch(_odd_batch, 2, timeout=TIMEOUT)


def _odd_batch() -> None:
    DiffusionSampler(**{**DIS, "batch_size": 33}).fit(GaussianMixture.grid())


def test_launch_checks_nprocs():
    with pytest.raises(ValueError, match="'nprocs' must be an int >= 1"):
        launch(fit_dis, 0)


def continue_fit(path: str) -> dict:
    """A 1-process checkpoint continued for 2 iterations (on W processes under launch)."""
    torch.set_num_threads(1)
    sampler = skcds.load(path)
    sampler.set_params(warm_start=True, max_iter=2).fit()
    return _summary(sampler)


def test_a_one_process_checkpoint_continues_on_two_processes(tmp_path):
    path = tmp_path / "model.skcds"
    skcds.save(DiffusionSampler(**DIS).fit(GaussianMixture.grid()), path)
    single = continue_fit(str(path))
    for result in launch(continue_fit, 2, str(path), timeout=TIMEOUT):
        for a, b in zip(result["params"], single["params"], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
