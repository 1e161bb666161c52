"""Self-consistency of the step-conditioned flow: the jumps drawn and the loss on them."""

import copy
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from skcds._core.consistency import sample_jumps, self_consistency_loss
from skcds._core.flow import flow_velocity
from skcds._core.grids import uniform_grid
from skcds._core.networks import ControlNet
from skcds._core.reference import get_reference
from skcds.energies import GaussianMixture

from ._controls import _AnalyticControl

F64 = torch.float64
VP = get_reference("vp")
CPU = torch.device("cpu")


@given(
    n_steps=st.sampled_from([2**j for j in range(1, 9)]),
    batch=st.integers(1, 300),
    seed=st.integers(0, 2**31 - 1),
)
def test_jumps_are_aligned_powers_of_two_inside_the_grid(n_steps, batch, seed):
    g = torch.Generator().manual_seed(seed)
    starts, lengths = sample_jumps(n_steps, batch, generator=g, device=CPU)
    assert starts.shape == lengths.shape == (batch,)
    assert starts.dtype == lengths.dtype == torch.int64
    assert bool((lengths >= 2).all() and (lengths <= n_steps).all())
    assert bool(((lengths & (lengths - 1)) == 0).all())  # powers of two
    assert bool((starts >= 0).all() and (starts % lengths == 0).all())
    assert bool((starts + lengths <= n_steps).all())


@pytest.mark.parametrize("n_steps", [2, 8, 256])
def test_every_level_and_start_appears_in_a_large_batch(n_steps):
    g = torch.Generator().manual_seed(0)
    starts, lengths = sample_jumps(n_steps, 20_000, generator=g, device=CPU)
    levels = int(math.log2(n_steps))
    assert sorted(lengths.unique().tolist()) == [2**j for j in range(1, levels + 1)]
    counts = torch.bincount(lengths.log2().long(), minlength=levels + 1)[1:]
    assert float(counts.min()) > 0.8 * 20_000 / levels  # uniform over the levels
    for length in (2, n_steps):  # starts cover every aligned position of a level
        mask = lengths == length
        assert sorted(starts[mask].unique().tolist()) == list(range(0, n_steps, length))


