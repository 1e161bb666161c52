"""The Euler probability-flow map and its exact density: oracles for ``step_jacobian``,
``euler_flow(log_density=True)`` and the target Hessians that feed them."""

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from skcds import SelfConsistentSampler
from skcds._core.flow import euler_flow, flow_velocity, step_jacobian
from skcds._core.grids import uniform_grid
from skcds._core.networks import ControlNet
from skcds._core.reference import get_reference
from skcds._estimators._validation import make_generator
from skcds.energies import LGCP, Energy, GaussianMixture, ManyWell, from_log_prob
from skcds.exceptions import EnergyError

from ._controls import _AnalyticControl

F64 = torch.float64
VP = get_reference("vp")


def step_net(dim: int, seed: int = 0) -> ControlNet:
    """A float64 step-conditioned ControlNet whose (zero-initialised) output layer is perturbed,
    so that the network part of the control, not only its Langevin term, is nonzero."""
    net = ControlNet(dim, step_conditioned=True, generator=torch.Generator().manual_seed(seed))
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        net.output.weight.normal_(0.0, 0.5, generator=g)
        net.output.bias.normal_(0.0, 0.5, generator=g)
    return net.double()


def brute_force_jacobians(control, energy, t, dt, x, step, *, through_score=True):
    """``d x_{j+1} / d x_j`` sample by sample with ``torch.autograd.functional.jacobian``,
    differentiating through the target score (so through its Hessian) and the network;
    ``through_score=False`` holds the score fixed (the Jacobian without the Hessian term)."""

    def one_step(xi):
        score = energy._grad_log_prob(xi[None])  # differentiable: xi requires grad
        if not through_score:
            score = score.detach()
        v = flow_velocity(control, VP, t.reshape(1), xi[None, None], score[None], step)
        return xi + dt * v[0, 0]

    return torch.stack([torch.autograd.functional.jacobian(one_step, xi) for xi in x])


@pytest.mark.parametrize(
    "energy",
    [GaussianMixture.grid(), ManyWell(dim=3, n_double_wells=2)],
    ids=["gmm-grid", "many-well"],
)
@pytest.mark.parametrize("t", [0.0, 0.375, 0.875])
def test_step_jacobian_matches_brute_force_autograd(energy, t):
    energy = energy.double()
    control = step_net(energy.dim)
    g = torch.Generator().manual_seed(1)
    x = 3.0 * torch.randn(6, energy.dim, generator=g, dtype=F64)
    t, dt = torch.tensor(t, dtype=F64), torch.tensor(0.125, dtype=F64)
    step = dt.reshape(1)
    jac = step_jacobian(control, VP, energy, t, dt, x, step)
    expected = brute_force_jacobians(control, energy, t, dt, x, step)
    assert jac.shape == (6, energy.dim, energy.dim)
    torch.testing.assert_close(jac, expected, rtol=1e-10, atol=1e-10)
    without_hessian = brute_force_jacobians(control, energy, t, dt, x, step, through_score=False)
    gap = float((without_hessian - expected).abs().max())
    if float(t) > 0:  # the target Hessian enters: the oracle is not blind to it
        assert gap > 1e-3
    else:  # at t = 0 the Langevin term weighs the target score by t / T = 0
        assert gap == 0.0


class LinearControl(_AnalyticControl):
    """``u = sigma (a x + b (t / T) score)``: uses the score like the Langevin term of
    ControlNet (weighted by ``t / T``), so the target Hessian enters the Jacobian at t > 0."""

    def __init__(self, a: float, b: float) -> None:
        self.a, self.b = a, b

    def control(self, features, x, score):
        return features.sigma * (self.a * x + self.b * features.lerp_weight * score)


def isotropic_gaussian(scale: float, dim: int) -> Energy:
    def log_prob(x):
        return -0.5 * (x**2).sum(-1) / scale**2 - dim * (
            math.log(scale) + 0.5 * math.log(2 * math.pi)
        )

    return from_log_prob(log_prob, dim=dim)


