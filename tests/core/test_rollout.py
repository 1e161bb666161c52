import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from skcds._core.flow import euler_flow as probability_flow
from skcds._core.grids import uniform_grid
from skcds._core.networks import ControlNet
from skcds._core.reference import get_reference
from skcds._core.rollout import euler_maruyama, training_log_rnd
from skcds.energies import from_log_prob

from ._controls import StationaryControl, ZeroControl


def standard_normal_log_prob(x):
    return -0.5 * (x**2).sum(-1) - 0.5 * x.shape[-1] * math.log(2 * math.pi)


GAUSS = from_log_prob(standard_normal_log_prob, dim=3)
VP = get_reference("vp")


def _roll(control, n_steps=32, n=64, seed=0, dtype=torch.float64, **kwargs):
    g = torch.Generator().manual_seed(seed)
    times = uniform_grid(n_steps, 1.0, dtype=dtype)
    x0 = VP.prior_sample(n, 3, generator=g, dtype=dtype, device="cpu")
    return euler_maruyama(control, VP, GAUSS, times, x0, generator=g, **kwargs), times


def test_zero_control_log_rnd_matches_transition_densities():
    """Oracle: the path log-ratio from torch.distributions on the recorded trajectory."""
    roll, times = _roll(ZeroControl())
    normal = torch.distributions.Normal
    expected = VP.prior_log_prob(roll.xs[0])
    for k in range(times.shape[0] - 1):
        t, t_next, dt = times[k], times[k + 1], times[k + 1] - times[k]
        x, x_next = roll.xs[k], roll.xs[k + 1]
        forward = normal(x + 0.5 * VP.beta(t) * x * dt, (VP.beta(t) * dt).sqrt())
        a = torch.exp(-0.5 * VP.integral_beta(t, t_next))  # exact OU transition
        backward = normal(a * x_next, (1 - a**2).sqrt())
        expected = expected + forward.log_prob(x_next).sum(-1) - backward.log_prob(x).sum(-1)
    torch.testing.assert_close(roll.log_rnd, expected)


def test_importance_weights_are_exact_at_every_grid():
    """E_q[w] = Z = 1 for a normalised target whatever N and the control: the discrete-time
    weights are exact, so the ELBO stays below log Z and the IS estimate of Z is unbiased."""
    net = ControlNet(3, generator=torch.Generator().manual_seed(0)).double()
    for n_steps in (2, 8):
        with torch.no_grad():
            roll, _ = _roll(net, n_steps=n_steps, n=40_000, record=False)
        w = roll.log_weights.exp()
        stderr = float(w.std()) / math.sqrt(w.shape[0])
        assert abs(float(w.mean()) - 1.0) < 4 * stderr, (n_steps, float(w.mean()), stderr)
        assert float(roll.log_weights.mean()) < 0.0


@pytest.mark.parametrize("name", ["ou", "brownian"])
def test_baseline_references_give_exact_weights(name):
    """DDS and PIS: E_q[w] = Z = 1 for a normalised target whatever N and the control (here
    a random score-type network), and the ELBO stays below log Z."""
    process = get_reference(name)
    net = ControlNet(3, langevin="score", generator=torch.Generator().manual_seed(0)).double()
    with torch.no_grad():
        net.scale_net.layers[-1].bias.fill_(0.3)  # a control far from optimal
    g = torch.Generator().manual_seed(1)
    for n_steps in (2, 8):
        times = uniform_grid(n_steps, process.terminal_time, dtype=torch.float64)
        x0 = process.prior_sample(40_000, 3, generator=g, dtype=torch.float64, device="cpu")
        with torch.no_grad():
            roll = euler_maruyama(net, process, GAUSS, times, x0, generator=g, record=False)
        w = roll.log_weights.exp()
        stderr = float(w.std()) / math.sqrt(w.shape[0])
        assert abs(float(w.mean()) - 1.0) < 4 * stderr + 1e-3, (n_steps, float(w.mean()), stderr)
        assert float(roll.log_weights.mean()) < 0.0