def test_jumps_are_deterministic_under_a_seeded_generator():
    def draw(seed):
        return sample_jumps(64, 500, generator=torch.Generator().manual_seed(seed), device=CPU)

    a, b, c = draw(3), draw(3), draw(4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not (torch.equal(a[0], c[0]) and torch.equal(a[1], c[1]))


class EulerExactControl(_AnalyticControl):
    """Flow velocity ``v(x) = c + S x`` with ``S`` the shear ``(x_0, x_1) -> (0, x_0)`` and
    ``S c = 0``: Euler steps of any size are the exact flow (``S^2 = 0``), so one jump of
    ``2d`` lands exactly where two of ``d`` land. ``u = (2 v - beta x) / sigma``."""

    def __init__(self, c) -> None:
        self.c = torch.as_tensor(c, dtype=F64)

    def control(self, features, x, score):
        shear = torch.stack([torch.zeros_like(x[..., 0]), x[..., 0]], dim=-1)
        v = self.c.to(x) + shear
        sigma = features.sigma
        return (2 * v - sigma**2 * x) / sigma


def batch_of_paths(n_steps=16, n=128, seed=0):
    """States and target scores ``(N + 1, n, 2)`` (any values do for the loss) and jumps."""
    g = torch.Generator().manual_seed(seed)
    energy = GaussianMixture.grid().double()
    xs = 3.0 * torch.randn(n_steps + 1, n, 2, generator=g, dtype=F64)
    scores = energy._grad_log_prob(xs.reshape(-1, 2)).reshape(xs.shape)
    starts, lengths = sample_jumps(n_steps, n, generator=g, device=CPU)
    times = uniform_grid(n_steps, VP.terminal_time, dtype=F64)
    return energy, times, xs, scores, starts, lengths


def step_net(seed=0):
    net = ControlNet(2, step_conditioned=True, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        net.output.weight.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(seed + 1))
    return net.double()


@pytest.mark.parametrize("c", [(0.0, 0.0), (0.0, 1.5), (0.0, -3.0)])
def test_loss_vanishes_for_an_exactly_self_consistent_flow(c):
    energy, times, xs, scores, starts, lengths = batch_of_paths()
    control = EulerExactControl(c)
    loss, _ = self_consistency_loss(control, VP, energy, times, xs, scores, starts, lengths)
    assert float(loss) < 1e-24
    # sanity: this control's flow is not trivial (the states move)
    v = flow_velocity(control, VP, times[3:4], xs[3][None], scores[3][None])
    assert float(v.abs().max()) > 1.0


def test_loss_is_positive_for_a_time_dependent_flow():
    energy, times, xs, scores, starts, lengths = batch_of_paths()
    loss, _ = self_consistency_loss(step_net(), VP, energy, times, xs, scores, starts, lengths)
    assert float(loss.detach()) > 1e-3


def test_gradient_flows_only_through_the_one_jump_student():
    """Reference: the target from a frozen copy of the network, the student from the live one.
    The loss value and every parameter gradient must be those of this reference."""
    energy, times, xs, scores, starts, lengths = batch_of_paths()
    net = step_net()
    loss, _ = self_consistency_loss(net, VP, energy, times, xs, scores, starts, lengths)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in net.named_parameters() if p.grad is not None}
    assert float(grads["output.weight"].abs().sum()) > 0
    assert float(grads["step_embedding.layers.0.weight"].abs().sum()) > 0  # step conditioning
    net.zero_grad(set_to_none=True)

    frozen = copy.deepcopy(net).requires_grad_(False)
    rows = torch.arange(xs.shape[1])
    t, x, score = times[starts], xs[starts, rows], scores[starts, rows]
    jump = lengths.to(F64) * (times[1] - times[0])
    half = 0.5 * jump

    def velocity(control, t, x, score, step):
        return flow_velocity(control, VP, t, x[:, None], score[:, None], step)[:, 0]

    x_half = x + half[:, None] * velocity(frozen, t, x, score, half)
    target = x_half + half[:, None] * velocity(
        frozen, t + half, x_half, energy._grad_log_prob(x_half), half
    )
    student = x + jump[:, None] * velocity(net, t, x, score, jump)
    reference = (target - student).square().mean()
    torch.testing.assert_close(loss.detach(), reference.detach(), rtol=1e-12, atol=0)
    reference.backward()
    for name, p in net.named_parameters():
        if p.grad is None:
            assert name not in grads
        else:
            torch.testing.assert_close(grads[name], p.grad, rtol=1e-10, atol=1e-14)

    # and the reference with gradients through the target too is a different gradient
    net.zero_grad(set_to_none=True)
    x_half = x + half[:, None] * velocity(net, t, x, score, half)
    both = x_half + half[:, None] * velocity(
        net, t + half, x_half, energy._grad_log_prob(x_half.detach()), half
    )
    student = x + jump[:, None] * velocity(net, t, x, score, jump)
    (both - student).square().mean().backward()
    assert not torch.allclose(grads["output.weight"], net.output.weight.grad)


# ---------------------------------------------------------------- distillation (CDDS)


def test_coarse_grid_is_the_reference_codes():
    from skcds._core.consistency import coarse_indices

    assert coarse_indices(128, 18) == [
        0,
        8,
        15,
        23,
        30,
        38,
        45,
        53,
        60,
        68,
        75,
        83,
        90,
        98,
        105,
        113,
        120,
        128,
    ]
    assert coarse_indices(4, 5) == [0, 1, 2, 3, 4] and coarse_indices(8, 2) == [0, 8]
    with pytest.raises(ValueError, match="'n_points' must be in"):
        coarse_indices(4, 6)