@given(
    n_steps=st.sampled_from([1, 2, 4, 8]),
    dim=st.sampled_from([1, 2, 5]),
    a=st.sampled_from([0.0, -1.0, 0.5, -2.5]),
    b=st.sampled_from([0.0, 1.0, -0.7]),
    scale=st.sampled_from([0.5, 1.0, 2.0]),
    seed=st.integers(0, 2**16),
)
def test_log_density_of_a_linear_flow_is_the_pushforward_density(n_steps, dim, a, b, scale, seed):
    """With a target N(0, s^2 I) and u = sigma (a x + b (t/T) score), each Euler step is the
    scalar map ``x -> f_j x``, ``f_j = 1 + dt beta_j (1 + a - b (t_j/T) / s^2) / 2``; so
    ``x_k = A x_0`` and ``log q(x_k) = log p_prior(x_k / A) - d log |A|``."""
    control, energy = LinearControl(a, b), isotropic_gaussian(scale, dim)
    times = uniform_grid(n_steps, VP.terminal_time, dtype=F64)
    t, dt = times[:-1], times[1:] - times[:-1]
    factors = 1 + 0.5 * dt * VP.beta(t) * (1 + a - b * (t / VP.terminal_time) / scale**2)
    assume(bool((factors.abs() > 0.05).all()))  # an invertible map (a sign flip is allowed)
    A = torch.prod(factors)
    g = torch.Generator().manual_seed(seed)
    x0 = VP.prior_sample(64, dim, generator=g, dtype=F64, device="cpu")
    x, log_q, reversed_fractions = euler_flow(control, VP, energy, times, x0, log_density=True)
    torch.testing.assert_close(x, A * x0)
    expected = VP.prior_log_prob(x / A) - dim * torch.log(A.abs())
    torch.testing.assert_close(log_q, expected, rtol=1e-10, atol=1e-10)
    assert not any(reversed_fractions)  # a linear map has one orientation everywhere
    assert torch.equal(euler_flow(control, VP, energy, times, x0), x)  # same map without log q


def test_prior_log_prob_is_the_truncated_normal_density():
    """Normalised on its support: a 1-D quadrature of exp(prior_log_prob) over [-c, c] is 1."""
    c = VP.truncation_radius
    grid = torch.linspace(-c, c, 200_001, dtype=F64)[:, None]
    mass = torch.trapezoid(VP.prior_log_prob(grid).exp(), grid[:, 0])
    assert float(mass) == pytest.approx(1.0, abs=1e-9)
    torch.testing.assert_close(
        VP.prior_log_prob(torch.zeros(1, 3, dtype=F64)),
        torch.tensor([-1.5 * math.log(2 * math.pi) - 3 * math.log1p(-VP.truncation)], dtype=F64),
    )


def test_folding_step_is_reported_with_its_reversed_fraction():
    """A step whose Jacobian determinant changes sign across samples is reported as folding,
    with the fraction of samples of the minority orientation."""

    class Fold(_AnalyticControl):  # v = -2 x^2: one step of dt = 1 has Jacobian 1 - 4 x
        def control(self, features, x, score):
            return features.sigma * (-x - x.square() / features.sigma**2 * 4.0)

    energy = isotropic_gaussian(1.0, 1)
    times = uniform_grid(1, 1.0, dtype=F64)
    x0 = torch.tensor([[-1.0], [0.0], [1.0]], dtype=F64)
    _, _, reversed_fractions = euler_flow(Fold(), VP, energy, times, x0, log_density=True)
    assert reversed_fractions == [pytest.approx(1 / 3)]  # x = 1 has 1 - 4x < 0


# ---------------------------------------------------------------- the N-step map itself


@pytest.fixture(scope="module")
def tiny_scds():
    sampler = SelfConsistentSampler(student="jump", n_steps=8, max_iter=5, batch_size=32)
    sampler.set_params(random_state=0)
    return sampler.fit(GaussianMixture.grid())


def hand_euler(control, process, energy, x0, n_steps):
    """The reference loop: ``x += dt (f(t, x) + sigma u(t, x, score, d) / 2)`` on ``[0, T]``
    with the public ``ControlNet.forward`` and ``d = T / n_steps``."""
    times = uniform_grid(n_steps, process.terminal_time, dtype=x0.dtype)
    step = torch.tensor([process.terminal_time / n_steps], dtype=x0.dtype)
    x = x0
    for j in range(n_steps):
        t, dt = times[j], times[j + 1] - times[j]
        sigma = process.diffusion(t)
        u = control(t, x, energy._grad_log_prob(x), sigma, step)
        x = x + dt * (process.drift(t, x) + 0.5 * sigma * u)
    return x


