import pytest
import torch

from skcds._core.networks import ControlNet


def _net(**kwargs):
    return ControlNet(2, generator=torch.Generator().manual_seed(0), **kwargs)


def test_initial_control_is_the_langevin_interpolation():
    net = _net()
    x, score = torch.randn(5, 2, generator=torch.Generator().manual_seed(1)), torch.ones(5, 2)
    t, sigma = torch.tensor(0.25), torch.tensor(2.0)
    expected = sigma * (0.75 * -x + 0.25 * score)
    torch.testing.assert_close(net(t, x, score, sigma), expected)


def test_score_langevin_starts_small():
    net = _net(langevin="score")
    out = net(torch.tensor(0.5), torch.zeros(3, 2), torch.ones(3, 2), torch.tensor(1.0))
    torch.testing.assert_close(out, torch.full((3, 2), 0.01))


def test_clip_bounds_the_langevin_term():
    net = _net()
    big = torch.full((1, 2), 1e6)
    out = net(torch.tensor(1.0), torch.zeros(1, 2), big, torch.tensor(1.0))
    torch.testing.assert_close(out, torch.full((1, 2), 10.0))


def test_initialisation_uses_only_the_given_generator():
    state = torch.random.get_rng_state()
    first, second = _net(), _net()
    assert torch.equal(torch.random.get_rng_state(), state)
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_batched_time_features_match_single_time_calls():
    net = _net(step_conditioned=True)
    with torch.no_grad():
        net.output.weight.normal_(generator=torch.Generator().manual_seed(3))
    t = torch.tensor([0.0, 0.5, 1.0])
    x = torch.randn(3, 4, 2, generator=torch.Generator().manual_seed(4))
    step = torch.tensor(0.25)
    features = net.time_features(t, torch.ones(3), step)
    batched = net.control(features, x, torch.zeros_like(x))
    for k in range(3):
        single = net(t[k], x[k], torch.zeros(4, 2), torch.tensor(1.0), step.reshape(1))
        torch.testing.assert_close(batched[k], single)


def test_step_conditioned_needs_a_step():
    with pytest.raises(ValueError, match="^this control is step-conditioned: 'step' is required.$"):
        _net(step_conditioned=True)(
            torch.tensor(0.0), torch.zeros(1, 2), torch.zeros(1, 2), torch.tensor(1.0)
        )