@pytest.mark.parametrize("kind", ["l2", "pseudo_huber"])
def test_distillation_loss_vanishes_on_a_consistent_pair_and_trains_the_student_only(kind):
    from skcds._core.consistency import distillation_loss
    from skcds._core.networks import ConsistencyNet

    student = ConsistencyNet(2, generator=torch.Generator().manual_seed(0))
    target = copy.deepcopy(student)
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(1))
    sigma = torch.tensor(0.5)
    zero, _ = distillation_loss(student, target, sigma, x, sigma, x, kind)
    assert float(zero.detach()) == pytest.approx(0.0, abs=1e-9)
    loss, _ = distillation_loss(student, target, sigma, x, torch.tensor(0.0), x + 1.0, kind)
    assert float(loss.detach()) > 0
    loss.backward()
    assert all(p.grad is None for p in target.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())


def test_pseudo_huber_is_quadratic_for_small_and_linear_for_large_errors():
    from skcds._core.consistency import distillation_loss

    identity = lambda sigma, x: x  # noqa: E731
    x, dim = torch.zeros(1, 4, dtype=torch.float64), 4
    c = 0.00054 * math.sqrt(dim)
    s = torch.tensor(0.0)
    small, _ = distillation_loss(identity, identity, s, x, s, x + 1e-5, "pseudo_huber")
    assert float(small) == pytest.approx((4e-10 / (2 * c)) / dim, rel=1e-3)
    large, _ = distillation_loss(identity, identity, s, x, s, x + 10.0, "pseudo_huber")
    assert float(large) == pytest.approx((20.0 - c) / dim, rel=1e-6)


def _finite_gradients(net) -> bool:
    return all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in net.parameters())


def test_non_finite_paths_are_left_out_of_the_self_consistency_loss():
    """Rows whose state or score is NaN or inf are masked: the loss is that of the other rows,
    and every gradient stays finite (no ``0 * nan``)."""
    energy, times, xs, scores, starts, lengths = batch_of_paths()
    bad = torch.zeros(xs.shape[1], dtype=torch.bool)
    bad[:5], bad[5:9] = True, True
    broken_xs, broken_scores = xs.clone(), scores.clone()
    broken_xs[:, :5] = float("nan")
    broken_scores[:, 5:9] = float("inf")
    net = step_net()
    loss, n_masked = self_consistency_loss(
        net, VP, energy, times, broken_xs, broken_scores, starts, lengths
    )
    loss.backward()
    assert int(n_masked) == 9 and _finite_gradients(net)
    keep = ~bad
    clean, _ = self_consistency_loss(
        step_net(), VP, energy, times, xs[:, keep], scores[:, keep], starts[keep], lengths[keep]
    )
    torch.testing.assert_close(loss.detach(), clean.detach())


@pytest.mark.parametrize("kind", ["l2", "pseudo_huber"])
def test_non_finite_pairs_are_left_out_of_the_distillation_loss(kind):
    from skcds._core.consistency import distillation_loss
    from skcds._core.networks import ConsistencyNet

    student = ConsistencyNet(2, generator=torch.Generator().manual_seed(0))
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(1))
    x_next = x + 0.3
    broken = x_next.clone()
    broken[:4] = float("nan")
    s, s_next = torch.tensor(0.5), torch.tensor(0.2)
    loss, n_masked = distillation_loss(student, student, s, x, s_next, broken, kind)
    loss.backward()
    assert int(n_masked) == 4 and _finite_gradients(student)
    clean, _ = distillation_loss(student, student, s, x[4:], s_next, x_next[4:], kind)
    torch.testing.assert_close(loss.detach(), clean.detach())


# ---------------------------------------------------------------- endpoint and orientation


@pytest.mark.parametrize("c", [(0.0, 0.0), (0.0, 1.5)])
def test_flow_map_loss_vanishes_when_jumps_are_the_fine_flow(c):
    from skcds._core.consistency import flow_map_loss

    energy, times, xs, _, starts, lengths = batch_of_paths()
    args = (EulerExactControl(c), VP, energy, times, xs[0], starts, lengths)
    loss, n_masked = flow_map_loss(*args)
    assert float(loss) < 1e-24 and int(n_masked) == 0


