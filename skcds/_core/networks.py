"""The control network of DIS/SCDS (method.md §2.2, §4.2).

``u(t, x[, d]) = clip_m(MLP(t, x[, d])) + sigma(t) clip_m(s(t)) clip_s(lerp(t, x))`` where
``lerp = (1 - t/T) grad log p_prior(x) + (t/T) grad log rho(x)`` (``langevin='lerp'``, DIS) or
``u = clip_m(MLP) + clip_m(s(t)) clip_s(grad log rho(x))`` (``langevin='score'``, PIS/DDS), or
``u = clip_m(MLP)`` alone (``langevin='none'``: no target score, for gradient-free energies).
Time-only parts (the time embedding and ``s(t)``) are computed once per time point and
broadcast over the batch; that is what makes the batched training pass cheap.

Weights are initialised from an explicit ``torch.Generator`` (``skip_init`` keeps torch's
global RNG untouched), with PyTorch's default uniform bounds; output layers start at zero.

:class:`FlowNet` is the invertible one-step student (issue 27): a zuko coupling flow, whose
exact log-density comes in the same pass as its sample.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

__all__ = ["ConsistencyNet", "ControlNet", "FlowNet", "FourierTimeEmbedding", "TimeFeatures"]


def _linear(n_in: int, n_out: int, generator: torch.Generator | None, zero: bool = False):
    """``nn.Linear`` with PyTorch's default U(-1/sqrt(fan_in), 1/sqrt(fan_in)) init, or zeros."""
    layer = nn.utils.skip_init(nn.Linear, n_in, n_out)
    bound = 0.0 if zero else 1.0 / math.sqrt(n_in)
    with torch.no_grad():
        for p in (layer.weight, layer.bias):
            p.uniform_(-bound, bound, generator=generator) if bound else p.zero_()
    return layer


class FourierTimeEmbedding(nn.Module):
    """``[sin(c t + phi), cos(c t + phi)]`` with fixed ``c = linspace(0.1, 100)`` and learned
    phases ``phi``, then an MLP with GELU activations."""

    def __init__(self, dim_out: int, *, width: int = 64, n_layers: int = 2, generator=None) -> None:
        super().__init__()
        self.register_buffer("frequencies", torch.linspace(0.1, 100.0, width))
        self.phases = nn.Parameter(torch.randn(width, generator=generator))
        sizes = [2 * width] + [width] * (n_layers - 1) + [dim_out]
        self.layers = nn.ModuleList(
            _linear(a, b, generator) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )

    def forward(self, t: Tensor) -> Tensor:  # (m,) -> (m, dim_out)
        angle = t[:, None] * self.frequencies + self.phases
        h = torch.cat([angle.sin(), angle.cos()], dim=-1)
        for i, layer in enumerate(self.layers):
            h = layer(h if i == 0 else nn.functional.gelu(h))
        return h


def _add_trunk(net: nn.Module, dim: int, width: int, generator) -> None:
    """Give ``net`` the layers of the state MLP (see :func:`_trunk`); the output layer is
    zero-initialised."""
    net.state_embedding = _linear(dim, width, generator)
    net.hidden = nn.ModuleList(_linear(width, width, generator) for _ in range(2))
    net.output = _linear(width, dim, generator, zero=True)


def _trunk(net: nn.Module, embedding: Tensor, x: Tensor) -> Tensor:
    """The state MLP shared by :class:`ControlNet` and :class:`ConsistencyNet`:
    ``state_embedding(x) + embedding`` (+ the embedding of the rows' contexts, for a
    conditional control), GELU hidden layers, then the output layer."""
    h = net.state_embedding(x) + embedding
    context = getattr(net, "context", None)
    if context is not None:  # (n, k) or (1, k): broadcast over the time points
        h = h + net.context_embedding(context)
    for layer in net.hidden:
        h = layer(nn.functional.gelu(h))
    return net.output(nn.functional.gelu(h))


def _context_mlp(context_dim: int, width: int, generator) -> nn.Sequential:
    """The embedding of a context: two layers, GELU between."""
    first, second = _linear(context_dim, width, generator), _linear(width, width, generator)
    return nn.Sequential(first, nn.GELU(), second)


