import math

import torch

from skcds._core.networks import ControlNet
from skcds._core.training import (
    EMA,
    apply_clip_schedule,
    make_optimizer,
    make_scheduler,
    optimizer_step,
)


def _setup():
    net = ControlNet(2, generator=torch.Generator().manual_seed(0))
    opt = make_optimizer(net.parameters(), 1e-2)
    return net, opt, make_scheduler(opt, max_iter=1000)


def test_non_finite_loss_is_skipped_without_touching_parameters():
    net, opt, sched = _setup()
    before = [p.detach().clone() for p in net.parameters()]
    loss = net.scale_net.layers[-1].bias.sum() * math.nan
    grad_norm, skipped = optimizer_step(loss, list(net.parameters()), opt, sched)
    assert skipped
    for a, b in zip(before, net.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_finite_step_updates_and_clips_the_gradient():
    net, opt, sched = _setup()
    loss = 1e6 * net.scale_net.layers[-1].bias.sum()
    grad_norm, skipped = optimizer_step(loss, list(net.parameters()), opt, sched)
    assert not skipped and grad_norm > 1.0
    total = torch.sqrt(sum((p.grad**2).sum() for p in net.parameters() if p.grad is not None))
    assert float(total) <= 1.0 + 1e-5


def test_learning_rate_decays_to_two_percent():
    _, opt, sched = _setup()
    for _ in range(1000):
        opt.step(), sched.step()
    assert math.isclose(opt.param_groups[0]["lr"], 1e-2 * 0.02, rel_tol=1e-6)


def test_clip_schedule():
    net, _, _ = _setup()
    for iteration, value in [(0, 10.0), (199, 10.0), (200, 50.0), (400, 250.0), (10_000, 250.0)]:
        apply_clip_schedule(net, iteration)
        assert float(net.clip_model) == float(net.clip_score) == value


def test_ema_first_update_copies_then_averages():
    net, _, _ = _setup()
    ema = EMA(net)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    ema.update(net)  # decay 0 at the first update: a copy
    for a, b in zip(ema.module.parameters(), net.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    with torch.no_grad():
        net.clip_model.fill_(50.0)
        for p in net.parameters():
            p.add_(1.0)
    ema.update(net)
    decay = 1 - 2.0**-0.9
    for a, b in zip(ema.module.parameters(), net.parameters(), strict=True):
        torch.testing.assert_close(a, b - decay)
    assert float(ema.module.clip_model) == 50.0
