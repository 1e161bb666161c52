"""ManyWell and FabManyWell: log Z against scipy quadrature, exact samples by KS tests."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from skcds.energies import FabManyWell, ManyWell
from skcds.energies._many_well import _QuarticWell

F64 = torch.float64
LOG_2PI = math.log(2 * math.pi)
FAB_Z_1D = 11784.50927  # fab-torch's TARGET_Z for exp(-x^4 + 6 x^2 + x / 2)

# (h, a, c) of the 1-D well exp(-(x^2 - h)^2 + a x + c)
WELLS = {
    "separation=4": (4.0, 0.0, 0.0),
    "separation=2": (2.0, 0.0, 0.0),
    "separation=0.5": (0.5, 0.0, 0.0),
    "fab": (3.0, 0.5, 9.0),
}


def well_density(h: float, a: float, c: float):
    return lambda t: np.exp(-((t * t - h) ** 2) + a * t + c)


def quad_log_normalizer(h: float, a: float, c: float) -> float:
    value, _ = integrate.quad(well_density(h, a, c), -np.inf, np.inf, epsabs=0, epsrel=1e-13)
    return math.log(value)


@pytest.mark.parametrize("well", WELLS.values(), ids=WELLS.keys())
def test_one_dimensional_log_normalizer_matches_scipy_quad(well):
    assert abs(_QuarticWell(*well).log_normalizer - quad_log_normalizer(*well)) < 1e-10


def test_fab_normalizer_matches_the_literature_value():
    assert abs(_QuarticWell(*WELLS["fab"]).log_normalizer - math.log(FAB_Z_1D)) < 1e-9


@pytest.mark.parametrize(
    ("energy", "well", "n_wells"),
    [
        (ManyWell.mw54(), WELLS["separation=4"], 5),
        (ManyWell.mw52(), WELLS["separation=2"], 5),
        (FabManyWell(), WELLS["fab"], 16),
    ],
    ids=["mw54", "mw52", "fab32"],
)
def test_log_normalizer_is_a_sum_of_one_dimensional_integrals(energy, well, n_wells):
    expected = n_wells * quad_log_normalizer(*well) + 0.5 * (energy.dim - n_wells) * LOG_2PI
    assert abs(energy.log_normalizer - expected) < 1e-8


@pytest.mark.parametrize(
    "energy",
    [ManyWell(dim=2, n_double_wells=1, separation=2.0), FabManyWell(dim=2)],
    ids=["manywell-2d", "fab-pair"],
)
def test_two_dimensional_log_normalizer_matches_grid_quadrature(energy):
    axis = torch.linspace(-6.0, 6.0, 1201, dtype=F64)
    log_density = energy.log_prob(torch.cartesian_prod(axis, axis)).reshape(1201, 1201)
    top = log_density.max()
    integral = torch.trapezoid(torch.trapezoid((log_density - top).exp(), axis, dim=1), axis)
    assert abs(float(top + integral.log()) - energy.log_normalizer) < 1e-8


def test_log_prob_matches_the_published_formulas():
    x = torch.randn(6, 32, generator=torch.Generator().manual_seed(0), dtype=F64)
    mw = -((x[:, :5] ** 2 - 2.0) ** 2).sum(1) - 0.5 * (x[:, 5:] ** 2).sum(1)
    torch.testing.assert_close(ManyWell(32, 5, 2.0).log_prob(x), mw)
    first, second = x[:, 0::2], x[:, 1::2]  # FAB pairs (x_{2i}, x_{2i+1})
    fab = (-(first**4) + 6 * first**2 + 0.5 * first - 0.5 * second**2).sum(1)
    torch.testing.assert_close(FabManyWell().log_prob(x), fab)


def test_the_32_modes_of_mw54_are_stationary_and_equally_likely():
    corners = 2.0 * torch.tensor(list(itertools.product([-1.0, 1.0], repeat=5)), dtype=F64)
    mw = ManyWell.mw54()
    torch.testing.assert_close(mw.log_prob(corners), torch.zeros(32, dtype=F64))
    torch.testing.assert_close(mw.grad_log_prob(corners), torch.zeros(32, 5, dtype=F64))


@pytest.mark.parametrize("well", WELLS.values(), ids=WELLS.keys())
def test_rejection_envelope_bounds_the_target_everywhere(well):
    """f / Z <= M q on a grid wider than the one the envelope was computed on."""
    sampler = _QuarticWell(*well)
    x = np.linspace(-15.0, 15.0, 300_001)
    z = (x[:, None] - sampler.means) / sampler.std
    log_q = np.log(
        (np.exp(sampler.log_weights - 0.5 * z * z)).sum(1) / (sampler.std * math.sqrt(2 * math.pi))
    )
    log_f = np.log(well_density(*well)(x) + 1e-300) - sampler.log_normalizer
    assert (log_f - log_q).max() <= sampler.log_envelope
    assert sampler.log_envelope < math.log(2.5)  # acceptance rate above 40 %


def quadrature_cdf(well: tuple[float, float, float]):
    """The 1-D CDF by cumulative Simpson quadrature on a fine grid (scipy, independent)."""
    t = np.linspace(-8.0, 8.0, 160_001)
    mass = integrate.cumulative_simpson(well_density(*well)(t), x=t, initial=0.0)
    return lambda s: np.interp(s, t, mass / mass[-1])


def min_ks_pvalue(samples: torch.Tensor, cdfs: list) -> float:
    """Smallest per-coordinate KS p-value of ``samples`` against the exact marginal CDFs."""
    x = samples.numpy()
    return min(stats.kstest(x[:, i], cdf).pvalue for i, cdf in enumerate(cdfs))


TARGETS = {
    "mw54": (ManyWell.mw54(), [WELLS["separation=4"]] * 5),
    "mw7-5-2": (ManyWell(7, 5, 2.0), [WELLS["separation=2"]] * 5 + [None] * 2),
    "fab4": (FabManyWell(dim=4), [WELLS["fab"], None] * 2),
}


def accept_every_proposal(monkeypatch):
    """A broken sampler that returns the proposal: the rejection step always accepts."""

    def sample(self, n, generator, device):
        self.log_envelope = -math.inf
        return self._propose_and_accept(n, generator, device)

    monkeypatch.setattr(_QuarticWell, "sample", sample)


@pytest.mark.parametrize("target", TARGETS, ids=TARGETS.keys())
@pytest.mark.parametrize(
    "broken", [None, "shifted", "no-rejection"], ids=["exact", "shifted-twin", "proposal-twin"]
)
def test_samples_match_quadrature_cdfs(target, broken, global_random_seed, monkeypatch):
    energy, wells = TARGETS[target]
    if broken == "no-rejection":
        accept_every_proposal(monkeypatch)
        energy = type(energy)(**_params(energy))
    cdfs = [stats.norm.cdf if w is None else quadrature_cdf(w) for w in wells]
    x = energy.sample(4000, generator=torch.Generator().manual_seed(global_random_seed))
    if broken == "shifted":
        x = x + 0.15
    assert (min_ks_pvalue(x, cdfs) < 1e-5) == (broken is not None)


def _params(energy) -> dict:
    if isinstance(energy, FabManyWell):
        return dict(dim=energy.dim)
    return dict(dim=energy.dim, n_double_wells=energy.n_double_wells, separation=energy.separation)


def test_fab_mode_masses_match_the_asymmetric_well():
    """About 85 % of the mass of x_{2i} sits in the deeper right well (tilt x / 2)."""
    x = FabManyWell(dim=2).sample(20_000, torch.Generator().manual_seed(0))[:, 0]
    right, _ = integrate.quad(well_density(*WELLS["fab"]), 0.0, np.inf)
    expected = right / FAB_Z_1D
    assert abs(float((x > 0).double().mean()) - expected) < 5 * math.sqrt(0.25 / 20_000)


@pytest.mark.parametrize("n", [0, 1, 5, 301])
def test_rejection_loop_returns_exactly_n_even_with_stingy_rounds(n, monkeypatch):
    """Cap every round at 3 acceptances: the loop must keep going and return exactly n."""
    original = _QuarticWell._propose_and_accept
    monkeypatch.setattr(
        _QuarticWell, "_propose_and_accept", lambda self, *a: original(self, *a)[:3]
    )
    sampler = _QuarticWell(*WELLS["separation=4"])
    out = sampler.sample(n, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert out.shape == (n,) and out.dtype == F64 and torch.isfinite(out).all()


def test_named_constructors():
    assert repr(ManyWell.mw54()) == "ManyWell(dim=5, n_double_wells=5, separation=4.0)"
    assert repr(ManyWell.mw52()) == "ManyWell(dim=50, n_double_wells=5, separation=2.0)"
    assert FabManyWell().dim == 32


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: ManyWell(dim=0), "'dim' must be an int >= 1; got 0."),
        (
            lambda: ManyWell(dim=3, n_double_wells=4),
            "'n_double_wells' must be <= dim=3; got 4.",
        ),
        (lambda: ManyWell(n_double_wells=0), "'n_double_wells' must be an int >= 1; got 0."),
        (lambda: ManyWell(separation=0.0), "'separation' must be a finite float > 0; got 0.0."),
        (lambda: FabManyWell(dim=5), "'dim' must be an even int >= 2; got 5."),
        (lambda: FabManyWell(dim=0), "'dim' must be an int >= 2; got 0."),
    ],
)
def test_invalid_arguments(factory, message):
    with pytest.raises(ValueError) as e:
        factory()
    assert str(e.value) == message