def _optional_config(net: nn.Module, **defaults) -> dict:
    """The constructor arguments of ``net`` that differ from their ``defaults`` (absent from
    older pickles), so that a config saved before they existed still rebuilds."""
    values = {name: getattr(net, name, default) for name, default in defaults.items()}
    return {name: value for name, value in values.items() if value != defaults[name]}


class TimeFeatures(NamedTuple):
    """Time-only parts of the control at ``m`` time points, each broadcastable over a batch."""

    embedding: Tensor  # (m, 1, width) time (+ step) embedding of the MLP
    scale: Tensor  # (m, 1, 1) clipped s(t)
    lerp_weight: Tensor  # (m, 1, 1) t / T
    sigma: Tensor  # (m, 1, 1) diffusion coefficient sigma(t)


class ControlNet(nn.Module):
    """The control ``u_theta(t, x[, d])`` of DIS (``LerpCtrl``) and its step-conditioned form.

    Parameters
    ----------
    dim : int
        Dimension of the state.
    width : int, default=64
        Width of the MLP and of the time embeddings.
    langevin : {'lerp', 'score', 'none'}, default='lerp'
        Langevin-style term: interpolation of prior and target scores (DIS), the target score
        alone (PIS/DDS), or none (the control never reads the target score).
    step_conditioned : bool, default=False
        Add an embedding of the step size ``d`` to the MLP input (SCDS).
    terminal_time : float, default=1.0
        ``T``, for the interpolation weight ``t / T``.
    clip : float, default=10.0
        Initial element-wise clamp of the MLP output, ``s(t)`` and the Langevin term; stored as
        buffers so that the training schedule can raise it in place (graph-safe).
    context_dim : int, default=0
        Dimension of a context ``c`` the control is conditioned on (a family of densities,
        :class:`~skcds.energies.ConditionalEnergy`): an MLP embedding of ``c`` is added to
        the state's. The rows' contexts are set, standardised, in the attribute
        ``context`` (``(n, k)``, or ``(1, k)`` for one context) by the sampler around each
        use; ``None`` (no context) otherwise.
    langevin_step : float, optional
        Step-conditioned only: damp the Langevin term of a jump of size ``d`` by
        ``min(1, langevin_step / d)``, so that a jump of any length adds the target score's
        drift of one step of size ``langevin_step`` (the training grid's) and the target's
        Hessian enters its Jacobian no more than in one grid step (a study switch).
        ``None``: undamped.
    generator : torch.Generator, optional
        Source of the initial weights.
    """

    def __init__(
        self,
        dim: int,
        *,
        width: int = 64,
        langevin: str = "lerp",
        step_conditioned: bool = False,
        terminal_time: float = 1.0,
        clip: float = 10.0,
        context_dim: int = 0,
        langevin_step: float | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.dim, self.langevin, self.terminal_time = dim, langevin, terminal_time
        self.context_dim, self.context = context_dim, None
        self.step_conditioned = step_conditioned
        self.langevin_step = langevin_step
        self.register_buffer("clip_model", torch.tensor(clip))
        self.register_buffer("clip_score", torch.tensor(clip))
        g = generator
        self.time_embedding = FourierTimeEmbedding(width, width=width, n_layers=2, generator=g)
        self.step_embedding = (
            FourierTimeEmbedding(width, width=width, n_layers=2, generator=g)
            if step_conditioned
            else None
        )
        _add_trunk(self, dim, width, g)
        self.scale_net = FourierTimeEmbedding(1, width=width, n_layers=4, generator=g)
        with torch.no_grad():  # s(t) starts at 1 (DIS) or 0.01 (PIS/DDS)
            self.scale_net.layers[-1].weight.zero_()
            self.scale_net.layers[-1].bias.fill_(1.0 if langevin == "lerp" else 0.01)
        if context_dim:  # last: an unconditional control's weights stay those of before
            self.context_embedding = _context_mlp(context_dim, width, g)

    @property
    def uses_score(self) -> bool:
        """Whether the control reads the target score (its Langevin-style term)."""
        return self.langevin != "none"

    def config(self) -> dict:
        """The constructor's arguments (weights excluded), to rebuild the architecture."""
        return {
            "dim": self.dim,
            "width": self.state_embedding.out_features,
            "langevin": self.langevin,
            "step_conditioned": self.step_conditioned,
            "terminal_time": self.terminal_time,
        } | _optional_config(self, langevin_step=None, context_dim=0)

    def time_features(self, t: Tensor, sigma: Tensor, step: Tensor | None = None) -> TimeFeatures:
        """Time-only parts at times ``t`` of shape ``(m,)`` (``sigma`` and ``step`` alike)."""
        embedding = self.time_embedding(t)
        if self.step_embedding is not None:
            if step is None:
                raise ValueError("this control is step-conditioned: 'step' is required.")
            embedding = embedding + self.step_embedding(step.expand_as(t))
        scale = self.scale_net(t).clamp(-self.clip_model, self.clip_model)
        if getattr(self, "langevin_step", None) is not None:  # absent from older pickles
            scale = scale * (self.langevin_step / step.expand_as(t)).clamp(max=1.0)[:, None]
        column = (-1, 1, 1)
        return TimeFeatures(
            embedding[:, None, :],
            scale.reshape(column),
            (t / self.terminal_time).reshape(column),
            sigma.expand_as(t).reshape(column),
        )

    def control(self, features: TimeFeatures, x: Tensor, score: Tensor) -> Tensor:
        """``u`` for states ``x`` of shape ``(m, n, d)`` (or ``(n, d)`` with ``m = 1``)."""
        out = _trunk(self, features.embedding, x).clamp(-self.clip_model, self.clip_model)
        if self.langevin == "none":
            return out
        if self.langevin == "lerp":
            w = features.lerp_weight
            guide = ((1 - w) * -x + w * score).clamp(-self.clip_score, self.clip_score)
            return out + features.sigma * features.scale * guide
        return out + features.scale * score.clamp(-self.clip_score, self.clip_score)

    def forward(
        self, t: Tensor, x: Tensor, score: Tensor, sigma: Tensor, step: Tensor | None = None
    ) -> Tensor:
        """``u(t, x)`` at one time ``t`` (0-d tensor), ``x`` and ``score`` of shape ``(n, d)``."""
        features = self.time_features(t.reshape(1), sigma.reshape(1), step)
        return self.control(features, x[None], score[None])[0]


class ConsistencyNet(nn.Module):
    """The consistency function ``f(sigma, x)`` of CDDS (method.md §3.2), ``sigma = T - t``.

    ``f(sigma, x) = c_skip(sigma) x + c_out(sigma) clip(F(sigma, x))`` with the EDM
    coefficients ``c_skip = s^2 / (sigma^2 + s^2)`` and ``c_out = sigma s / sqrt(sigma^2 + s^2)``
    (``s = sigma_data``), so ``f(0, x) = x`` exactly: the boundary condition at the target end.
    ``F`` is the state MLP of :class:`ControlNet` with a Fourier embedding of ``sigma``; it has
    no target-score input, so the Jacobian of ``f`` needs no Hessian of the target.

    Parameters
    ----------
    dim : int
        Dimension of the state.
    width : int, default=64
        Width of the MLP and of the time embedding.
    sigma_data : float, default=0.5
        The EDM data scale of ``c_skip`` and ``c_out``.
    clip : float, default=10.0
        Initial element-wise clamp of ``F``, a buffer that the training schedule raises in
        place (10, then 50 and 250 at iterations 200 and 400), as for :class:`ControlNet`.
        The reference code keeps 10 fixed, which caps the one-step map: with
        ``c_out(T) = 0.447``, ``|f(T, x)| <= 0.2 |x| + 4.47`` per coordinate, so the outer
        modes of the 9-mode GMM (at +-5, scale 0.55) could not be reached.
    generator : torch.Generator, optional
        Source of the initial weights.
    """

    def __init__(
        self,
        dim: int,
        *,
        width: int = 64,
        sigma_data: float = 0.5,
        clip: float = 10.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.dim, self.sigma_data = dim, sigma_data
        self.register_buffer("clip_model", torch.tensor(clip))
        g = generator
        self.time_embedding = FourierTimeEmbedding(width, width=width, n_layers=2, generator=g)
        _add_trunk(self, dim, width, g)

    def config(self) -> dict:
        """The constructor's arguments (weights excluded), to rebuild the architecture."""
        width = self.state_embedding.out_features
        return {"dim": self.dim, "width": width, "sigma_data": self.sigma_data}

    @classmethod
    def from_control(cls, control: ControlNet, **kwargs) -> ConsistencyNet:
        """A consistency network whose MLP starts as a copy of ``control``'s (the reference
        code initialises the student from the teacher's network); ``control`` is unchanged."""
        width = control.state_embedding.out_features
        net = cls(control.dim, width=width, **kwargs)
        trunk = ("time_embedding.", "state_embedding.", "hidden.", "output.")
        state = {k: v for k, v in control.state_dict().items() if k.startswith(trunk)}
        missing, _ = net.load_state_dict(state, strict=False)
        assert missing == ["clip_model"], missing  # the clip restarts its own schedule
        return net.to(next(control.parameters()).dtype)

    def forward(self, sigma: Tensor, x: Tensor) -> Tensor:
        """``f(sigma, x)`` for ``x`` of shape ``(n, d)`` and ``sigma`` a 0-d tensor or ``(n,)``.

        A 0-d ``sigma`` (sampling) is embedded once and broadcast over the batch: per-sample
        embeddings made one-step sampling about 3 times slower on a CPU (10^6 samples on one
        thread: 4.5 s against 1.6 s, measured).
        """
        sigma = sigma.reshape(1) if sigma.dim() == 0 else sigma  # (1,) broadcasts over n
        s2 = self.sigma_data**2
        c_skip = (s2 / (sigma.square() + s2))[:, None]
        c_out = (sigma * self.sigma_data / (sigma.square() + s2).sqrt())[:, None]
        clip = self.clip_model
        features = _trunk(self, self.time_embedding(sigma), x).clamp(-clip, clip)
        return c_skip * x + c_out * features


@functools.cache
def _zuko():
    """zuko, imported on first use. Its import switches torch.distributions' argument
    validation off for the whole process (``zuko/distributions.py``), which would silently
    change a user's model (a scale that underflows to 0 gives -inf instead of an error):
    the setting is restored, once. FlowNet uses zuko's transforms only, which never
    validate."""
    validate = torch.distributions.Distribution._validate_args
    import zuko

    torch.distributions.Distribution.set_default_validate_args(validate)
    return zuko


def _inverse_and_ladj(transform, y: Tensor) -> tuple[Tensor, Tensor]:
    """``x = transform^-1(y)`` and ``log |det dx/dy|``. For zuko's autoregressive
    transforms, the last inversion pass's parameters already see every coordinate they
    depend on in its final value (a coordinate of order level ``l`` is final after ``l + 1``
    passes), so they give the log-determinant too: ``passes`` network evaluations instead
    of zuko's ``passes + 1`` (a coupling: 2 instead of 3)."""
    zuko = _zuko()
    if not isinstance(transform, zuko.transforms.AutoregressiveTransform):
        return transform.inv.call_and_ladj(y)
    x = torch.zeros_like(y)
    for _ in range(transform.passes - 1):
        x = transform.meta(x).inv(y)
    last = transform.meta(x)
    x = last.inv(y)
    return x, -last.log_abs_det_jacobian(x, y)


class FlowNet(nn.Module):
    """An invertible one-step sampler with an exact density: ``x = loc + scale * g(z)``,
    ``z ~ N(0, I)``, where ``g`` is a coupling neural spline flow (zuko's ``NSF`` with two
    passes: rational-quadratic splines, each conditioned on half of the coordinates).

    A coupling flow draws a sample in one pass of each transform (an autoregressive one
    needs ``dim`` sequential passes to sample), and its log-determinant is a sum of
    one-dimensional spline slopes: exact at every dimension, with no Jacobian to form and
    no fold to check. zuko is used rather than hand-written splines: it is a small, tested
    library whose transforms return the value and the log-determinant together.

    The splines act on ``[-5, 5]`` (identity outside), so the flow can put mass only about
    as far as ``loc +- 5 scale``: ``loc`` and ``log_scale`` are trained too, from a start
    at the moments of the first draws it learns from, and faster than the splines
    (:meth:`parameter_groups`), so that it follows draws that spread as a sampler learns.

    Parameters
    ----------
    dim : int
        Dimension of the samples.
    transforms : int, default=4
        Coupling transforms.
    width : int, default=128
        Width of the two hidden layers of each transform's network.
    loc, scale : Tensor of shape (dim,), optional
        The initial affine map after the flow (default: identity).
    context_dim : int, default=0
        Dimension of a context ``c`` the splines are conditioned on (zuko's ``context``
        features), read from the attribute ``context`` as :class:`ControlNet` does.
    generator : torch.Generator, optional
        Source of the initial weights (torch's global RNG is left as it was).
    """

    def __init__(
        self,
        dim: int,
        *,
        transforms: int = 4,
        width: int = 128,
        loc: Tensor | None = None,
        scale: Tensor | None = None,
        context_dim: int = 0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.dim, self.transforms, self.width = dim, transforms, width
        self.context_dim, self.context = context_dim, None
        seed = int(torch.randint(2**62, (1,), generator=generator)) if generator else None
        # zuko initialises its layers from torch's global RNG: seeded from ours, in a fork
        # that restores the global state afterwards
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            self.flow = _zuko().flows.NSF(
                features=dim,
                context=context_dim,
                transforms=transforms,
                hidden_features=(width, width),
                passes=2,
            )
        self.loc = nn.Parameter(torch.zeros(dim))
        self.log_scale = nn.Parameter(torch.zeros(dim))
        if loc is not None or scale is not None:
            self.set_affine(torch.zeros(dim) if loc is None else loc, scale)

    def config(self) -> dict:
        """The constructor's arguments (weights excluded)."""
        config = {"dim": self.dim, "transforms": self.transforms, "width": self.width}
        return config | _optional_config(self, context_dim=0)

    @property
    def scale(self) -> Tensor:
        return self.log_scale.exp()

    def set_affine(self, loc: Tensor, scale: Tensor | None = None) -> None:
        """Set the affine map after the flow (in place; ``scale`` defaults to ones)."""
        with torch.no_grad():
            self.loc.copy_(loc)
            self.log_scale.copy_(torch.zeros_like(loc) if scale is None else scale.log())

    def parameter_groups(self, learning_rate: float, affine_factor: float = 10.0) -> list[dict]:
        """Optimiser groups: the splines at ``learning_rate``, the affine map
        ``affine_factor`` times faster (Adam moves a weight by about its rate per step:
        the splines need fine steps, the scale may have to travel a factor of several)."""
        affine = {id(self.loc), id(self.log_scale)}
        splines = [p for p in self.parameters() if id(p) not in affine]
        return [
            {"params": splines, "lr": learning_rate},
            {"params": [self.loc, self.log_scale], "lr": affine_factor * learning_rate},
        ]

    def _base_log_prob(self, z: Tensor) -> Tensor:
        return -0.5 * (z.square().sum(-1) + self.dim * math.log(2 * math.pi))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """The samples ``x`` of standard normal draws ``z`` (``(n, d)``) and their exact
        log-density ``log q(x)``."""
        y, log_det = z, torch.zeros(z.shape[:-1], dtype=z.dtype, device=z.device)
        context = getattr(self, "context", None)
        for lazy in reversed(self.flow.transform.transforms):
            y, ladj = _inverse_and_ladj(lazy(context), y)
            log_det = log_det + ladj
        log_q = self._base_log_prob(z) - log_det - self.log_scale.sum()
        return self.loc + self.scale * y, log_q

    def log_prob(self, x: Tensor) -> Tensor:
        """The exact log-density ``log q(x)`` of points ``x`` of shape ``(n, d)``."""
        transform = self.flow.transform(getattr(self, "context", None))
        z, log_det = transform.call_and_ladj((x - self.loc) / self.scale)
        return self._base_log_prob(z) + log_det - self.log_scale.sum()
