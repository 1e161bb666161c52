import math

import pytest
import torch
from scipy import integrate

from skcds._core.reference import REFERENCES, get_reference


@pytest.fixture(params=["vp", "ou"])  # the VP-schedule family (DIS and DDS)
def process(request):
    return get_reference(request.param)


def test_integral_beta_matches_quadrature(process):
    s, t = 0.13, 0.77
    f64 = lambda r: torch.tensor(r, dtype=torch.float64)  # noqa: E731
    quad, _ = integrate.quad(lambda r: float(process.beta(f64(r))), s, t)
    exact = process.integral_beta(f64(s), f64(t))
    assert float(exact) == pytest.approx(quad, rel=1e-10)


def test_vp_schedule_ends():
    process = get_reference("vp")
    assert float(process.beta(torch.tensor(0.0))) == pytest.approx(10.0, rel=1e-6)
    assert float(process.beta(torch.tensor(1.0))) == pytest.approx(0.1, rel=1e-5)
    assert process.truncation_radius == pytest.approx(3.8906, abs=1e-4)


def test_marginal_matches_monte_carlo_of_the_noising_sde(process, generator):
    """Simulate the noising SDE from a point mass at x=2 (fine Euler–Maruyama) and compare."""
    t_stop, n, steps = 0.6, 20_000, 400
    x = torch.full((n,), 2.0, dtype=torch.float64)
    ts = torch.linspace(process.terminal_time, t_stop, steps + 1, dtype=torch.float64)
    for a, b in zip(ts[:-1], ts[1:], strict=True):  # noising runs backwards in generative time
        dt = a - b
        beta = process.beta(a)
        x = (
            x
            - 0.5 * beta * x * dt
            + (beta * dt).sqrt() * torch.randn(n, generator=generator, dtype=torch.float64)
        )
    alpha, var = process.marginal(torch.tensor(t_stop, dtype=torch.float64))
    assert float(x.mean()) == pytest.approx(2 * float(alpha), abs=4 * math.sqrt(var / n) + 5e-3)
    assert float(x.var()) == pytest.approx(float(var), rel=0.05)


def test_prior_sample_is_truncated_and_deterministic(process):
    draw = lambda: process.prior_sample(  # noqa: E731
        5000, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float32, device="cpu"
    )
    x = draw()
    assert x.shape == (5000, 3)
    assert float(x.abs().max()) <= process.truncation_radius
    torch.testing.assert_close(x, draw())
    assert float(x.std()) == pytest.approx(1.0, abs=0.05)


def test_prior_log_prob_is_the_truncated_standard_normal(process):
    x = torch.tensor([[0.0, 0.0], [1.0, -2.0]])
    truncation = 2 * math.log1p(-process.truncation)
    expected = torch.tensor([-math.log(2 * math.pi), -2.5 - math.log(2 * math.pi)]) - truncation
    torch.testing.assert_close(process.prior_log_prob(x), expected)


def test_prior_density_integrates_to_one_on_its_support(process):
    c = process.truncation_radius
    x = torch.linspace(-c, c, 200_001, dtype=torch.float64)[:, None]
    mass = torch.trapezoid(process.prior_log_prob(x).exp(), x[:, 0])
    assert float(mass) == pytest.approx(1.0, abs=1e-9)


def test_unknown_reference_lists_options():
    with pytest.raises(ValueError) as error:
        get_reference("vpp")
    assert str(error.value) == ("'reference' must be one of ['brownian', 'ou', 'vp']; got 'vpp'.")


def test_every_reference_declares_its_control_and_flow():
    for name in REFERENCES:
        process = get_reference(name)
        assert process.langevin in ("lerp", "score")
        assert process.has_flow == (name == "vp")


def test_ou_reference_is_the_stationary_process():
    """DDS's generative drift pulls towards 0: N(0, I) is invariant under its Euler steps
    to first order (mean 0, variance 1 kept over the whole horizon)."""
    ou, g = get_reference("ou"), torch.Generator().manual_seed(0)
    x = torch.randn(40_000, 2, generator=g, dtype=torch.float64)
    ts = torch.linspace(0, 1, 2001, dtype=torch.float64)
    for a, b in zip(ts[:-1], ts[1:], strict=True):
        noise = torch.randn(x.shape, generator=g, dtype=torch.float64)
        x = x + ou.drift(a, x) * (b - a) + ou.diffusion(a) * (b - a).sqrt() * noise
    assert float(x.var()) == pytest.approx(1.0, abs=0.03)
    assert float(x.mean().abs()) < 0.02


def test_brownian_reference_is_pis():
    bm = get_reference("brownian")
    assert (bm.sigma, bm.terminal_time) == (pytest.approx(math.sqrt(0.2)), 5.0)
    x0 = bm.prior_sample(4, 3, generator=None, dtype=torch.float64, device="cpu")
    assert torch.count_nonzero(x0) == 0 and torch.count_nonzero(bm.prior_log_prob(x0)) == 0
    x = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(x).sum(-1)  # sigma^2 T = 1
    torch.testing.assert_close(bm.terminal_log_prob(x), expected)
