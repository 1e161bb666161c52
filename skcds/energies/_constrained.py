"""A model written in its natural (constrained) coordinates, sampled in unconstrained ones.

Every parameter is mapped to the real line (or to ``R^k``) by the bijection torch registers
for its constraint, ``torch.distributions.biject_to(constraint)``; the density of the
unconstrained point carries the log-Jacobian of that map, so ``log Z`` is unchanged.
Torch has no constraint for ordered vectors: :data:`ordered` and :class:`OrderedTransform`
fill the gap and are registered with ``biject_to`` and ``transform_to`` on import.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor
from torch.distributions import biject_to, constraints, transform_to
from torch.distributions.transforms import Transform

from ..exceptions import EnergyError
from ._base import Energy, _check_batch

__all__ = ["Constrained", "OrderedTransform", "ordered"]


class _Ordered(constraints.Constraint):
    """Strictly increasing vectors: ``x[k] < x[k + 1]`` for every ``k`` along the last axis.

    Use it as ``(K, skcds.energies.ordered)`` in the ``supports`` of :class:`Constrained`
    (cut-points of an ordinal model, the locations of an identified mixture). Its bijection,
    ``biject_to(ordered)``, is :class:`OrderedTransform`.
    """

    event_dim = 1

    def check(self, value: Tensor) -> Tensor:
        return (value[..., 1:] > value[..., :-1]).all(-1)


#: The constraint of strictly increasing vectors (see :class:`_Ordered`).
ordered = _Ordered()


class OrderedTransform(Transform):
    r"""Bijection from ``R^K`` to the increasing vectors of ``R^K``.

    .. math::

        x_0 = z_0, \qquad x_k = x_{k-1} + e^{z_k} \quad (k \ge 1),
        \qquad \log |\det \partial x / \partial z| = \sum_{k \ge 1} z_k.
    """

    domain = constraints.real_vector
    codomain = ordered
    bijective = True

    def __eq__(self, other) -> bool:
        return isinstance(other, OrderedTransform)

    def _call(self, z: Tensor) -> Tensor:
        return torch.cat([z[..., :1], z[..., 1:].exp()], dim=-1).cumsum(-1)

    def _inverse(self, x: Tensor) -> Tensor:
        return torch.cat([x[..., :1], (x[..., 1:] - x[..., :-1]).log()], dim=-1)

    def log_abs_det_jacobian(self, z: Tensor, x: Tensor) -> Tensor:
        return z[..., 1:].sum(-1)


@biject_to.register(_Ordered)
@transform_to.register(_Ordered)
def _ordered_bijection(constraint: _Ordered) -> OrderedTransform:
    return OrderedTransform()


# constraint class -> names of its bounds; exact types, as biject_to dispatches on type()
_BOUNDED = {
    constraints.greater_than: ("lower_bound",),
    constraints.greater_than_eq: ("lower_bound",),
    constraints.less_than: ("upper_bound",),
    constraints.interval: ("lower_bound", "upper_bound"),
    constraints.half_open_interval: ("lower_bound", "upper_bound"),
}
_UNBOUNDED = (type(constraints.real), type(constraints.simplex), _Ordered)
_SUPPORTED = (
    "constraints.real, positive, nonnegative, greater_than(a), greater_than_eq(a), "
    "less_than(b), interval(a, b), unit_interval, half_open_interval(a, b) (scalar bounds), "
    "independent(...) of one of these (e.g. real_vector), simplex, and skcds.energies.ordered"
)


@dataclass(frozen=True)
class _Block:
    """One named parameter: its slices of the unconstrained and of the model-space vector."""

    name: str
    constraint: constraints.Constraint  # as given, for messages and checks
    transform: Transform  # unconstrained (..., *ushape) -> constrained (..., *shape)
    shape: tuple[int, ...]
    ushape: tuple[int, ...]
    z_slice: slice
    x_slice: slice


def _bound(value: object, where: str) -> float:
    if isinstance(value, Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        got = f"a tensor of shape {tuple(value.shape)}" if isinstance(value, Tensor) else value
        raise ValueError(
            f"{where} must be a finite real number (per-element bounds are not supported); "
            f"got {got!r}."
        )
    return float(value)


def _normalise(constraint: object, where: str) -> tuple[constraints.Constraint, int]:
    """The constraint rebuilt with float bounds (device- and dtype-free), and its event_dim."""
    if isinstance(constraint, type) and issubclass(constraint, constraints.Constraint):
        raise TypeError(
            f"{where} must be a constraint instance; got the class {constraint.__name__}. "
            "Call it with its bounds, e.g. constraints.greater_than(0.0)."
        )
    if not isinstance(constraint, constraints.Constraint):
        raise TypeError(
            f"{where} must be a torch.distributions constraint or a (shape, constraint) pair; "
            f"got {type(constraint).__name__}. Supported: {_SUPPORTED}."
        )
    kind = type(constraint)
    if kind is constraints.independent:
        base, event_dim = _normalise(constraint.base_constraint, where)
        if event_dim:
            raise ValueError(
                f"{where}: constraints.independent is supported around an element-wise "
                f"constraint only; got {constraint}. Supported: {_SUPPORTED}."
            )
        return base, constraint.reinterpreted_batch_ndims
    if kind in _UNBOUNDED:
        return constraint, constraint.event_dim
    if kind not in _BOUNDED:
        raise ValueError(f"{where}: unsupported constraint {constraint}. Supported: {_SUPPORTED}.")
    bounds = [_bound(getattr(constraint, b), f"{where}: {b}") for b in _BOUNDED[kind]]
    if len(bounds) == 2 and not bounds[0] < bounds[1]:
        raise ValueError(
            f"{where}: the interval's lower_bound must be below its upper_bound; got {constraint}."
        )
    return kind(*bounds), 0


def _shape(value: object, where: str) -> tuple[int, ...]:
    def positive_int(v: object) -> bool:
        return isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1

    if positive_int(value):
        return (int(value),)
    if isinstance(value, (tuple, list)) and all(positive_int(v) for v in value):
        return tuple(int(v) for v in value)
    raise ValueError(
        f"{where}: the shape must be a positive int or a tuple of positive ints (() for a "
        f"scalar); got {value!r}."
    )


def _parse(supports: object) -> tuple[_Block, ...]:
    if not isinstance(supports, Mapping):
        raise TypeError(
            "'supports' must be a dict mapping each parameter's name to a constraint or to a "
            f"(shape, constraint) pair; got {type(supports).__name__}."
        )
    if not supports:
        raise ValueError("'supports' must name at least one parameter; got an empty mapping.")
    blocks, z_start, x_start = [], 0, 0
    for name, spec in supports.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"'supports' keys must be non-empty strings; got {name!r}.")
        where = f"supports[{name!r}]"
        if isinstance(spec, (tuple, list)):
            if len(spec) != 2 or isinstance(spec[0], constraints.Constraint):
                raise ValueError(
                    f"{where} must be a constraint or a (shape, constraint) pair such as "
                    f"(3, constraints.simplex); got {spec!r}."
                )
            shape, constraint = _shape(spec[0], where), spec[1]
        else:
            shape, constraint = (), spec
        constraint, event_dim = _normalise(constraint, where)
        if len(shape) < event_dim:
            raise ValueError(
                f"{where}: {constraint} is a constraint on vectors; give its size, e.g. "
                f"{name!r}: (3, {constraint!r}); got a scalar parameter."
            )
        if type(constraint) is type(constraints.simplex) and shape[-1] < 2:
            raise ValueError(
                f"{where}: a simplex needs at least 2 components (K >= 2, with K - 1 "
                f"unconstrained coordinates); got size {shape[-1]}."
            )
        transform = biject_to(constraint)
        ushape = tuple(transform.inverse_shape(shape))
        z_size, x_size = int(np.prod(ushape)), int(np.prod(shape))
        blocks.append(
            _Block(
                name,
                constraint,
                transform,
                shape,
                ushape,
                slice(z_start, z_start + z_size),
                slice(x_start, x_start + x_size),
            )
        )
        z_start, x_start = z_start + z_size, x_start + x_size
    return tuple(blocks)


class Constrained(Energy):
    r"""A model on constrained parameters, seen in unconstrained coordinates.

    Each parameter ``theta_j`` lives in the support of a constraint (positive, an interval,
    the simplex, ...); the sampler works on ``z in R^dim`` with ``theta_j = T_j(z_j)``,
    ``T_j = torch.distributions.biject_to(constraint_j)``, and the density

    .. math::

        \log \rho_z(z) = \log p(T(z)) + \sum_j \log |\det \partial T_j / \partial z_j|,

    so :math:`\log Z` is the one of ``p``. :meth:`transform` maps a batch of ``z`` to the
    model's coordinates (a sampler's ``sample()`` returns them) and :meth:`unflatten` splits
    those into named parameters.

    Parameters
    ----------
    log_prob : callable
        Maps a dict ``{name: tensor}`` of constrained parameters, each of shape
        ``(n, *shape)`` (``(n,)`` for a scalar), to the log-density of shape ``(n,)``;
        differentiable by torch.
    supports : dict
        Ordered mapping ``name -> constraint`` (a scalar parameter) or
        ``name -> (shape, constraint)`` (``shape`` an int or a tuple of ints): e.g.
        ``{"beta": (8, constraints.real), "sigma": constraints.positive,
        "weights": (3, constraints.simplex)}``. Supported constraints: ``real``,
        ``positive``, ``nonnegative``, ``greater_than(a)``, ``greater_than_eq(a)``,
        ``less_than(b)``, ``interval(a, b)``, ``unit_interval``, ``half_open_interval(a, b)``
        (scalar bounds), ``independent(...)`` of these (e.g. ``real_vector``), ``simplex``
        (a vector of ``K >= 2`` components, ``K - 1`` unconstrained coordinates) and
        :data:`skcds.energies.ordered` (strictly increasing vectors).

    Attributes
    ----------
    dim : int
        Number of unconstrained coordinates (where samplers work).
    model_dim : int
        Number of model-space columns returned by :meth:`transform`.
    param_names : list of str
        The model-space column names, e.g. ``['beta[0]', 'beta[1]', 'sigma']``.
    blocks : dict
        ``name -> number of model-space columns`` (in order).
    shapes : dict
        ``name -> shape`` of one draw of the parameter.

    See Also
    --------
    AffineTransformed : an affine change of variables (whitening).

    Notes
    -----
    *Floating-point limits.* The maps are those torch registers, with its own clipping:
    the sigmoid of an interval or a simplex is clamped to ``[tiny, 1 - eps]`` of the dtype,
    the exponential is not clamped. Far from the origin a constrained value can therefore
    reach the edge of its support by rounding. In float32: ``exp(z)`` is positive down to
    ``z = -103`` (subnormal below -87; ``exp(-30) = 9.4e-14`` is a valid scale) and 0 below
    ``z ~ -104``; ``a + exp(z)`` rounds to ``a`` for ``greater_than(a)``, ``a != 0``, once
    ``exp(z)`` is below half the float spacing at ``a`` (``z < -15`` for ``a = 5``), and
    likewise for ``less_than`` and the lower end of ``interval(a, b)``; an ``ordered``
    vector gets ties once ``exp(z_k)`` is below the spacing at ``x_{k-1}``; a simplex of
    many components gets exact zeros (e.g. ``K = 10`` at ``z = 30``), where torch's
    stick-breaking log-Jacobian is ``-inf``. Even where values are fine, a score can
    overflow: ``Normal(mu, exp(z))`` at ``z = -30`` has a finite log-density but autograd's
    ``1 / sigma^3`` is ``inf``. Nothing is clamped here: a model that validates its
    arguments then raises, and one that does not returns ``-inf`` (or ``+inf``, an
    :class:`~skcds.exceptions.EnergyError`). Float64 pushes these limits far out
    (``exp(z) > 0`` down to ``z ~ -745``).

    *Dtype.* A ``torch.distributions`` object built from Python floats holds float32
    parameters, and several of them (``Gamma``, ``Beta``, ``Dirichlet``, ...) cast the value
    to that dtype in ``log_prob``: build them with float64 tensors for float64 accuracy.

    *Pickling.* Instances pickle (joblib, a fitted sampler) when ``log_prob`` is a
    module-level function, not a lambda or a closure.

    Examples
    --------
    >>> import torch
    >>> from torch.distributions import HalfNormal, Normal, constraints
    >>> from skcds.energies import Constrained
    >>> data = torch.tensor([0.8, 1.2, 1.9, 0.4])
    >>> def log_prob(p):
    ...     likelihood = Normal(p["mu"][:, None], p["sigma"][:, None]).log_prob(data).sum(-1)
    ...     return likelihood + Normal(0.0, 10.0).log_prob(p["mu"]) + HalfNormal(1.0).log_prob(
    ...         p["sigma"]
    ...     )
    >>> energy = Constrained(log_prob, {"mu": constraints.real, "sigma": constraints.positive})
    >>> energy.dim, energy.model_dim, energy.param_names
    (2, 2, ['mu', 'sigma'])
    >>> z = torch.tensor([[1.0, 0.0], [1.0, -1.0]])
    >>> energy.transform(z)  # sigma = exp(z[:, 1])
    tensor([[1.0000, 1.0000],
            [1.0000, 0.3679]])
    >>> params = energy.unflatten(energy.transform(z))
    >>> params["sigma"]
    tensor([1.0000, 0.3679])
    >>> # the density of z: the model's, times the Jacobian d sigma / d z = exp(z)
    >>> torch.allclose(energy.log_prob(z), log_prob(params) + z[:, 1])
    True
    >>> energy.inverse_transform(torch.tensor([[0.5, 2.0]]))  # e.g. an initial point
    tensor([[0.5000, 0.6931]])
    """

    def __init__(
        self,
        log_prob: Callable[[dict[str, Tensor]], Tensor],
        supports: Mapping[str, object],
    ) -> None:
        super().__init__()
        if not callable(log_prob):
            raise TypeError(
                "'log_prob' must be a callable mapping a dict of named constrained tensors to "
                f"log-densities of shape (n,); got {type(log_prob).__name__}."
            )
        self._blocks = _parse(supports)
        self.model_log_prob = log_prob
        self.dim = self._blocks[-1].z_slice.stop
        self.model_dim = self._blocks[-1].x_slice.stop

    # ------------------------------------------------------------------ layout
    @property
    def param_names(self) -> list[str]:
        """Model-space column names: ``name`` for a scalar, ``name[i]`` / ``name[i,j]``."""
        names = []
        for block in self._blocks:
            if not block.shape:
                names.append(block.name)
            else:
                names += [f"{block.name}[{','.join(map(str, i))}]" for i in np.ndindex(block.shape)]
        return names

    @property
    def blocks(self) -> dict[str, int]:
        """``name -> number of model-space columns``, in the order of ``supports``."""
        return {b.name: b.x_slice.stop - b.x_slice.start for b in self._blocks}

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """``name -> shape`` of one draw of the parameter (``()`` for a scalar)."""
        return {b.name: b.shape for b in self._blocks}

    @property
    def param_constraints(self) -> dict[str, constraints.Constraint]:
        """``name -> constraint`` (bounds as floats; ``independent`` unwrapped)."""
        return {b.name: b.constraint for b in self._blocks}

    def unflatten(self, x_model: Tensor | ArrayLike) -> dict[str, Tensor | np.ndarray]:
        """Split model-space columns into named parameters.

        Parameters
        ----------
        x_model : torch.Tensor or array-like of shape (..., model_dim)
            E.g. ``transform(z)``, a sampler's ``sample()``, or ``(chains, draws, model_dim)``.

        Returns
        -------
        dict
            ``name -> array of shape (..., *shape)``; tensors for a tensor input, numpy arrays
            otherwise (ready for ``arviz.from_dict(posterior=...)``).
        """
        if not isinstance(x_model, Tensor):
            x_model = np.asarray(x_model)
        if x_model.ndim < 1 or x_model.shape[-1] != self.model_dim:
            raise ValueError(
                f"'x_model' must be of shape (..., {self.model_dim}) (the model-space columns "
                f"{self.param_names}); got shape {tuple(x_model.shape)}."
            )
        lead = tuple(x_model.shape[:-1])
        return {b.name: x_model[..., b.x_slice].reshape(lead + b.shape) for b in self._blocks}

    def flatten(self, params: Mapping[str, Tensor | ArrayLike]) -> Tensor | np.ndarray:
        """Concatenate named parameters into model-space columns (inverse of :meth:`unflatten`).

        Parameters
        ----------
        params : dict
            ``name -> array of shape (..., *shape)``, every name of ``supports``, the same
            leading shape ``...`` for all.

        Returns
        -------
        torch.Tensor or numpy.ndarray of shape (..., model_dim)
            A tensor if every value is a tensor, a float64 array otherwise.
        """
        if not isinstance(params, Mapping) or set(params) != set(self.blocks):
            got = sorted(params) if isinstance(params, Mapping) else type(params).__name__
            raise ValueError(f"'params' must be a dict with keys {list(self.blocks)}; got {got}.")
        use_torch = all(isinstance(params[b.name], Tensor) for b in self._blocks)
        values = [
            params[b.name] if use_torch else np.asarray(params[b.name], dtype=np.float64)
            for b in self._blocks
        ]
        columns, lead = [], None
        for block, value in zip(self._blocks, values, strict=True):
            ndim = value.ndim - len(block.shape)
            if ndim < 0 or tuple(value.shape[ndim:]) != block.shape:
                raise ValueError(
                    f"'params[{block.name!r}]' must be of shape "
                    f"{('...', *block.shape)} (any leading shape); got {tuple(value.shape)}."
                )
            if lead is None:
                lead = tuple(value.shape[:ndim])
            if tuple(value.shape[:ndim]) != lead:
                raise ValueError(
                    f"every parameter must have the same leading shape; {block.name!r} has "
                    f"{tuple(value.shape[:ndim])}, the first one {lead}."
                )
            columns.append(value.reshape(lead + (block.x_slice.stop - block.x_slice.start,)))
        return torch.cat(columns, dim=-1) if use_torch else np.concatenate(columns, axis=-1)

    # ------------------------------------------------------------------ maps
    def _constrain(self, z: Tensor, jacobian: bool) -> tuple[dict[str, Tensor], Tensor | None]:
        n = z.shape[0]
        params, log_det = {}, None
        for block in self._blocks:
            u = z[:, block.z_slice].reshape((n,) + block.ushape)
            x = block.transform(u)
            params[block.name] = x
            if jacobian:
                term = block.transform.log_abs_det_jacobian(u, x)
                if term.ndim > 1:  # element-wise transforms: sum over the parameter's axes
                    term = term.sum(dim=tuple(range(1, term.ndim)))
                log_det = term if log_det is None else log_det + term
        return params, log_det

    def transform(self, z: Tensor) -> Tensor:
        """Map unconstrained points to the model's coordinates.

        Parameters
        ----------
        z : torch.Tensor of shape (n, dim)

        Returns
        -------
        torch.Tensor of shape (n, model_dim)
            The constrained parameters, flattened in the order of ``supports``
            (see :attr:`param_names`; :meth:`unflatten` splits them).
        """
        z = _check_batch(z, self.dim, "z")
        params, _ = self._constrain(z, jacobian=False)
        return self.flatten(params)

    def inverse_transform(self, x_model: Tensor | ArrayLike) -> Tensor:
        """Map model-space points to unconstrained ones (initial points, reference draws).

        Parameters
        ----------
        x_model : torch.Tensor or array-like of shape (n, model_dim)
            Values inside each parameter's support (strictly inside for open ends: a value
            on the boundary maps to infinity and is refused). Array-likes become float64.

        Returns
        -------
        torch.Tensor of shape (n, dim)
        """
        if not isinstance(x_model, Tensor):
            x_model = torch.as_tensor(np.asarray(x_model, dtype=np.float64))
        x_model = _check_batch(x_model, self.model_dim, "x_model")
        n, columns = x_model.shape[0], []
        for block, value in zip(self._blocks, self.unflatten(x_model).values(), strict=True):
            inside = block.constraint.check(value)
            if inside.ndim > 1:  # element-wise constraints: every entry of the row
                inside = inside.flatten(1).all(-1)
            if not bool(inside.all()):
                rows = torch.nonzero(~inside).flatten()[:5].tolist()
                raise ValueError(
                    f"'x_model': {block.name!r} must satisfy {block.constraint}; "
                    f"{int((~inside).sum())} row(s) do not (first: {rows})."
                )
            u = block.transform.inv(value).reshape(n, block.z_slice.stop - block.z_slice.start)
            finite = torch.isfinite(u).all(-1)
            if not bool(finite.all()):
                rows = torch.nonzero(~finite).flatten()[:5].tolist()
                raise ValueError(
                    f"'x_model': {block.name!r} lies on the boundary of {block.constraint} in "
                    f"row(s) {rows}, which maps to an infinite unconstrained value."
                )
            columns.append(u)
        return torch.cat(columns, dim=-1)

    # ------------------------------------------------------------------ density
    def _log_prob(self, z: Tensor) -> Tensor:
        params, log_det = self._constrain(z, jacobian=True)
        out = self.model_log_prob(params)
        if not isinstance(out, Tensor) or out.shape != (z.shape[0],):
            got = f"shape {tuple(out.shape)}" if isinstance(out, Tensor) else type(out).__name__
            raise EnergyError(
                f"Constrained: 'log_prob' must return a torch.Tensor of shape ({z.shape[0]},), "
                f"one log-density per row of the batch; got {got}. Sum over each parameter's "
                "own axes, e.g. Normal(0.0, 1.0).log_prob(p['beta']).sum(-1)."
            )
        return out + log_det

    def extra_repr(self) -> str:
        return f"dim={self.dim}, model_dim={self.model_dim}, params={list(self.blocks)}"