@pytest.mark.parametrize("n_steps", [1, 2, 8])
def test_k_step_sampler_is_k_explicit_euler_steps(tiny_scds, n_steps):
    s = tiny_scds
    x0 = s._prior(50, make_generator(0, s.device_))
    # the sampler's first draw from random_state=0 is this prior sample
    times, step = s._grid(n_steps), s._step_conditioning(n_steps)
    flow = euler_flow(s._sampling_control, s.reference_, s.energy_, times, x0, step)
    with torch.no_grad():
        expected = hand_euler(s._sampling_control, s.reference_, s.energy_, x0, n_steps)
    torch.testing.assert_close(flow, expected)
    sampled = s.sample(50, n_steps=n_steps, random_state=0, return_tensor=True)
    torch.testing.assert_close(sampled, expected)
    # the sampler integrates the EMA weights, and these differ from the online ones
    assert s._ema is not None and s._sampling_control is s._ema.module
    with torch.no_grad():
        online = hand_euler(s.control_, s.reference_, s.energy_, x0, n_steps)
    assert not torch.allclose(online, expected)
    if n_steps > 1:  # the map is not trivially the identity
        assert float((expected - x0).abs().max()) > 0.1


# ---------------------------------------------------------------- Hessians of the targets


def test_default_hessian_of_a_gaussian_is_minus_the_precision():
    g = torch.Generator().manual_seed(0)
    root = torch.randn(3, 3, generator=g, dtype=F64)
    precision = root @ root.T + 0.5 * torch.eye(3, dtype=F64)
    energy = from_log_prob(lambda x: -0.5 * ((x @ precision) * x).sum(-1), dim=3)
    x = torch.randn(5, 3, generator=g, dtype=F64)
    hessian = energy._hessian_log_prob(x)
    torch.testing.assert_close(hessian, -precision.expand(5, 3, 3))
    assert not hessian.requires_grad


def test_default_hessian_matches_torch_func_hessian_on_a_mixture():
    hessian = torch.autograd.functional.hessian
    energy = GaussianMixture.grid().double()
    x = 3.0 * torch.randn(7, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    expected = torch.stack([hessian(lambda xi: energy._log_prob(xi[None])[0], xi) for xi in x])
    torch.testing.assert_close(energy._hessian_log_prob(x), expected)


def test_lgcp_closed_form_hessian_matches_the_autograd_default():
    points = np.random.default_rng(0).uniform(size=(30, 2))
    lgcp = LGCP(points, n_bins=3)  # dim 9
    x = lgcp.prior_mean + torch.randn(4, 9, generator=torch.Generator().manual_seed(0), dtype=F64)
    closed = lgcp._hessian_log_prob(x)
    torch.testing.assert_close(closed, Energy._hessian_log_prob(lgcp, x))
    torch.testing.assert_close(closed, closed.transpose(1, 2))


def _numpy_log_prob(x):
    return -0.5 * (x**2).sum(1)


def test_numpy_energy_has_no_hessian():
    energy = from_log_prob(_numpy_log_prob, dim=2, backend="numpy")
    x = torch.zeros(3, 2, dtype=F64)
    with pytest.raises(EnergyError, match="Hessian"):
        energy._hessian_log_prob(x)
    # the flow needs it after the first step (t > 0), not at t = 0
    times = uniform_grid(2, 1.0, dtype=F64)
    control = LinearControl(-1.0, 1.0)
    with pytest.raises(EnergyError, match="Hessian"):
        euler_flow(control, VP, energy, times, x, log_density=True)
    one_step = euler_flow(control, VP, energy, times[:2], x, log_density=True)
    assert bool(torch.isfinite(one_step[1]).all())


# ---------------------------------------------------------------- the teacher's Heun solver


def _linear_flow_error(flow, n_steps: int) -> float:
    """Error at T of a solver on the zero control's flow ``dx/dt = beta(t) x / 2``, whose
    solution is ``x0 exp(int beta / 2)``."""
    from ._controls import ZeroControl

    x0 = torch.tensor([[1.0, -0.5]], dtype=F64)
    times = uniform_grid(n_steps, 1.0, dtype=F64)
    exact = x0 * math.exp(0.5 * VP.integral_beta(0.0, 1.0))
    energy = GaussianMixture.grid().to(dtype=F64)
    return float((flow(ZeroControl(), VP, energy, times, x0) - exact).abs().max())


def test_heun_is_second_order_and_euler_first_order():
    from skcds._core.flow import heun_flow

    heun = [_linear_flow_error(heun_flow, n) for n in (16, 32, 64)]
    euler = [_linear_flow_error(euler_flow, n) for n in (16, 32, 64)]
    for coarse, fine in zip(heun[:-1], heun[1:], strict=True):
        assert 3.5 < coarse / fine < 4.5
    for coarse, fine in zip(euler[:-1], euler[1:], strict=True):
        assert 1.7 < coarse / fine < 2.3
    assert heun[-1] < euler[-1] / 10
