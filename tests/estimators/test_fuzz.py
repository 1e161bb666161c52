"""Hypothesis fuzzing of the three samplers with broken energies and invalid parameters.

The contract under test: a broken energy either stops ``fit`` with an
:class:`~skcds.exceptions.EnergyError` (or the user's own exception) that leaves any fitted
state consistent, or trains with the bad samples masked; the model never holds a non-finite
weight. An invalid parameter stops ``fit`` before anything is built, with a message naming
the parameter, and leaves the parameters as they were.
"""

import math
import os
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skcds import ConsistentDistiller, DiffusionSampler, SelfConsistentSampler
from skcds.energies import Energy, GaussianMixture, from_log_prob
from skcds.exceptions import EnergyError

GRID = GaussianMixture.grid()
TINY = {"max_iter": 3, "batch_size": 16, "random_state": 0}
FUZZ = settings(
    max_examples=int(os.environ.get("SKCDS_FUZZ_EXAMPLES", 30)),
    derandomize="SKCDS_FUZZ_EXAMPLES" not in os.environ,  # CI: the same examples every run
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


class UserBug(Exception):
    """An exception raised by the user's own energy code."""


class Broken(Energy):
    """The 9-mode grid with one fault: its region is the half-space ``x_i > c``, and
    ``after`` calls pass cleanly first (so a fault can appear mid-training)."""

    def __init__(self, fault: str, c: float, i: int, after: int, magnitude: float) -> None:
        super().__init__()
        self.fault, self.c, self.i, self.after, self.magnitude = fault, c, i, after, magnitude
        self.dim, self.calls = 2, 0

    def _log_prob(self, x):
        self.calls += 1
        out = GRID._log_prob(x)
        if self.calls <= self.after:
            return out
        region = x[:, self.i] > self.c
        fault = self.fault
        if fault in ("nan", "+inf", "-inf"):
            return torch.where(region, torch.full_like(out, float(fault)), out)
        if fault == "huge":  # beyond float32 for 1e300: +-inf after the cast
            big = torch.full(out.shape, self.magnitude, dtype=torch.float64)
            return torch.where(region, big.to(out.dtype), out)
        if fault == "nan_score":  # finite value, NaN gradient in the region
            return out + torch.where(region, torch.sqrt(self.c - x[:, self.i]), 0.0 * x[:, 0])
        if fault == "raises":
            raise UserBug("the user's energy failed")
        return {  # wrong outputs, whatever the region
            "shape_column": lambda: out[:, None],
            "shape_matrix": lambda: x,
            "shape_scalar": lambda: out.sum(),
            "shape_longer": lambda: torch.cat([out, out[:1]]),
            "dtype_int": lambda: out.long(),
            "dtype_bool": lambda: out > 0,
            "dtype_complex": lambda: out.to(torch.complex64),
            "numpy": lambda: out.detach().numpy(),
            "list": lambda: out.tolist(),
        }[fault]()


FAULTS = st.sampled_from(
    ["nan", "+inf", "-inf", "huge", "nan_score", "raises", "shape_column", "shape_matrix"]
    + ["shape_scalar", "shape_longer", "dtype_int", "dtype_bool", "dtype_complex", "numpy"]
    + ["list"]
)
BROKEN = st.builds(
    Broken,
    fault=FAULTS,
    c=st.floats(-4.0, 4.0),
    i=st.integers(0, 1),
    after=st.integers(0, 40),
    magnitude=st.sampled_from([1e10, -1e10, 1e30, -1e30, 1e300, -1e300]),
)


class BrokenNumpy:
    """A numpy log-density (the grid's) with one fault in the half-space ``x_i > c`` after
    ``after`` clean calls; wrapped by ``from_log_prob(..., backend='numpy')``."""

    def __init__(self, fault: str, c: float, i: int, after: int) -> None:
        self.fault, self.c, self.i, self.after, self.calls = fault, c, i, after, 0

    def __call__(self, x: np.ndarray):
        self.calls += 1
        out = GRID._log_prob(torch.from_numpy(x)).numpy()
        if self.calls <= self.after:
            return out
        region = x[:, self.i] > self.c
        if self.fault in ("nan", "inf", "-inf", "1e300"):
            return np.where(region, float(self.fault), out)
        if self.fault == "raises":
            raise UserBug("the user's numpy energy failed")
        return {
            "complex": lambda: out + 1j,
            "strings": lambda: out.astype(str),
            "none": lambda: None,
            "matrix": lambda: x,
            "list": lambda: out.tolist(),  # a valid output: a list of floats
            "float32": lambda: out.astype(np.float32),  # valid too
        }[self.fault]()


BROKEN_NUMPY = st.builds(
    BrokenNumpy,
    fault=st.sampled_from(
        ["nan", "inf", "-inf", "1e300", "raises", "complex", "strings", "none", "matrix"]
        + ["list", "float32"]
    ),
    c=st.floats(-4.0, 4.0),
    i=st.integers(0, 1),
    after=st.integers(0, 300),
)


@pytest.fixture(scope="module")
def teacher():
    return DiffusionSampler(n_steps=8, **TINY).fit(GRID)


def make(name, teacher):
    if name == "dis":
        return DiffusionSampler(n_steps=8, **TINY)
    if name == "scds":
        return SelfConsistentSampler(n_steps=8, **TINY)
    return ConsistentDistiller(teacher, n_intervals=4, **TINY)


def assert_consistent(sampler) -> None:
    """A fitted sampler's state after any fault: finite weights, one history row per
    completed iteration, and it samples."""
    if not hasattr(sampler, "n_iter_"):
        return
    assert sampler.n_iter_ == len(sampler.history_)
    assert all(bool(torch.isfinite(p).all()) for p in sampler.control_.parameters())
    assert all(isinstance(row["n_nonfinite"], int) for row in sampler.history_)
    assert np.isfinite(sampler.sample(4, random_state=0)).all()


def fit_through_the_fault(sampler, energy, *clues: str) -> None:
    """Fit; an ``EnergyError`` must carry one of ``clues``, and the user's exception must
    come through unchanged. Warnings (non-finite samples, an improper density) are allowed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            sampler.fit(energy)
        except EnergyError as error:
            assert any(clue in str(error) for clue in clues), str(error)
        except UserBug:
            pass


@pytest.mark.parametrize("name", ["dis", "scds", "cdds"])
@FUZZ
@given(energy=BROKEN)
def test_a_broken_energy_never_corrupts_the_model(name, teacher, energy):
    sampler = make(name, teacher)
    fit_through_the_fault(sampler, energy, "log_prob", "non-finite", "score")
    if hasattr(sampler, "n_iter_"):
        sampler.energy_.after = math.inf  # the fault is gone: the model itself must sample
    assert_consistent(sampler)


@pytest.mark.parametrize("name", ["dis", "scds", "cdds"])
@FUZZ
@given(fn=BROKEN_NUMPY)
def test_a_broken_numpy_energy_never_corrupts_the_model(name, teacher, fn):
    sampler = make(name, teacher)
    fit_through_the_fault(sampler, from_log_prob(fn, dim=2, backend="numpy"), "numpy", "non-finite")
    if hasattr(sampler, "n_iter_"):
        sampler.energy_.fn.after = math.inf
    assert_consistent(sampler)


@pytest.mark.parametrize("name", ["dis", "scds", "cdds"])
@pytest.mark.parametrize(
    "fault",
    ["shape_column", "shape_matrix", "shape_scalar", "shape_longer", "dtype_int", "dtype_bool"]
    + ["dtype_complex", "numpy", "list", "nan", "+inf"],
)
def test_a_wrong_output_is_refused_before_training(name, teacher, fault):
    """Faults everywhere from the first call (c = -inf): the probe batch catches them."""
    sampler = make(name, teacher)
    with pytest.raises(EnergyError, match=r"log_prob (must return|returned)") as error:
        sampler.fit(Broken(fault, -math.inf, 0, 0, 0.0))
    assert not hasattr(sampler, "n_iter_")
    expected = "non-finite" if fault in ("nan", "+inf") else ("dtype" if "dtype" in fault else "")
    assert expected in str(error.value)


# ---------------------------------------------------------------- parameters
def _ints_below(low):
    return st.one_of(st.integers(max_value=low - 1), st.floats(allow_nan=True), st.text(max_size=3))


NOT_BOOL = st.one_of(st.integers(), st.text(max_size=3), st.none(), st.floats())
NOT_FLOAT_IN_0_1 = st.one_of(
    st.floats().filter(lambda r: not 0 < r <= 1),
    st.text(max_size=3),
    st.none(),
    st.booleans(),
)
NOT_OPTION = st.one_of(st.text(max_size=6), st.integers(), st.none())
BAD_VALUES = {
    "n_steps": _ints_below(1),
    "max_iter": _ints_below(1),
    "batch_size": _ints_below(2),
    "learning_rate": NOT_FLOAT_IN_0_1,
    "verbose": _ints_below(0),
    "warm_start": NOT_BOOL,
    "langevin": NOT_BOOL,
    "dtype": NOT_OPTION,
    "device": st.one_of(st.sampled_from(["gpu", "cuda:x", "tpu", ""]), st.integers(max_value=-1)),
    "n_threads": st.one_of(
        _ints_below(1), st.text(max_size=4).filter(lambda t: t != "auto"), st.floats()
    ),
    "random_state": st.one_of(st.integers(max_value=-1), st.integers(min_value=2**32)),
    "callbacks": st.one_of(st.lists(st.integers(), min_size=1, max_size=2), st.text(max_size=3)),
    "loss": NOT_OPTION,
    "reference": NOT_OPTION,
    "width": _ints_below(1),
    "execution": NOT_OPTION,
    "precondition": NOT_OPTION,
    "max_time": st.one_of(st.floats(max_value=0.0), st.just(math.inf), st.text(max_size=3)),
    "early_stopping": NOT_BOOL,
    "n_iter_no_change": _ints_below(1),
    "tol": st.one_of(st.floats(max_value=-1e-9), st.just(math.nan), st.text(max_size=3)),
    "monitor_every": _ints_below(1),
    "update": NOT_OPTION,
    "consistency_weight": st.one_of(st.floats(max_value=-1e-9), st.just(math.inf), st.text()),
    "consistency_target": NOT_OPTION,
    "flow_map_weight": st.one_of(st.floats(max_value=-1e-9), st.just(math.inf), st.text()),
    "fold_weight": st.one_of(st.floats(max_value=-1e-9), st.just(math.nan), st.none()),
    "kl_weight": st.one_of(st.floats(max_value=-1e-9), st.just(-math.inf), st.text(max_size=3)),
    "n_intervals": _ints_below(1),
    "solver": NOT_OPTION,
    "target": NOT_OPTION,
    "target_decay": st.one_of(st.floats().filter(lambda m: not 0 <= m < 1), st.text(max_size=3)),
    "student": NOT_OPTION.filter(lambda s: s not in ("jump", "flow", "consistency")),
    "reverse_kl": st.one_of(st.floats(max_value=-1e-9), st.just(math.inf), st.text(max_size=3)),
}
NOT_PARAMETERS = {"energy", "teacher"}  # checked by fit's own energy and teacher checks
ESTIMATORS = {"dis": DiffusionSampler, "scds": SelfConsistentSampler, "cdds": ConsistentDistiller}


@pytest.mark.parametrize("name", ESTIMATORS)
def test_every_parameter_is_fuzzed(name):
    params = set(ESTIMATORS[name]().get_params(deep=False)) - NOT_PARAMETERS
    assert params <= set(BAD_VALUES), sorted(params - set(BAD_VALUES))


def _is_valid_option(name, value) -> bool:
    """The few drawn values that happen to be valid (e.g. the text 'vp' for 'reference')."""
    options = {
        "dtype": ["float32", "float64"],
        "loss": ["log_variance", "kl", "l2", "pseudo_huber"],
        "reference": ["vp", "ou", "brownian"],
        "execution": ["auto", "eager", "cuda_graph"],
        "update": ["alternate", "sum"],
        "solver": ["euler", "heun"],
        "target": ["online", "ema"],
    }
    return isinstance(value, str) and value in options.get(name, [])


@pytest.mark.parametrize("name", ESTIMATORS)
@FUZZ
@given(data=st.data())
def test_an_invalid_parameter_is_named_at_fit_and_changes_nothing(name, teacher, data):
    sampler = make(name, teacher)
    params = sorted(set(sampler.get_params(deep=False)) - NOT_PARAMETERS)
    param = data.draw(st.sampled_from(params), label="parameter")
    value = data.draw(BAD_VALUES[param], label="value")
    if _is_valid_option(param, value):
        return
    sampler.set_params(**{param: value})
    before = sampler.get_params(deep=False)
    with pytest.raises((ValueError, TypeError)) as error:
        sampler.fit(GRID)
    assert f"'{param}'" in str(error.value)
    assert not hasattr(sampler, "n_iter_")
    after = sampler.get_params(deep=False)
    assert after.keys() == before.keys()
    for key in before:
        same = after[key] is before[key] or after[key] == before[key]
        assert same or (isinstance(before[key], float) and np.isnan(before[key]))