def test_flow_map_loss_regresses_jumps_onto_the_frozen_fine_flow():
    from skcds._core.consistency import fine_flow_states, flow_map_loss

    energy, times, xs, _, starts, lengths = batch_of_paths()
    net = step_net()
    loss, _ = flow_map_loss(net, VP, energy, times, xs[0], starts, lengths)
    assert float(loss.detach()) > 1e-3
    loss.backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    net.zero_grad(set_to_none=True)

    frozen = copy.deepcopy(net).requires_grad_(False)
    states, _ = fine_flow_states(frozen, VP, energy, times, xs[0])
    n_steps, rows = times.shape[0] - 1, torch.arange(xs.shape[1])

    def jump_error(start, length):
        x = states[start, rows]
        t, jump = times[start], length.to(F64) / n_steps
        score = energy._grad_log_prob(x)
        v = flow_velocity(net, VP, t, x[:, None], score[:, None], jump)[:, 0]
        return (states[start + length, rows] - (x + jump[:, None] * v)).square().mean(-1)

    whole = jump_error(torch.zeros_like(starts), torch.full_like(lengths, n_steps))
    reference = torch.cat([whole, jump_error(starts, lengths)]).mean()
    torch.testing.assert_close(loss.detach(), reference.detach(), rtol=1e-12, atol=0)
    reference.backward()
    for name, p in net.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(grads[name], p.grad, rtol=1e-10, atol=1e-14)


class FoldingControl(_AnalyticControl):
    """One jump of length 1 from t = 0 is ``x -> x + (-a x_0 exp(-x_0^2), 0)``: its Jacobian
    determinant ``1 - a exp(-x_0^2) (1 - 2 x_0^2)`` is negative near ``x_0 = 0`` for ``a > 1``
    (the map folds there) and positive everywhere for ``a < 1``."""

    def __init__(self, a: float) -> None:
        self.a = torch.nn.Parameter(torch.tensor(a, dtype=F64))

    def control(self, features, x, score):
        bump = -self.a * x[..., 0] * torch.exp(-x[..., 0].square())
        v = torch.stack([bump, torch.zeros_like(bump)], dim=-1)
        sigma = features.sigma
        return (2 * v - sigma**2 * x) / sigma


def _monotonicity(control, energy, x0, length):
    from skcds._core.consistency import first_jump, monotonicity_penalty

    _, jac = first_jump(control, VP, energy, x0, length)
    return monotonicity_penalty(jac)


