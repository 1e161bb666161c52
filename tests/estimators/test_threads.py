"""n_threads: the intra-op threads a fit trains on (one for small networks on a CPU, so a
busy machine cannot stall training), restored after the fit whatever happens."""

import pytest
import torch

from skcds import ConsistentDistiller, DiffusionSampler, SelfConsistentSampler
from skcds._core.threads import SMALL_WORK, fit_threads, intra_op_threads
from skcds.energies import GaussianMixture

TINY = {"n_steps": 4, "max_iter": 2, "batch_size": 16, "random_state": 0}
CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize(
    ("n_threads", "device", "rows", "expected"),
    [
        ("auto", CPU, 512, 1),  # the defaults: batch 512, width 64
        ("auto", CPU, SMALL_WORK // 64, None),
        ("auto", CUDA, 512, None),
        (3, CPU, 10**6, 3),
        (None, CPU, 512, None),
        (2, CUDA, 512, None),
    ],
)
def test_the_thread_rule(n_threads, device, rows, expected):
    network = torch.nn.Sequential(torch.nn.Linear(3, 64), torch.nn.Linear(64, 3))
    assert fit_threads(n_threads, device, rows, network, dim=3) == expected


def test_a_wide_target_counts_as_wide_work():
    network = torch.nn.Linear(2, 2)
    assert fit_threads("auto", CPU, 512, network, dim=100) == 1
    assert fit_threads("auto", CPU, 512, network, dim=SMALL_WORK // 512) is None


def threads_seen(sampler):
    seen = []
    sampler.set_params(callbacks=[lambda est, record: seen.append(torch.get_num_threads())])
    return seen


def make(cls, **params):
    if cls is ConsistentDistiller:
        teacher = DiffusionSampler(**TINY).fit(GaussianMixture.grid())
        options = {k: value for k, value in TINY.items() if k != "n_steps"}
        return ConsistentDistiller(teacher, n_intervals=2, **options, **params)
    return cls(**TINY, **params)


@pytest.mark.parametrize("cls", [DiffusionSampler, SelfConsistentSampler, ConsistentDistiller])
@pytest.mark.parametrize(("n_threads", "during"), [("auto", 1), (1, 1), (None, 2)])
def test_training_uses_the_chosen_threads_and_restores_torchs(two_threads, cls, n_threads, during):
    sampler = make(cls, n_threads=n_threads, device="cpu")
    seen = threads_seen(sampler)
    sampler.fit(GaussianMixture.grid())
    assert seen == [during, during] and torch.get_num_threads() == 2


def test_torchs_setting_is_restored_when_training_fails(two_threads):
    def fail(est, record):
        raise KeyError("a callback's bug")

    sampler = DiffusionSampler(**TINY, n_threads=1, callbacks=[fail])
    with pytest.raises(KeyError):
        sampler.fit(GaussianMixture.grid())
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("bad", [0, -1, 1.5, "two", True, "Auto"])
def test_invalid_n_threads_is_refused_by_name(bad):
    with pytest.raises(ValueError, match=r"'n_threads' parameter of DiffusionSampler must be"):
        DiffusionSampler(**TINY, n_threads=bad).fit(GaussianMixture.grid())


@pytest.mark.parametrize(("n", "inside"), [(1, 1), (3, 3), (None, 2)])
def test_intra_op_threads_sets_and_restores(two_threads, n, inside):
    with intra_op_threads(n):
        assert torch.get_num_threads() == inside
    assert torch.get_num_threads() == 2
