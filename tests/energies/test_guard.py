"""The guarded view of a user's model (skcds.energies._guard): which errors are the model's,
exact isolation of the rows that raise, what is recorded and when a warning is issued."""

import math
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from skcds.energies import from_log_prob
from skcds.energies._guard import (
    dynamics_view,
    is_model_failure,
    recording,
    reports_model_failures,
)
from skcds.exceptions import EnergyError, ModelFailureWarning


def refusing(bad_rows):
    """A standard normal whose model raises a ValueError on every batch holding a row whose
    first coordinate is one of ``bad_rows`` (the row's index, stored in x_0)."""
    calls = []

    def log_prob(x):
        calls.append(x.shape[0])
        if any(int(i) in bad_rows for i in x[:, 0].tolist()):
            raise ValueError("Expected value argument to be within the support")
        return -0.5 * (x**2).sum(-1)

    return log_prob, calls


def indexed(n):
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x[:, 0] = torch.arange(n, dtype=torch.float64)
    return x


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 70).flatmap(lambda n: st.tuples(st.just(n), st.sets(st.integers(0, n - 1)))))
def test_exactly_the_raising_rows_get_zero_density(case):
    n, bad = case
    log_prob, _ = refusing(bad)
    x = indexed(n)
    with recording() as failures:
        out = dynamics_view(from_log_prob(log_prob, dim=2), score=False)._log_prob(x)
    expected = -0.5 * (x**2).sum(-1)
    is_bad = torch.tensor([i in bad for i in range(n)])
    assert torch.equal(out[~is_bad], expected[~is_bad])
    assert bool((out[is_bad] == -math.inf).all())
    assert failures.raised == len(bad) and failures.nonfinite == 0
    assert (failures.first is None) == (not bad)


def test_isolating_one_row_costs_about_two_log2_n_calls():
    log_prob, calls = refusing({37})
    dynamics_view(from_log_prob(log_prob, dim=2), score=False)._log_prob(indexed(1024))
    assert len(calls) <= 2 * math.log2(1024) + 1


def test_nan_and_plus_inf_become_minus_inf_and_are_counted():
    def log_prob(x):
        out = -0.5 * (x**2).sum(-1)
        return torch.where(x[:, 0] < 2, out, torch.where(x[:, 0] < 4, math.nan, math.inf))

    x = indexed(6)  # x_0 = 0 .. 5: two good, two NaN, two +inf
    with recording() as failures:
        out = dynamics_view(from_log_prob(log_prob, dim=2))._log_prob(x)
    assert bool(torch.isfinite(out[:2]).all()) and bool((out[2:] == -math.inf).all())
    assert failures.nonfinite == 4 and failures.raised == 0


def test_the_score_and_hessian_of_a_raising_row_are_zero_and_the_rest_exact():
    log_prob, _ = refusing({1})
    guarded = dynamics_view(from_log_prob(log_prob, dim=2))
    x = indexed(4)
    with recording():
        score, hessian = guarded._grad_log_prob(x), guarded._hessian_log_prob(x)
    assert torch.equal(score[1], torch.zeros(2, dtype=x.dtype))
    assert torch.allclose(score[[0, 2, 3]], -x[[0, 2, 3]])
    assert torch.equal(hessian[1], torch.zeros(2, 2, dtype=x.dtype))
    assert torch.allclose(hessian[0], -torch.eye(2, dtype=x.dtype))


@pytest.mark.parametrize(
    ("error", "is_models"),
    [
        (ValueError("Expected parameter scale to satisfy the constraint"), True),
        (RuntimeError("linalg.cholesky: The factorization could not be completed"), True),
        (ZeroDivisionError("float division by zero"), True),
        (OverflowError("math range error"), True),
        (TypeError("unsupported operand type(s)"), False),
        (IndexError("index 3 is out of bounds"), False),
        (KeyError("theta"), False),
        (RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x2 and 3x3)"), False),
        (RuntimeError("The size of tensor a (4) must match the size of tensor b (3)"), False),
        (RuntimeError("expected scalar type Double but found Float"), False),
        (RuntimeError("element 0 of tensors does not require grad"), False),
        (EnergyError("log_prob must return shape (4,)"), False),
    ],
)
def test_the_models_own_failures_are_told_from_programming_errors(error, is_models):
    assert is_model_failure(error) is is_models


@pytest.mark.parametrize(
    "bug",
    [
        lambda x: x @ torch.ones(3, 3, dtype=x.dtype),  # a shape error
        lambda x: x.sum(-1) + "1",  # a TypeError
    ],
    ids=["shape", "type"],
)
def test_a_programming_error_raises_at_once_without_bisection(bug):
    calls = []

    def log_prob(x):
        calls.append(x.shape[0])
        return bug(x)

    with pytest.raises((RuntimeError, TypeError)), recording() as failures:
        dynamics_view(from_log_prob(log_prob, dim=2))._log_prob(indexed(64))
    assert calls == [64] and not failures


class Owner:
    """A stand-in sampler: ``run`` evaluates a model that raises on one row, and nests."""

    def __init__(self, log_prob, private=False):
        self.guarded = dynamics_view(from_log_prob(log_prob, dim=2), score=False)
        self.private = private

    @reports_model_failures
    def run(self, n_nested=0):
        with recording(private=self.private):
            self.guarded._log_prob(indexed(8))
        for _ in range(n_nested):
            self.run()


def test_one_warning_per_outermost_call_with_the_count_and_first_message():
    owner = Owner(refusing({2})[0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        owner.run(n_nested=2)
    assert [w.category for w in caught] == [ModelFailureWarning]
    message = str(caught[0].message)
    assert message.startswith("Owner.run: the model raised at 3 point(s)")
    assert "ValueError: Expected value argument to be within the support" in message


def test_private_records_stay_out_of_the_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Owner(refusing({2})[0], private=True).run()


def test_rows_that_are_not_finite_never_reach_the_model_nor_count_as_its_failures():
    seen = []

    def log_prob(x):
        seen.append(x.clone())
        if bool(x.isnan().any()):
            raise ValueError("validation: NaN is outside the support")
        return -0.5 * (x**2).sum(-1)

    x = indexed(4)
    x[1, 1], x[3, 0] = math.nan, math.inf
    guarded = dynamics_view(from_log_prob(log_prob, dim=2))
    with recording() as failures:
        out, score = guarded._log_prob(x), guarded._grad_log_prob(x)
    assert not failures and all(bool(torch.isfinite(s).all()) for s in seen)
    assert torch.isnan(out[[1, 3]]).all() and torch.isfinite(out[[0, 2]]).all()
    assert torch.isnan(score[[1, 3]]).all() and torch.isfinite(score[[0, 2]]).all()
