"""LogisticRegressionPosterior against a naive numpy oracle; label handling; Ionosphere."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from skcds.datasets import load_ionosphere
from skcds.energies import LogisticRegressionPosterior

F64 = torch.float64


def data(n: int = 30, dim: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, dim))
    return X, (X[:, 0] + rng.normal(size=n) > 0).astype(int)


def naive_log_prob(X, y, w, prior_scale):
    """One weight vector and one data point at a time, in plain floats."""
    out = []
    for weights in w:
        total = 0.0
        for features, label in zip(X, y, strict=True):
            p = 1.0 / (1.0 + math.exp(-float(features @ weights)))
            total += math.log(p if label == 1 else 1.0 - p)
        if prior_scale is not None:
            d = len(weights)
            total += -0.5 * float(weights @ weights) / prior_scale**2
            total += -0.5 * d * math.log(2 * math.pi * prior_scale**2)
        out.append(total)
    return np.array(out)


@pytest.mark.parametrize("prior_scale", [1.0, 2.5, None])
def test_log_prob_matches_naive_oracle(prior_scale):
    X, y = data()
    w = np.random.default_rng(1).normal(size=(5, 4))
    posterior = LogisticRegressionPosterior(X, y, prior_scale=prior_scale)
    out = posterior.log_prob(torch.as_tensor(w)).numpy()
    np.testing.assert_allclose(out, naive_log_prob(X, y, w, prior_scale), rtol=1e-10)


def test_labels_in_zero_one_and_plus_minus_one_agree():
    X, y = data()
    w = torch.randn(3, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
    zero_one = LogisticRegressionPosterior(X, y).log_prob(w)
    signed = LogisticRegressionPosterior(X, 2 * y - 1).log_prob(w)
    boolean = LogisticRegressionPosterior(X, y.astype(bool)).log_prob(w)
    torch.testing.assert_close(zero_one, signed, rtol=0, atol=0)
    torch.testing.assert_close(zero_one, boolean, rtol=0, atol=0)


def test_log_prob_is_stable_for_large_margins():
    X, y = data()
    w = torch.full((1, 4), 1e3, dtype=F64)
    assert torch.isfinite(LogisticRegressionPosterior(X, y, None).log_prob(w)).all()


def test_ionosphere_benchmark_is_35_dimensional():
    try:
        X, y = load_ionosphere()
    except FileNotFoundError as error:
        pytest.skip(f"the shared ionosphere data is absent: {error}")
    posterior = LogisticRegressionPosterior(X, y, prior_scale=None)
    assert posterior.dim == 35
    expected = torch.tensor([351 * math.log(0.5)], dtype=F64)
    torch.testing.assert_close(posterior.log_prob(torch.zeros(1, 35, dtype=F64)), expected)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            dict(y=[0, 1, 2]),
            "'y' must contain labels in {0, 1} or in {-1, 1}; got labels [0.0, 1.0, 2.0].",
        ),
        (
            dict(y=[-1, 0, 1]),
            "'y' must contain labels in {0, 1} or in {-1, 1}; got labels [-1.0, 0.0, 1.0].",
        ),
        (
            dict(y=[0, 1]),
            "'y' must be of shape (3,), one label per row of X; got shape (2,).",
        ),
        (dict(y=[[0, 1, 1]]), "'y' must be a 1-D array; got an array of shape (1, 3)."),
        (dict(prior_scale=0.0), "'prior_scale' must be a finite float > 0; got 0.0."),
        (dict(X=[1.0, 2.0, 3.0]), "'X' must be a 2-D array; got an array of shape (3,)."),
        (
            dict(X=np.zeros((3, 0))),
            "'X' must have at least one row and one column; got (3, 0).",
        ),
    ],
)
def test_invalid_arguments(kwargs, message):
    arguments = dict(X=np.ones((3, 2)), y=[0, 1, 1], prior_scale=1.0) | kwargs
    with pytest.raises(ValueError) as e:
        LogisticRegressionPosterior(**arguments)
    assert str(e.value) == message
