"""``langevin=False``: samplers for energies without a (cheap) gradient. The target is then
evaluated only at the ends of paths, never differentiated, and still sampled."""

import numpy as np
import pytest
import torch

import skcds
from skcds import ConsistentDistiller, DiffusionSampler, SelfConsistentSampler
from skcds.energies import from_log_prob
from skcds.exceptions import EnergyError

MEAN = np.array([1.0, -1.0])


class CountingGaussian:
    """A numpy log-density of N(MEAN, 0.5^2 I) that counts its calls and evaluated points."""

    def __init__(self) -> None:
        self.calls = self.points = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.calls, self.points = self.calls + 1, self.points + len(x)
        return -2.0 * ((x - MEAN) ** 2).sum(axis=1)


def numpy_energy():
    fn = CountingGaussian()
    return fn, from_log_prob(fn, dim=2, backend="numpy")


def calls_per_iteration(sampler, energy) -> tuple[int, int]:
    """(calls, points) of the numpy function in one training iteration after fitting."""
    sampler.fit(energy)
    fn = sampler.energy_.fn  # the fitted copy's function, which a warm start keeps
    before = fn.calls, fn.points
    sampler.set_params(warm_start=True, max_iter=1).fit()
    return fn.calls - before[0], fn.points - before[1]


def test_without_langevin_the_energy_is_called_once_per_iteration():
    _, energy = numpy_energy()
    tiny = {"n_steps": 8, "max_iter": 2, "batch_size": 32, "random_state": 0}
    free = DiffusionSampler(langevin=False, **tiny)
    calls, points = calls_per_iteration(free, energy)
    assert (calls, points) == (1, 32)  # the terminal states, one batch

    guided = DiffusionSampler(**tiny)
    calls, points = calls_per_iteration(guided, energy)
    # the score by finite differences at 9 states per path, 2 * dim points each
    assert points >= 9 * 32 * 2 * 2


def test_the_consistency_distiller_of_a_gradient_free_teacher_never_calls_the_energy():
    """(The flow student does: its teacher's path weights need log rho.)"""
    fn, energy = numpy_energy()
    teacher = DiffusionSampler(n_steps=8, max_iter=2, batch_size=16, random_state=0)
    teacher.set_params(langevin=False).fit(energy)
    student = ConsistentDistiller(teacher, student="consistency", n_intervals=4, max_iter=2)
    student.set_params(batch_size=16, random_state=0).fit()
    fn = student.energy_.fn
    before = fn.calls
    student.set_params(warm_start=True, max_iter=3).fit()
    assert fn.calls == before
    assert np.isfinite(student.sample(16, random_state=0)).all()


@pytest.mark.parametrize("cls", [DiffusionSampler, SelfConsistentSampler])
def test_ode_weights_of_a_numpy_energy_need_no_hessian_without_langevin(cls):
    _, energy = numpy_energy()
    tiny = {"n_steps": 4, "max_iter": 3, "batch_size": 16, "random_state": 0}
    guided = cls(energy, **tiny).fit()
    with pytest.raises(EnergyError, match="Hessian"):
        guided.sample(8, n_steps=2, method="ode", return_log_weights=True)

    free = cls(energy, langevin=False, **tiny).fit()
    x, log_w = free.sample(8, n_steps=2, method="ode", return_log_weights=True)
    assert x.shape == (8, 2) and np.isfinite(log_w).all()


def detached_log_prob(x):
    """A torch log-density that torch cannot differentiate (the value leaves the graph)."""
    return torch.from_numpy(-2.0 * ((x.detach().numpy() - MEAN) ** 2).sum(1)).to(x)


@pytest.mark.parametrize("cls", [DiffusionSampler, SelfConsistentSampler])
def test_a_log_density_without_gradient_fails_early_unless_langevin_is_off(cls):
    energy = from_log_prob(detached_log_prob, dim=2)
    tiny = {"n_steps": 4, "max_iter": 2, "batch_size": 16, "random_state": 0}
    with pytest.raises(EnergyError, match=r"could not be computed.*langevin=False"):
        cls(energy, **tiny).fit()
    assert cls(energy, langevin=False, **tiny).fit().n_iter_ == 2


def test_a_gradient_free_sampler_finds_the_target():
    """Coarse statistics of N((1, -1), 0.5^2 I), far from the prior N(0, I): the raw samples'
    mean, and the mean and standard deviation under their (valid) importance weights."""
    _, energy = numpy_energy()
    sampler = DiffusionSampler(
        energy, langevin=False, n_steps=16, max_iter=300, batch_size=128, random_state=0
    ).fit()
    x, log_w = sampler.sample(2000, random_state=0, return_log_weights=True)
    np.testing.assert_allclose(x.mean(0), MEAN, atol=0.15)
    p = np.exp(log_w - log_w.max())
    p /= p.sum()
    mean = p @ x
    np.testing.assert_allclose(mean, MEAN, atol=0.1)
    np.testing.assert_allclose(np.sqrt(p @ (x - mean) ** 2), [0.5, 0.5], atol=0.1)


def test_langevin_must_be_a_bool():
    with pytest.raises(ValueError, match="'langevin' parameter of DiffusionSampler must be a"):
        DiffusionSampler(langevin="no", max_iter=1).fit(numpy_energy()[1])


def test_a_gradient_free_sampler_round_trips_through_save(tmp_path):
    _, energy = numpy_energy()
    sampler = SelfConsistentSampler(
        energy, langevin=False, n_steps=4, max_iter=2, batch_size=16, random_state=0
    ).fit()
    skcds.save(sampler, tmp_path / "model.skcds")
    loaded = skcds.load(tmp_path / "model.skcds", energy=energy)
    assert loaded.langevin is False and not loaded.control_.uses_score
    np.testing.assert_array_equal(
        loaded.sample(8, n_steps=2, random_state=0), sampler.sample(8, n_steps=2, random_state=0)
    )
