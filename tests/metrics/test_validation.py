"""Whole-message tests of the metrics' input validation, parametrized over bad inputs."""

import numpy as np
import pytest
import torch

from skcds.metrics import (
    effective_sample_size,
    estimate_log_normalizer,
    mmd,
    mode_coverage,
    paper_sinkhorn,
    sinkhorn,
    wasserstein,
)

X = np.zeros((4, 2))
NAN = np.array([[0.0, 1.0], [np.nan, 0.0]])

SAMPLE_CASES = [
    (
        (np.zeros(5), X),
        {},
        ValueError,
        "'X' must be of shape (n_samples, n_features); got shape (5,).",
    ),
    (
        (X, np.zeros((4, 3))),
        {},
        ValueError,
        "'Y' must be of shape (n_samples, 2) to match 'X'; got shape (4, 3).",
    ),
    (
        (np.zeros((0, 2)), X),
        {},
        ValueError,
        "'X' must contain at least one sample; got shape (0, 2).",
    ),
    (
        (X, NAN),
        {},
        ValueError,
        "'Y' contains 1 non-finite value(s) (NaN or inf); metrics need finite samples.",
    ),
    (
        ([[0.0, 1.0]], X),
        {},
        TypeError,
        "'X' must be a numpy array or a torch tensor; got list.",
    ),
    (
        (np.zeros((2, 2), dtype=complex), X),
        {},
        TypeError,
        "'X' must be real; got dtype torch.complex128.",
    ),
]


@pytest.mark.parametrize("metric", [sinkhorn, paper_sinkhorn, wasserstein, mmd])
@pytest.mark.parametrize(("args", "kwargs", "error", "message"), SAMPLE_CASES)
def test_sample_metrics_reject_bad_samples(metric, args, kwargs, error, message):
    with pytest.raises(error) as info:
        metric(*args, **kwargs)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: sinkhorn(X, X, 0), ValueError, "'epsilon' must be a real number > 0; got 0."),
        (
            lambda: sinkhorn(X, X, "1e-3"),
            TypeError,
            "'epsilon' must be a real number > 0; got str.",
        ),
        (
            lambda: sinkhorn(X, X, tol=-1.0),
            ValueError,
            "'tol' must be a real number > 0; got -1.0.",
        ),
        (lambda: sinkhorn(X, X, max_iter=0), ValueError, "'max_iter' must be an int >= 1; got 0."),
        (
            lambda: paper_sinkhorn(X, X, max_iter=2.5),
            ValueError,
            "'max_iter' must be an int >= 1; got 2.5.",
        ),
        (
            lambda: paper_sinkhorn(X, np.zeros((3, 2))),
            ValueError,
            "paper_sinkhorn needs as many samples in 'Y' as in 'X' (the reference code rejects "
            "unequal sizes); got 4 and 3. Use sinkhorn for unequal sizes.",
        ),
        (lambda: wasserstein(X, X, p=0.5), ValueError, "'p' must be a real number >= 1; got 0.5."),
        (
            lambda: wasserstein(np.zeros((10_001, 1)), np.zeros((10_000, 1))),
            ValueError,
            "wasserstein builds a dense (10001, 10000) matrix: 100,010,000 entries exceed the "
            "limit of 100,000,000 (about 10,000 samples per set); subsample X and Y.",
        ),
        (
            lambda: sinkhorn(torch.zeros(3, 2), torch.zeros(3, 2, device="meta")),
            ValueError,
            "'X' and 'Y' must be on the same device; got cpu and meta.",
        ),
        (
            lambda: mmd(np.zeros((1, 2)), X),
            ValueError,
            "'X' must contain at least 2 samples for the unbiased MMD; got shape (1, 2).",
        ),
        (
            lambda: mmd(X, X, bandwidth=-1),
            ValueError,
            "'bandwidth' must be a real number > 0; got -1.",
        ),
        (
            lambda: mmd(X, X, bandwidth=[]),
            ValueError,
            "'bandwidth' must be None, a positive float or a non-empty sequence of positive "
            "floats; got an empty sequence.",
        ),
        (
            lambda: mode_coverage(X, np.zeros((3, 5))),
            ValueError,
            "'means' must be of shape (n_modes, 2) to match 'X'; got shape (3, 5).",
        ),
        (
            lambda: mode_coverage(X, X, radius=0.0),
            ValueError,
            "'radius' must be a real number > 0; got 0.0.",
        ),
        (
            lambda: mode_coverage(X, X, min_share=1.5),
            ValueError,
            "'min_share' must be a real number in [0, 1]; got 1.5.",
        ),
    ],
)
def test_parameter_errors(call, error, message):
    with pytest.raises(error) as info:
        call()
    assert str(info.value) == message


@pytest.mark.parametrize("function", [effective_sample_size, estimate_log_normalizer])
@pytest.mark.parametrize(
    ("log_w", "message"),
    [
        (np.zeros((3, 2)), "'log_w' must be of shape (n_samples,); got shape (3, 2)."),
        (
            np.array([0.0, np.nan, 1.0]),
            "'log_w' contains 1 NaN value(s); log-weights may be -inf (a zero weight) but not "
            "NaN or +inf.",
        ),
        (
            np.array([0.0, np.inf, np.inf]),
            "'log_w' contains 2 +inf value(s); log-weights may be -inf (a zero weight) but not "
            "NaN or +inf.",
        ),
        (
            np.full(3, -np.inf),
            "'log_w' has no positive weight: all log-weights are -inf.",
        ),
    ],
)
def test_log_weight_errors(function, log_w, message):
    with pytest.raises(ValueError) as info:
        function(log_w)
    assert str(info.value) == message


def test_log_normalizer_needs_two_weights():
    with pytest.raises(ValueError) as info:
        estimate_log_normalizer(np.zeros(1))
    assert str(info.value) == "'log_w' must contain at least 2 log-weight(s); got 1."


def test_effective_sample_size_of_an_empty_array():
    with pytest.raises(ValueError) as info:
        effective_sample_size(np.zeros(0))
    assert str(info.value) == "'log_w' must contain at least 1 log-weight(s); got 0."
