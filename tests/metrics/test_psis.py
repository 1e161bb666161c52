"""Pareto k-hat (PSIS): agreement with ArviZ, recovery of known tail shapes, invariances,
the NaN cases, input validation and the threshold messages."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from skcds.metrics import khat_message, pareto_khat, psis_log_weights
from skcds.metrics._psis import _tail_size


def _lognormal(seed, n, sigma):
    return np.random.default_rng(seed).normal(0.0, sigma, n)


def _pareto(seed, n, k):
    """Log-weights whose weights are exactly Pareto(shape 1/k, scale 1): log W ~ Exp(mean k)."""
    return np.random.default_rng(seed).exponential(k, n)


def _lomax(seed, n, k):
    """Log of Lomax (Pareto II) weights: a Pareto tail of shape 1/k, not Pareto at the bottom."""
    return np.log(np.random.default_rng(seed).pareto(1 / k, n))


WEIGHT_SETS = [
    *[
        (f"lognormal-{s}-{n}", _lognormal(i, n, s))
        for i, s in enumerate((0.5, 1.0, 2.0, 4.0))
        for n in (50, 2000)
    ],
    *[(f"lomax-{k}-{n}", _lomax(3, n, k)) for k in (0.3, 0.8, 1.5) for n in (100, 5000)],
    ("pareto-0.6", _pareto(4, 1000, 0.6)),
    ("ties", np.round(_lognormal(5, 1000, 1.0), 1)),
    ("some-zero-weights", np.where(np.arange(300) < 60, -np.inf, _lognormal(6, 300, 1.0))),
    ("mostly-zero-weights", np.where(np.arange(300) < 250, -np.inf, _lognormal(7, 300, 1.0))),
    ("large-offset", _lognormal(8, 500, 1.0) + 1e4),
]


# --------------------------------------------------------------------------- against ArviZ
@pytest.mark.parametrize("log_w", [w for _, w in WEIGHT_SETS], ids=[i for i, _ in WEIGHT_SETS])
def test_khat_and_smoothed_weights_match_arviz(log_w):
    az = pytest.importorskip("arviz")
    ref_lw, ref_k = az.psislw(log_w.copy(), normalize=False)
    smoothed, k = psis_log_weights(log_w)
    # The same algorithm in float64 with the operations in a slightly different order
    # (softmax-free grid weights, sort then select): measured differences are below 1e-13
    # (ArviZ 0.23), so 1e-9 leaves room for rounding without hiding a real difference.
    assert k == pytest.approx(float(ref_k), abs=1e-9)
    assert pareto_khat(log_w) == k
    if len(np.unique(log_w)) == len(log_w):
        np.testing.assert_allclose(smoothed, ref_lw, rtol=0, atol=1e-9)
    else:  # tied raw weights take the tail's quantiles in an arbitrary order
        np.testing.assert_allclose(np.sort(smoothed), np.sort(ref_lw), rtol=0, atol=1e-9)


def test_arviz_gives_inf_where_we_give_nan():
    az = pytest.importorskip("arviz")
    log_w = _lognormal(0, 20, 1.0)  # a tail of 4 < 5 weights
    assert math.isinf(float(az.psislw(log_w.copy())[1]))
    assert math.isnan(pareto_khat(log_w))


# --------------------------------------------------------------------------- known shapes
@pytest.mark.parametrize("k", [0.3, 0.6, 0.9])
def test_khat_recovers_the_shape_of_pareto_weights(k):
    # exceedances of Pareto(1/k) weights over any threshold are generalized Pareto with
    # shape k exactly; with n = 20000 the fit uses M = 425 weights, sd(k-hat) ~ 0.06-0.08
    assert pareto_khat(_pareto(0, 20000, k)) == pytest.approx(k, abs=0.1)


@pytest.mark.parametrize("k", [0.3, 0.6, 0.9])
def test_khat_is_nearly_unbiased_over_seeds(k):
    # not one lucky seed: the mean of 20 estimates (sd ~0.02) is within 0.05 of k (the prior
    # pulls towards 0.5 by about (k - 0.5) * 10 / 435)
    khats = [pareto_khat(_pareto(seed, 20000, k)) for seed in range(20)]
    assert np.mean(khats) == pytest.approx(k, abs=0.05)


def test_light_and_heavy_tails_are_told_apart():
    assert pareto_khat(_lognormal(0, 4000, 0.3)) < 0.5
    assert pareto_khat(_lomax(0, 4000, 1.2)) > 0.7


# --------------------------------------------------------------------------- invariances
@given(
    st.integers(0, 2**32 - 1),
    st.integers(21, 3000),
    st.floats(0.1, 5.0),
    st.floats(-1e3, 1e3),
)
def test_khat_is_invariant_to_a_constant_shift(seed, n, sigma, shift):
    log_w = _lognormal(seed, n, sigma)
    k, k_shifted = pareto_khat(log_w), pareto_khat(log_w + shift)
    # only the rounding of log_w + shift differs (about 1e-13 relative to |shift|)
    assert k_shifted == pytest.approx(k, abs=1e-6)


@given(st.integers(0, 2**32 - 1), st.integers(21, 3000), st.floats(-1e3, 1e3))
def test_smoothed_weights_shift_with_the_input_and_only_the_tail_changes(seed, n, shift):
    log_w = _lognormal(seed, n, 2.0) + shift
    smoothed, k = psis_log_weights(log_w)
    changed = smoothed != log_w
    assert changed.sum() <= _tail_size(n)
    assert smoothed.max() <= log_w.max()
    # the smoothed tail keeps the order of the raw weights
    idx = np.flatnonzero(changed)
    assert np.all(np.diff(smoothed[idx][np.argsort(log_w[idx])]) >= 0)
    smoothed_0, _ = psis_log_weights(log_w - shift)
    np.testing.assert_allclose(smoothed - shift, smoothed_0, atol=1e-6)


def test_tail_size():
    assert [_tail_size(n) for n in (21, 100, 225, 226, 20000)] == [5, 20, 45, 46, 425]


# --------------------------------------------------------------------------- NaN cases
@pytest.mark.parametrize("n", [21, 100, 10000])
def test_equal_weights_give_nan(n):
    # importance sampling is exact: no tail to fit, documented as NaN
    assert math.isnan(pareto_khat(np.full(n, 3.0)))
    smoothed, k = psis_log_weights(np.full(n, 3.0))
    assert math.isnan(k)
    np.testing.assert_array_equal(smoothed, np.full(n, 3.0))


@pytest.mark.parametrize("n", [1, 2, 10, 20])
def test_too_few_samples_give_nan(n):
    assert math.isnan(pareto_khat(_lognormal(0, n, 1.0)))


def test_all_equal_largest_weights_give_nan():
    log_w = _lognormal(0, 1000, 1.0)
    log_w[:200] = 10.0  # the whole tail (M = 95) is one value
    assert math.isnan(pareto_khat(log_w))


def test_a_single_positive_weight_gives_nan():
    log_w = np.full(100, -np.inf)
    log_w[0] = 0.0
    assert math.isnan(pareto_khat(log_w))


# --------------------------------------------------------------------------- input types
def test_torch_input_gives_the_same_khat_and_a_tensor_back():
    log_w = _lognormal(1, 500, 1.5)
    smoothed, k = psis_log_weights(torch.from_numpy(log_w).to(torch.float32))
    assert isinstance(smoothed, torch.Tensor) and smoothed.dtype == torch.float64
    assert k == pytest.approx(pareto_khat(log_w.astype(np.float32)), abs=1e-12)
    assert isinstance(pareto_khat(torch.from_numpy(log_w)), float)


@pytest.mark.parametrize(
    "log_w, message",
    [
        (np.zeros((5, 2)), "'log_w' must be of shape (n_samples,); got shape (5, 2)."),
        (np.zeros(0), "'log_w' must contain at least 1 log-weight(s); got 0."),
        (
            np.array([0.0, np.nan, 1.0]),
            "'log_w' contains 1 NaN value(s); log-weights may be -inf (a zero weight) but not "
            "NaN or +inf.",
        ),
        (
            np.array([0.0, np.inf]),
            "'log_w' contains 1 +inf value(s); log-weights may be -inf (a zero weight) but not "
            "NaN or +inf.",
        ),
        (np.full(3, -np.inf), "'log_w' has no positive weight: all log-weights are -inf."),
    ],
)
@pytest.mark.parametrize("func", [pareto_khat, psis_log_weights])
def test_bad_log_weights_raise(func, log_w, message):
    with pytest.raises(ValueError) as excinfo:
        func(log_w)
    assert str(excinfo.value) == message


def test_lists_are_refused():
    with pytest.raises(TypeError, match="'log_w' must be a numpy array or a torch tensor"):
        pareto_khat([0.0, 1.0])


# --------------------------------------------------------------------------- messages
@pytest.mark.parametrize(
    "n, threshold", [(10, 0.0), (100, 0.5), (1000, 2 / 3), (2154, 1 - 1 / math.log10(2154))]
)
def test_threshold_follows_the_sample_size(n, threshold):
    assert khat_message(0.1, n)[0] == pytest.approx(threshold)
    assert khat_message(0.1, 2155)[0] == 0.7
    assert khat_message(0.1, 10**6)[0] == 0.7


@pytest.mark.parametrize(
    "khat, n, start",
    [
        (0.2, 4000, "Pareto k-hat = 0.2 <= 0.5: good"),
        (0.6, 4000, "Pareto k-hat = 0.6 <= 0.7: usable"),
        (0.6, 100, "Pareto k-hat = 0.6 > 0.5, the threshold for n = 100: importance-sampling"),
        (0.45, 50, "Pareto k-hat = 0.45 > 0.411, the threshold for n = 50"),
        (0.8, 4000, "Pareto k-hat = 0.8 > 0.7: unreliable; importance-sampling estimates"),
        (math.nan, 4000, "Pareto k-hat could not be estimated"),
    ],
)
def test_messages(khat, n, start):
    assert khat_message(khat, n)[1].startswith(start)


def test_message_for_khat_above_one_mentions_the_mean():
    assert "mean of the weights may not exist" in khat_message(1.3, 4000)[1]
    assert "may not exist" not in khat_message(0.9, 4000)[1]


def test_message_needs_two_samples():
    with pytest.raises(ValueError, match="'n' must be at least 2; got 1."):
        khat_message(0.3, 1)