def test_monotonicity_penalty_detects_and_unfolds_a_folding_map():
    energy = GaussianMixture.grid().double()
    x0 = torch.randn(512, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    one = torch.tensor(1.0, dtype=F64)
    unfolded, not_monotone = _monotonicity(FoldingControl(0.5), energy, x0, one)
    assert float(unfolded.detach()) == 0.0 and float(not_monotone) == 0.0
    control = FoldingControl(2.0)
    penalty, not_monotone = _monotonicity(control, energy, x0, one)
    assert float(penalty.detach()) > 0.01 and 0.1 < float(not_monotone) < 0.9
    optimizer = torch.optim.SGD([control.a], lr=0.5)
    for _ in range(200):
        optimizer.zero_grad()
        penalty, not_monotone = _monotonicity(control, energy, x0, one)
        if float(penalty.detach()) == 0:
            break
        penalty.backward()
        optimizer.step()
    assert float(not_monotone) == 0.0 and float(control.a.detach()) < 1.0


def test_monotonicity_penalty_sees_a_double_reversal_that_the_determinant_misses():
    """``x -> -x`` in 2-D (a rotation by pi) has ``det J = 1`` everywhere: the fold check's
    sign test passes it, the monotonicity penalty does not."""
    from skcds._core.consistency import first_jump
    from skcds._core.logdet import jacobian_log_abs_det

    energy = GaussianMixture.grid().double()
    x0 = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    one = torch.tensor(1.0, dtype=F64)
    control = ScalingControl(-2.0)  # x -> (1 - 2) x = -x
    _, jac = first_jump(control, VP, energy, x0, one)
    assert jacobian_log_abs_det(jac)[1] == 0.0  # one orientation everywhere
    penalty, not_monotone = _monotonicity(control, energy, x0, one)
    assert float(not_monotone) == 1.0 and float(penalty.detach()) == pytest.approx(1.01)


class ScalingControl(_AnalyticControl):
    """Flow velocity ``v = c x``: one jump of length 1 is ``x -> (1 + c) x``."""

    def __init__(self, c: float) -> None:
        self.c = torch.nn.Parameter(torch.tensor(c, dtype=F64))

    def control(self, features, x, score):
        sigma = features.sigma
        return (2 * self.c * x - sigma**2 * x) / sigma


@pytest.mark.parametrize("c", [-0.5, 0.0, 1.0])
def test_one_step_kl_is_the_analytic_kl_of_a_linear_map(c):
    from skcds._core.consistency import first_jump, one_step_kl
    from skcds.energies import from_log_prob

    s2 = 2.0  # target N(0, 2 I), normalised: KL = d [log(s / a) + a^2 / (2 s^2) - 1 / 2]
    energy = from_log_prob(lambda x: -0.25 * x.square().sum(-1) - math.log(4 * math.pi), 2)
    energy = energy.double()
    g = torch.Generator().manual_seed(0)
    x0 = VP.prior_sample(200_000, 2, generator=g, dtype=F64, device=CPU)
    x1, jac = first_jump(ScalingControl(c), VP, energy, x0, torch.tensor(1.0, dtype=F64))
    sign, log_abs = torch.linalg.slogdet(jac)
    a = 1 + c
    torch.testing.assert_close(x1, a * x0)
    assert bool((sign > 0).all())
    kl = float(one_step_kl(VP, energy, x0, x1, log_abs).detach())
    exact = 2 * (0.5 * math.log(s2) - math.log(a) + a**2 / (2 * s2) - 0.5)
    assert kl == pytest.approx(exact, abs=0.01)


@pytest.mark.parametrize("divergence", ["one_step_kl", "one_step_log_variance"])
def test_one_step_divergence_gradient_moves_the_map_toward_the_target(divergence):
    from skcds._core import consistency
    from skcds._core.consistency import first_jump
    from skcds.energies import from_log_prob

    loss = getattr(consistency, divergence)
    energy = from_log_prob(lambda x: -0.25 * x.square().sum(-1), 2).double()
    control = ScalingControl(-0.5)
    x0 = VP.prior_sample(4096, 2, generator=torch.Generator().manual_seed(1), dtype=F64, device=CPU)
    optimizer = torch.optim.SGD([control.c], lr=0.1)
    for _ in range(300):
        optimizer.zero_grad()
        x1, jac = first_jump(control, VP, energy, x0, torch.tensor(1.0, dtype=F64))
        loss(VP, energy, x0, x1, torch.linalg.slogdet(jac)[1]).backward()
        optimizer.step()
    assert float(1 + control.c.detach()) == pytest.approx(math.sqrt(2.0), abs=0.05)


@pytest.mark.parametrize("c", [math.sqrt(2.0) - 1, -0.5, 1.0])
def test_one_step_log_variance_vanishes_only_for_the_exact_map(c):
    """Unnormalised target N(0, 2 I) (log Z unknown to the loss): the linear map
    ``x1 = sqrt(2) x0`` has constant log-weights, any other scale does not."""
    from skcds._core.consistency import first_jump, one_step_log_variance
    from skcds.energies import from_log_prob

    energy = from_log_prob(lambda x: -0.25 * x.square().sum(-1) + 3.0, 2).double()
    x0 = VP.prior_sample(4096, 2, generator=torch.Generator().manual_seed(2), dtype=F64, device=CPU)
    x1, jac = first_jump(ScalingControl(c), VP, energy, x0, torch.tensor(1.0, dtype=F64))
    value = float(one_step_log_variance(VP, energy, x0, x1, torch.linalg.slogdet(jac)[1]).detach())
    # log w = (1 - a^2 / 2) |x0|^2 / 2 + const, and |x0|^2 ~ chi2(2) has variance 4
    a = 1 + c
    assert value == pytest.approx((1 - a**2 / 2) ** 2 / 4 * 4, rel=0.1, abs=1e-12)


def test_fine_flow_states_are_the_euler_flow_of_the_grid_step_control():
    from skcds._core.consistency import fine_flow_states
    from skcds._core.flow import euler_flow

    energy, times, xs, *_ = batch_of_paths()
    net = step_net()
    states, scores = fine_flow_states(net, VP, energy, times, xs[0])
    assert states.shape == scores.shape == (times.shape[0], *xs[0].shape)
    with torch.no_grad():
        torch.testing.assert_close(states[-1], euler_flow(net, VP, energy, times, xs[0]))
        torch.testing.assert_close(scores[5], energy._grad_log_prob(states[5]))


@pytest.mark.parametrize("index", [0, 1, 3])
def test_sampler_jump_jacobian_is_the_jacobian_of_that_jump(index):
    """Jump ``index`` of the 4-step sampler, against autograd through the whole step (the
    network and the target's score, whose Hessian enters after the first jump)."""
    from skcds._core.consistency import first_jump, sampler_jump, sampler_jump_jacobian

    g = torch.Generator().manual_seed(3)
    net = ControlNet(2, step_conditioned=True, generator=g).double()
    with torch.no_grad():  # away from the zero-control initialisation
        for p in net.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=F64))
    energy = GaussianMixture.grid().double()
    x0 = torch.randn(5, 2, generator=g, dtype=F64)
    length = torch.tensor(0.25, dtype=F64)

    def jump(t, x):  # one jump of the sampler, score recomputed at x (with its graph)
        score = energy._grad_log_prob(x)
        return x + length * flow_velocity(net, VP, t.reshape(1), x[None], score[None], length)[0]

    x, t = x0, torch.zeros((), dtype=F64)
    for _ in range(index):
        x, t = jump(t, x).detach(), t + length
    expected = torch.stack(
        [torch.autograd.functional.jacobian(lambda y: jump(t, y[None])[0], row) for row in x]
    )
    jac = sampler_jump_jacobian(net, VP, energy, x0, length, index)
    torch.testing.assert_close(jac, expected)
    end, jac_again = sampler_jump(net, VP, energy, x0, length, index)
    torch.testing.assert_close(jac_again, jac)
    torch.testing.assert_close(end, jump(t, x))  # where that jump lands
    if index == 0:
        torch.testing.assert_close(jac, first_jump(net, VP, energy, x0, length)[1])
    assert jac.requires_grad and end.requires_grad  # differentiable in the parameters


