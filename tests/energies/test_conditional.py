"""Families of densities over a context: :class:`ConditionalEnergy`, the context domains
and ``from_log_prob(..., context=...)`` (issue 28)."""

import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from skcds.energies import (
    Box,
    ConditionalEnergy,
    ContextSampler,
    Energy,
    FiniteSet,
    from_energy,
    from_log_prob,
)
from skcds.exceptions import EnergyError


def scaled(x, c):
    """``log rho(x | c) = -c |x|^2 / 2`` (module-level: pickles)."""
    return -0.5 * c[:, 0] * (x * x).sum(-1)


def draw_pairs(n, generator):
    """A user's context sampler: two coordinates in [0, 1)."""
    return torch.rand(n, 2, generator=generator, dtype=torch.float64)


FAMILY = from_log_prob(scaled, dim=3, context=Box(0.5, 2.0))


def test_a_wrapped_family_is_a_conditional_energy_and_its_members_are_energies():
    assert isinstance(FAMILY, ConditionalEnergy) and FAMILY.context_dim == 1
    x = torch.ones(4, 3, dtype=torch.float64)
    np.testing.assert_allclose(FAMILY.log_prob(x, 2.0), -3.0)
    np.testing.assert_allclose(
        FAMILY.log_prob(x, [[0.5], [1.0], [1.5], [2.0]]), [-0.75, -1.5, -2.25, -3.0]
    )
    member = FAMILY.at(1.0)
    assert isinstance(member, Energy) and not isinstance(member, ConditionalEnergy)
    np.testing.assert_allclose(member.log_prob(x), -1.5)
    np.testing.assert_allclose(member.grad_log_prob(x), -x)
    np.testing.assert_allclose(FAMILY.grad_log_prob(x, 2.0), -2 * x)
    np.testing.assert_allclose(
        from_energy(lambda x, c: -scaled(x, c), 3, context=Box(0.5, 2)).log_prob(x, 2.0), -3.0
    )
    assert member.log_normalizer is None and not member.can_sample


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_one_context_per_row_equals_each_member(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    c = FAMILY.context.sample(n, g, torch.float64, "cpu")
    rows = FAMILY.log_prob(x, c)
    each = torch.cat([FAMILY.at(c[i]).log_prob(x[i : i + 1]) for i in range(n)])
    np.testing.assert_allclose(rows, each)


def test_a_family_needs_its_context():
    x = torch.ones(2, 3)
    with pytest.raises(ValueError, match="'context' is required"):
        FAMILY.log_prob(x)
    with pytest.raises(EnergyError, match="log_prob\\(x, context\\)"):
        FAMILY._log_prob(x)
    with pytest.raises(ValueError, match=r"box \[\[0.5\], \[2. *\]\]; got 1 row"):
        FAMILY.log_prob(x, [[1.0], [3.0]])
    with pytest.raises(ValueError, match=r"shape \(2, 1\)\); got shape \(3, 1\)"):
        FAMILY.log_prob(x, [[1.0], [1.0], [1.0]])
    with pytest.raises(RuntimeError, match="3 contexts for a batch of 2 rows"):
        FAMILY.at(torch.ones(3, 1))._log_prob(x)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: from_log_prob(scaled, 2, context=(0.0, 1.0)), TypeError, "context domain"),
        (
            lambda: from_log_prob(scaled, 2, backend="numpy", context=Box(0, 1)),
            ValueError,
            "backend='torch'",
        ),
        (lambda: from_log_prob(scaled, 0, context=Box(0, 1)), ValueError, "'dim'"),
        (lambda: from_log_prob(3, 2, context=Box(0, 1)), TypeError, "'fn' must be callable"),
        (lambda: Box(1.0, 0.0), ValueError, "'low' must be below 'high'"),
        (lambda: Box([0, 0], [1]), ValueError, "one shape"),
        (lambda: Box(0, np.inf), ValueError, "finite"),
        (lambda: FiniteSet([]), ValueError, "non-empty"),
        (lambda: ContextSampler(3), TypeError, "'sample' must be callable"),
        (lambda: ContextSampler(lambda n, g: np.zeros(n - 1)), ValueError, "must return 4096"),
        (lambda: ContextSampler(lambda n, g: np.full(n, np.nan)), ValueError, "NaN"),
    ],
)
def test_bad_families_and_domains_get_clear_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_the_wrapped_function_must_return_a_tensor():
    family = from_log_prob(lambda x, c: x.sum(-1).numpy(), 2, context=Box(0, 1))
    with pytest.raises(EnergyError, match="must return a torch.Tensor"):
        family.log_prob(torch.ones(2, 2), 0.5)


def test_domains_draw_check_and_standardise():
    g = torch.Generator().manual_seed(0)
    box = Box([0.0, -1.0], [1.0, 1.0])
    c = box.sample(1000, g, torch.float64, "cpu")
    assert c.shape == (1000, 2) and (c[:, 0] >= 0).all() and (c[:, 1] <= 1).all()
    z = box.standardise(c)
    assert z.abs().max() <= 1 and abs(float(z.mean())) < 0.1
    finite = FiniteSet([0.5, 1.0, 2.0])
    c = finite.sample(300, g, torch.float64, "cpu")
    assert set(c[:, 0].tolist()) == {0.5, 1.0, 2.0}
    finite.check(c, "context")
    with pytest.raises(ValueError, match="one of the 3 values"):
        finite.check(torch.tensor([[0.7]], dtype=torch.float64), "context")
    sampler = ContextSampler(draw_pairs)
    assert sampler.dim == 2
    z = sampler.standardise(
        sampler.sample(4096, torch.Generator().manual_seed(0), torch.float64, "cpu")
    )
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-12)
    assert isinstance(from_log_prob(scaled, 3, context=draw_pairs).context, ContextSampler)


def test_families_pickle():
    family = pickle.loads(pickle.dumps(from_log_prob(scaled, 3, context=FiniteSet([1.0, 2.0]))))
    np.testing.assert_allclose(family.log_prob(torch.ones(1, 3), 2.0), -3.0)
    assert "FiniteSet(2 values" in repr(family)
