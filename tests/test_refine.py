"""skcds.refine: MALA from any starting points (e.g. the prior), its checks and its output."""

import numpy as np
import pytest
import torch

from skcds import refine
from skcds.energies import GaussianMixture, ManyWell, from_log_prob

WELL = ManyWell(dim=2, n_double_wells=1, separation=2.0)


def _prior(n, seed):
    return np.random.default_rng(seed).standard_normal((n, 2))


def _well_error(x) -> float:
    """Largest error of the double well's mode weight and of both coordinates' sd ratios,
    against exact draws."""
    exact = WELL.sample(20_000, generator=torch.Generator().manual_seed(9)).numpy()
    weight = abs((x[:, 0] > 0).mean() - 0.5)
    sd = np.abs(x.std(0) / exact.std(0) - 1).max()
    return float(max(weight, sd))


def test_refine_from_the_prior_reaches_a_symmetric_double_well():
    start = _prior(4000, 0)
    assert _well_error(start) > 0.2  # the prior is too narrow in the well coordinate
    refined = refine(WELL, start, 100, random_state=0)
    assert _well_error(refined) < 0.05
    assert isinstance(refined, np.ndarray) and refined.dtype == np.float64
    np.testing.assert_array_equal(refined, refine(WELL, start, 100, random_state=0))
    assert not np.shares_memory(refine(WELL, start, 0, random_state=0), start)


def test_refine_keeps_exact_samples_exact_and_the_check_rejects_unrefined_bias():
    exact = WELL.sample(4000, generator=torch.Generator().manual_seed(1)).numpy()
    assert _well_error(refine(WELL, exact, 20, random_state=1)) < 0.05
    assert _well_error(0.7 * exact) > 0.2  # a narrowed twin fails the same check


def test_refine_reports_its_cost_and_takes_tensors_and_a_pilot():
    start = torch.from_numpy(_prior(500, 2)).float()
    pilot = torch.from_numpy(_prior(100, 3)).float()
    out, info = refine(WELL, start, 5, pilot=pilot, random_state=0, return_info=True)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert info["n_evaluations"] == 500 * 6 + 20 * 100 * 3  # moves, then 20 tuning rounds
    assert 0 < info["acceptance"] < 1 and info["step_size"] > 0


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (
            (WELL, np.zeros((4, 3))),
            {},
            r"'X' must be of shape \(n_samples, 2\).*got shape \(4, 3\)",
        ),
        ((WELL, np.zeros(2)), {}, r"'X' must be of shape .*got shape \(2,\)"),
        ((WELL, np.array([[0.0, 1.0], [np.nan, 0.0]])), {}, r"'X' has 1 row\(s\) with NaN"),
        ((WELL, np.zeros((4, 2)), -1), {}, "'mcmc_steps' must be an int >= 0; got -1"),
        ((WELL, np.zeros((4, 2)), 2.5), {}, "'mcmc_steps' must be an int >= 0; got 2.5"),
        ((WELL, np.zeros((4, 2))), {"pilot": np.zeros((3, 5))}, r"'pilot' must be of shape"),
    ],
)
def test_refine_names_bad_arguments(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        refine(*args, **kwargs)


def test_refine_rejects_a_non_energy_and_starts_of_zero_density():
    with pytest.raises(TypeError, match=r"skcds.refine expects an skcds.energies.Energy"):
        refine(np.zeros((4, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"^skcds.refine needs an energy: pass an skcds"):
        refine(None, np.zeros((4, 2)))
    boxed = from_log_prob(lambda x: torch.where(x.abs().max(-1).values < 1, 0.0, -torch.inf), 2)
    with pytest.raises(ValueError, match=r"not finite at 1 row\(s\) of 'X' \(first: row 0\)"):
        refine(boxed, np.array([[2.0, 0.0], [0.0, 0.0]]))


def test_refine_does_not_touch_the_global_rng():
    state = torch.random.get_rng_state()
    refine(GaussianMixture.grid(), _prior(50, 4), 3, random_state=0)
    assert torch.equal(state, torch.random.get_rng_state())