class LinearInTimeControl(_AnalyticControl):
    """Flow velocity ``v = a x / (1 + a t)``, whose trajectories ``x0 (1 + a t)`` are straight
    lines: Euler jumps of any length are the exact flow, and the volume changes (``det J`` of
    a jump from 0 to ``t`` is ``(1 + a t)^d``)."""

    def __init__(self, a: float) -> None:
        self.a = torch.nn.Parameter(torch.tensor(a, dtype=F64))

    def control(self, features, x, score):
        v = self.a * x / (1 + self.a * features.lerp_weight)  # lerp_weight = t / T, T = 1
        sigma = features.sigma
        return (2 * v - sigma**2 * x) / sigma


@pytest.mark.parametrize("length", [0.5, 0.125])
def test_volume_consistency_is_zero_for_an_exact_flow_and_the_euler_gap_otherwise(length):
    """Zero where one long jump is two short ones (straight trajectories, volume changing);
    for ``v = c x`` it is ``(d [log(1 + 2 h c) - 2 log(1 + h c)])^2``, and only the long jump
    carries a gradient."""
    from skcds._core.consistency import volume_consistency

    energy = GaussianMixture.grid().double()
    x0 = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    h = torch.tensor(length, dtype=F64)
    exact = volume_consistency(LinearInTimeControl(1.5), VP, energy, x0, h)
    assert float(exact.detach()) == pytest.approx(0.0, abs=1e-20)
    control = ScalingControl(0.8)
    value = volume_consistency(control, VP, energy, x0, h)
    gap = 2 * (math.log(1 + 2 * length * 0.8) - 2 * math.log(1 + length * 0.8))
    assert float(value.detach()) == pytest.approx(gap**2, rel=1e-10)
    teacher = ScalingControl(0.8)
    value = volume_consistency(control, VP, energy, x0, h, teacher=teacher)
    value.backward()
    assert control.c.grad is not None and float(control.c.grad) != 0.0
    assert teacher.c.grad is None