def test_pis_zero_control_on_its_own_terminal_law_has_zero_log_weights():
    """Uncontrolled PIS ends in N(0, sigma^2 T I); that target makes every weight exactly 1."""
    bm = get_reference("brownian")
    target = from_log_prob(standard_normal_log_prob, dim=3)  # sigma^2 T = 0.2 * 5 = 1
    times = uniform_grid(16, bm.terminal_time, dtype=torch.float64)
    x0 = bm.prior_sample(64, 3, generator=None, dtype=torch.float64, device="cpu")
    roll = euler_maruyama(ZeroControl(), bm, target, times, x0, generator=torch.Generator())
    torch.testing.assert_close(roll.log_weights, torch.zeros(64, dtype=torch.float64))


def test_dds_zero_control_log_rnd_matches_transition_densities():
    """Oracle for DDS: forward Euler steps of the OU process against its exact kernels."""
    ou = get_reference("ou")
    g = torch.Generator().manual_seed(0)
    times = uniform_grid(16, 1.0, dtype=torch.float64)
    x0 = ou.prior_sample(64, 3, generator=g, dtype=torch.float64, device="cpu")
    roll = euler_maruyama(ZeroControl(), ou, GAUSS, times, x0, generator=g)
    normal = torch.distributions.Normal
    expected = ou.prior_log_prob(roll.xs[0])
    for k in range(16):
        t, t_next, dt = times[k], times[k + 1], times[k + 1] - times[k]
        x, x_next = roll.xs[k], roll.xs[k + 1]
        forward = normal(x - 0.5 * ou.beta(t) * x * dt, (ou.beta(t) * dt).sqrt())
        a = torch.exp(-0.5 * ou.integral_beta(t, t_next))
        backward = normal(a * x_next, (1 - a**2).sqrt())
        expected = expected + forward.log_prob(x_next).sum(-1) - backward.log_prob(x).sum(-1)
    torch.testing.assert_close(roll.log_rnd, expected)


@given(n_steps=st.sampled_from([1, 2, 8, 17]), n=st.integers(1, 20), record=st.booleans())
def test_rollout_shapes(n_steps, n, record):
    net = ControlNet(3, generator=torch.Generator().manual_seed(0)).double()
    roll, _ = _roll(net, n_steps=n_steps, n=n, record=record)
    assert roll.x.shape == (n, 3) and roll.log_rnd.shape == (n,) and roll.log_target.shape == (n,)
    assert bool(torch.isfinite(roll.log_weights).all())
    if record:
        assert roll.xs.shape == roll.scores.shape == (n_steps + 1, n, 3)
        assert roll.controls.shape == roll.noise.shape == (n_steps, n, 3)
        torch.testing.assert_close(roll.xs[-1], roll.x)


@given(seed=st.integers(0, 2**31 - 1), record=st.booleans())
def test_rollout_is_deterministic_under_a_seed(seed, record):
    net = ControlNet(3, generator=torch.Generator().manual_seed(1)).double()
    first, _ = _roll(net, seed=seed, record=record)
    second, _ = _roll(net, seed=seed, record=record)
    torch.testing.assert_close(first.x, second.x, rtol=0, atol=0)
    torch.testing.assert_close(first.log_rnd, second.log_rnd, rtol=0, atol=0)


def test_training_log_rnd_equals_rollout_value_and_has_gradients():
    net = ControlNet(3, generator=torch.Generator().manual_seed(2)).double()
    with torch.no_grad():  # give the zero-initialised output layer some weight
        net.output.weight.normal_(generator=torch.Generator().manual_seed(3))
        roll, times = _roll(net)
    log_rnd = training_log_rnd(net, VP, times, roll)
    torch.testing.assert_close(log_rnd.detach(), roll.log_rnd)
    log_rnd.var().backward()
    assert net.output.weight.grad is not None and float(net.output.weight.grad.abs().sum()) > 0


def test_optimal_control_gives_exact_log_z_with_first_order_bias():
    """Target = prior = N(0, I): the continuous-time optimal control is -sigma x; its log-weights
    concentrate at log Z = 0 as the grid is refined (the Euler–Maruyama bias shrinks ~ 1/N)."""
    errors = []
    for n_steps in (16, 32, 64, 128):
        roll, _ = _roll(StationaryControl(), n_steps=n_steps, n=4000)
        errors.append(abs(float(roll.log_weights.mean())))
    slope = math.log(errors[0] / errors[-1]) / math.log(128 / 16)
    assert errors[-1] < 0.3  # 0.19 measured at N = 128 in 3-D
    assert 0.7 < slope < 1.3, (errors, slope)


