import math

import pytest
import torch

from skcds._core.losses import LOSSES, get_loss


@pytest.fixture(params=sorted(LOSSES))
def loss(request):
    return LOSSES[request.param]


def test_scalar_finite_with_gradient(loss):
    log_w = torch.randn(64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    value, masked = loss(log_w)
    assert value.shape == () and math.isfinite(float(value.detach())) and int(masked) == 0
    value.backward()
    assert bool(torch.isfinite(log_w.grad).all())


def test_non_finite_and_huge_entries_are_masked(loss):
    clean = torch.tensor([0.1, -0.3, 0.7, 0.2])
    dirty = torch.cat([clean, torch.tensor([math.nan, math.inf, -math.inf, 1e9])])
    value, masked = loss(dirty)
    torch.testing.assert_close(value, loss(clean)[0])
    assert int(masked) == 4


def test_log_variance_is_zero_at_the_optimum_and_shift_invariant():
    constant = torch.full((10,), 3.5)
    assert float(LOSSES["log_variance"](constant)[0]) == 0.0
    log_w = torch.randn(10, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(
        LOSSES["log_variance"](log_w + 7)[0], LOSSES["log_variance"](log_w)[0]
    )


def test_kl_is_minus_the_mean_log_weight():
    assert float(LOSSES["kl"](torch.tensor([1.0, 3.0]))[0]) == -2.0


def test_unknown_loss_lists_options():
    with pytest.raises(ValueError) as error:
        get_loss("lv")
    assert str(error.value) == "'loss' must be one of ['kl', 'log_variance']; got 'lv'."