def test_favour_long_draws_levels_in_proportion_to_their_index():
    g = torch.Generator().manual_seed(0)
    n_steps, n = 32, 60_000
    starts, lengths = sample_jumps(n_steps, n, generator=g, device=CPU, favour_long=True)
    assert bool((starts % lengths == 0).all() and (starts + lengths <= n_steps).all())
    counts = torch.bincount(lengths.log2().long(), minlength=6)[1:].double() / n
    expected = torch.arange(1, 6, dtype=F64) / 15
    torch.testing.assert_close(counts, expected, atol=0.01, rtol=0)
    plain = sample_jumps(n_steps, n, generator=torch.Generator().manual_seed(0), device=CPU)
    counts = torch.bincount(plain[1].log2().long(), minlength=6)[1:].double() / n
    torch.testing.assert_close(counts, torch.full((5,), 0.2, dtype=F64), atol=0.01, rtol=0)


class PriorScoreControl(_AnalyticControl):
    """``u = -c sigma x``: ``c = 1`` is ``sigma`` times the score of ``N(0, I)``, the law of
    every noised state when the endpoints are ``N(0, I)`` (the VP reference keeps it)."""

    def __init__(self, c: float) -> None:
        self.c = torch.nn.Parameter(torch.tensor(c, dtype=F64))

    def control(self, features, x, score):
        return -self.c * features.sigma * x


def test_endpoint_score_matching_is_minimised_by_the_score_of_the_noised_endpoints():
    """Endpoints ``N(0, I)``: the loss of ``u = -c sigma x`` is ``E[alpha^2]`` at ``c = 1``
    (``||-sqrt(var) alpha x_T + alpha^2 eps||^2`` per coordinate), larger at any other ``c``,
    and its gradient leads ``c`` to 1; non-finite endpoints are left out."""
    from skcds._core.consistency import endpoint_score_matching

    energy = GaussianMixture.grid().double()
    times = uniform_grid(16, VP.terminal_time, dtype=F64)
    g = torch.Generator().manual_seed(0)
    ends = torch.randn(200_000, 2, generator=g, dtype=F64)
    value = endpoint_score_matching(PriorScoreControl(1.0), VP, energy, times, ends, g)
    alpha2 = VP.marginal(times[:-1])[0].square().mean()
    assert float(value.detach()) == pytest.approx(float(alpha2), rel=0.02)
    for c in (0.7, 1.3):
        worse = endpoint_score_matching(PriorScoreControl(c), VP, energy, times, ends, g)
        assert float(worse.detach()) > float(value.detach()) + 0.01
    control = PriorScoreControl(0.5)
    optimizer = torch.optim.SGD([control.c], lr=0.5)
    for _ in range(200):
        optimizer.zero_grad()
        endpoint_score_matching(control, VP, energy, times, ends[:4096], g).backward()
        optimizer.step()
    assert float(control.c.detach()) == pytest.approx(1.0, abs=0.05)
    ends[:10] = float("nan")
    masked = endpoint_score_matching(PriorScoreControl(1.0), VP, energy, times, ends[:4096], g)
    assert math.isfinite(float(masked.detach()))
