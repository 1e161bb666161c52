"""Importance-weight metrics: ESS invariants (hypothesis), log Z estimates with known answers,
standard errors against their closed forms and the Jensen bias of the IS estimate."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from skcds.metrics import LogNormalizerEstimate, effective_sample_size, estimate_log_normalizer

log_weights = arrays(
    np.float64,
    st.integers(1, 60),
    elements=st.floats(-300.0, 300.0) | st.just(-np.inf),
).filter(lambda lw: np.isfinite(lw).any())


def _naive_ess(log_w: np.ndarray) -> float:
    w = np.exp(log_w - log_w.max())
    return w.sum() ** 2 / (len(w) * (w**2).sum())


# --------------------------------------------------------------------------- ESS
@given(log_weights)
def test_ess_lies_in_one_over_n_to_one(log_w):
    ess = effective_sample_size(log_w)
    assert 1.0 / len(log_w) - 1e-12 <= ess <= 1.0


@given(log_weights, st.floats(-1e3, 1e3))
def test_ess_is_invariant_to_a_constant_shift(log_w, shift):
    assert effective_sample_size(log_w + shift) == pytest.approx(
        effective_sample_size(log_w), rel=1e-9
    )


@given(log_weights)
def test_ess_matches_the_naive_formula(log_w):
    assert effective_sample_size(log_w) == pytest.approx(_naive_ess(log_w), rel=1e-9)


@given(st.integers(1, 1000), st.floats(-700.0, 700.0))
def test_ess_of_equal_weights_is_one(n, value):
    assert effective_sample_size(np.full(n, value)) == pytest.approx(1.0, rel=1e-12)


@pytest.mark.parametrize("n", [2, 10, 1000])
def test_ess_of_one_dominant_weight_is_one_over_n(n):
    log_w = np.full(n, -60.0)
    log_w[0] = 0.0
    assert effective_sample_size(log_w) == pytest.approx(1.0 / n, rel=1e-6)


def test_ess_accepts_torch_tensors():
    log_w = torch.randn(50, generator=torch.Generator().manual_seed(0), dtype=torch.float32)
    expected = effective_sample_size(log_w.double().numpy())
    assert effective_sample_size(log_w) == pytest.approx(expected, rel=1e-12)


# --------------------------------------------------------------------------- log Z
def _gaussian_log_weights(seed: int, n: int, log_c: float, mu: float) -> np.ndarray:
    """Proposal N(0, 1), unnormalised target c N(mu, 1): log w = log c + mu x - mu^2 / 2,
    so E[w] = c, Var(w) / c^2 = e^{mu^2} - 1 and E[log w] = log c - mu^2 / 2."""
    x = np.random.default_rng(seed).standard_normal(n)
    return log_c + mu * x - 0.5 * mu**2


def test_proposal_equal_to_the_target_gives_log_c_exactly():
    est = estimate_log_normalizer(_gaussian_log_weights(0, 1000, log_c=2.5, mu=0.0))
    assert est.log_z == pytest.approx(2.5, abs=1e-12)
    assert est.elbo == pytest.approx(2.5, abs=1e-12)
    assert (est.stderr, est.elbo_stderr, est.n_samples) == (0.0, 0.0, 1000)
    assert est.ess == pytest.approx(1.0, rel=1e-12)


def test_estimates_agree_with_the_known_answer(global_random_seed):
    mu, n, log_c = 0.8, 20_000, -3.0
    est = estimate_log_normalizer(_gaussian_log_weights(global_random_seed, n, log_c, mu))
    assert abs(est.log_z - log_c) < 4 * est.stderr
    assert abs(est.elbo - (log_c - 0.5 * mu**2)) < 4 * est.elbo_stderr
    assert est.elbo < est.log_z
    assert est.stderr == pytest.approx(math.sqrt(math.expm1(mu**2) / n), rel=0.15)
    assert est.elbo_stderr == pytest.approx(mu / math.sqrt(n), rel=0.05)
    assert est.ess == pytest.approx(math.exp(-(mu**2)), rel=0.1)


def test_stderr_shrinks_like_one_over_sqrt_n():
    small = estimate_log_normalizer(_gaussian_log_weights(1, 2_000, 0.0, 0.7)).stderr
    large = estimate_log_normalizer(_gaussian_log_weights(2, 32_000, 0.0, 0.7)).stderr
    assert small / large == pytest.approx(4.0, rel=0.15)


def test_importance_sampling_estimate_is_biased_low_for_small_n():
    # Jensen: E[log Z_hat] < log Z; about -Var(w) / (2 n) = -(e - 1) / 20 for mu = 1, n = 10
    log_w = _gaussian_log_weights(3, 10 * 4000, 0.0, 1.0).reshape(4000, 10)
    estimates = np.array([estimate_log_normalizer(row).log_z for row in log_w])
    assert estimates.mean() + 3 * estimates.std() / math.sqrt(len(estimates)) < 0.0


def test_zero_weights_give_a_minus_infinite_elbo():
    est = estimate_log_normalizer(np.array([0.0, 0.0, -np.inf, 0.0]))
    assert est.log_z == pytest.approx(math.log(0.75))
    assert est.elbo == -math.inf and math.isnan(est.elbo_stderr)
    assert est.ess == pytest.approx(0.75)


def test_estimate_accepts_torch_tensors_of_any_float_dtype():
    log_w = _gaussian_log_weights(4, 500, 1.0, 0.5)
    expected = estimate_log_normalizer(log_w)
    assert estimate_log_normalizer(torch.from_numpy(log_w)) == expected


# --------------------------------------------------------------------------- the record
def test_record_repr_is_readable():
    est = LogNormalizerEstimate(
        log_z=-1.23456789, stderr=0.0123, elbo=-1.5, elbo_stderr=0.004, ess=0.8765, n_samples=100
    )
    assert repr(est) == (
        "LogNormalizerEstimate(log_z=-1.23457 ± 0.012, elbo=-1.5 ± 0.004, ess=0.8765, "
        "khat=nan, n_samples=100)"
    )


def test_record_is_frozen():
    est = estimate_log_normalizer(np.zeros(3))
    with pytest.raises(dataclasses.FrozenInstanceError):
        est.log_z = 1.0


def test_the_estimate_carries_psis_khat_and_a_verdict():
    rng = np.random.default_rng(0)
    light = estimate_log_normalizer(rng.normal(0.0, 0.3, 5000))  # lognormal, thin tail
    heavy = estimate_log_normalizer(np.log(rng.pareto(1 / 0.9, 5000) + 1.0))  # shape k = 0.9
    assert light.reliable and light.khat < 0.5 and "good" in light.diagnosis
    assert not heavy.reliable and heavy.khat > 0.7 and "not to be trusted" in heavy.diagnosis
    assert heavy.khat_threshold == 0.7