def test_probability_flow_of_optimal_control_preserves_the_prior():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(20_000, 3, generator=g, dtype=torch.float64)
    times = uniform_grid(256, 1.0, dtype=torch.float64)
    x = probability_flow(StationaryControl(), VP, GAUSS, times, x0)
    assert float(x.mean()) == pytest.approx(0.0, abs=0.03)
    assert float(x.std()) == pytest.approx(1.0, abs=0.03)


def test_probability_flow_zero_control_is_the_drift_flow():
    """With u = 0 the ODE is dx = beta x / 2 dt; Euler gives prod_k (1 + beta_k dt / 2)."""
    x0 = torch.ones(1, 3, dtype=torch.float64)
    times = uniform_grid(8, 1.0, dtype=torch.float64)
    x = probability_flow(ZeroControl(), VP, GAUSS, times, x0)
    factor = torch.prod(1 + 0.5 * VP.beta(times[:-1]) * (times[1:] - times[:-1]))
    torch.testing.assert_close(x, x0 * factor)


def test_kl_rollout_is_differentiable_end_to_end():
    net = ControlNet(3, generator=torch.Generator().manual_seed(2)).double()
    roll, _ = _roll(net, record=False)
    roll.log_weights.mean().backward()
    assert net.scale_net.layers[-1].bias.grad is not None


def test_autograd_score_stays_differentiable_for_the_kl_loss():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    score = GAUSS._grad_log_prob(x)  # = -x for the standard normal
    (hessian_row,) = torch.autograd.grad(score[:, 0].sum(), x)
    expected = torch.zeros(4, 3, dtype=torch.float64)
    expected[:, 0] = -1.0
    torch.testing.assert_close(hessian_row, expected)


def _nan_beyond_one(x):
    """A standard normal whose value and score are NaN where x_0 > 1 (sqrt of a negative)."""
    return standard_normal_log_prob(x) + 0.0 * torch.sqrt(1.0 - x[:, 0])


def _variance_gradient(net, x0, noise, times):
    from skcds._core.losses import log_variance

    energy = from_log_prob(_nan_beyond_one, dim=3)
    with torch.no_grad():
        roll = euler_maruyama(net, VP, energy, times, x0, noise)
    loss, n_masked = log_variance(roll.log_target - training_log_rnd(net, VP, times, roll))
    net.zero_grad(set_to_none=True)
    loss.backward()
    return (
        roll,
        int(n_masked),
        {k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None},
    )


def test_trajectories_that_meet_nan_are_dropped_without_poisoning_the_gradient():
    """A trajectory entering a NaN region ends: NaN sample and log-weight, finite recorded
    states; the loss gradient is exactly that of the surviving trajectories alone."""
    net = ControlNet(3, generator=torch.Generator().manual_seed(2)).double()
    g = torch.Generator().manual_seed(0)
    times = uniform_grid(16, 1.0, dtype=torch.float64)
    x0 = VP.prior_sample(64, 3, generator=g, dtype=torch.float64, device="cpu")
    noise = torch.randn(16, 64, 3, generator=g, dtype=torch.float64)

    roll, n_masked, grads = _variance_gradient(net, x0, noise, times)
    dead = torch.isnan(roll.log_weights)
    assert 0 < n_masked == int(dead.sum()) < 64
    assert torch.isnan(roll.x[dead]).all() and torch.isfinite(roll.x[~dead]).all()
    assert all(torch.isfinite(t).all() for t in (roll.xs, roll.scores, roll.controls))

    _, n_alone, alone = _variance_gradient(net, x0[~dead], noise[:, ~dead], times)
    assert n_alone == 0 and grads.keys() == alone.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], alone[name])


def test_kl_gradient_stays_finite_when_some_trajectories_meet_nan():
    net = ControlNet(3, generator=torch.Generator().manual_seed(2)).double()
    g = torch.Generator().manual_seed(0)
    times = uniform_grid(16, 1.0, dtype=torch.float64)
    x0 = VP.prior_sample(64, 3, generator=g, dtype=torch.float64, device="cpu")
    energy = from_log_prob(_nan_beyond_one, dim=3)
    roll = euler_maruyama(net, VP, energy, times, x0, generator=g, record=False)
    log_w = roll.log_weights
    assert 0 < int(torch.isnan(log_w).sum()) < 64
    from skcds._core.losses import kl

    loss, _ = kl(log_w)
    loss.backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(grad).all() for grad in grads)
