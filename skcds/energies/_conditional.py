"""Families of densities ``rho(x | c) = exp(-E(x, c))`` over a context ``c`` (issue 28).

A :class:`ConditionalEnergy` has a context domain (:class:`Box`, :class:`FiniteSet` or a
user's sampler, :class:`ContextSampler`) that says which ``c`` a sampler trains on, and
``energy.at(c)`` is the ordinary :class:`~skcds.energies.Energy` of one member (one ``c``
for every row, or one per row): everything that works on an energy works on it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from ..exceptions import EnergyError
from ._base import Energy, _check_batch, _check_form, _check_output
from ._utils import as_float64_array

__all__ = ["Box", "ConditionalEnergy", "ContextDomain", "ContextSampler", "FiniteSet"]

_MOMENT_DRAWS = 4096  # draws of a user's context sampler that set its standardisation


class ContextDomain:
    """Where the context ``c`` lives, and how a sampler draws it while training.

    Subclasses set ``dim`` and implement :meth:`sample`, :meth:`check` and
    :meth:`standardise`.
    """

    dim: int

    def sample(self, n: int, generator: torch.Generator, dtype, device) -> Tensor:
        """``n`` contexts of shape ``(n, dim)``, drawn from ``generator``."""
        raise NotImplementedError

    def check(self, c: Tensor, name: str) -> None:
        """Raise a ``ValueError`` naming ``name`` if a row of ``c`` lies outside the domain."""

    def standardise(self, c: Tensor) -> Tensor:
        """``c`` at unit scale, as the networks read it."""
        raise NotImplementedError


class Box(ContextDomain):
    """Contexts uniform in the box ``[low, high]`` (one interval per coordinate).

    Parameters
    ----------
    low, high : float or array-like of shape (k,)
        Bounds, with ``low < high`` in every coordinate.

    Examples
    --------
    >>> from skcds.energies import Box
    >>> Box(0.3, 1.0).dim
    1
    """

    def __init__(self, low, high) -> None:
        low = np.atleast_1d(as_float64_array(low, "low"))
        high = np.atleast_1d(as_float64_array(high, "high"))
        if low.ndim != 1 or low.shape != high.shape:
            raise ValueError(
                "'low' and 'high' must be floats or 1-D arrays of one shape; got shapes "
                f"{low.shape} and {high.shape}."
            )
        if not (low < high).all():
            raise ValueError(
                f"'low' must be below 'high' in every coordinate; got {low} and {high}."
            )
        self.low, self.high, self.dim = low, high, low.shape[0]

    def sample(self, n, generator, dtype, device):
        u = torch.rand((n, self.dim), generator=generator, dtype=dtype, device=device)
        low, high = (torch.as_tensor(b, dtype=dtype, device=device) for b in (self.low, self.high))
        return low + (high - low) * u

    def check(self, c, name):
        low, high = (torch.as_tensor(b).to(c) for b in (self.low, self.high))
        slack = 1e-6 * (high - low)
        outside = ((c < low - slack) | (c > high + slack)).any(-1)
        if bool(outside.any()):
            raise ValueError(
                f"'{name}' must lie in the context's domain, the box [{_show(self.low)}, "
                f"{_show(self.high)}]; got {int(outside.sum())} row(s) outside it, e.g. "
                f"{_show(c[outside][0].cpu().numpy())}."
            )

    def standardise(self, c):
        low, high = (torch.as_tensor(b).to(c) for b in (self.low, self.high))
        return (2 * c - (low + high)) / (high - low)

    def __repr__(self) -> str:
        return f"Box(low={_show(self.low)}, high={_show(self.high)})"


class FiniteSet(ContextDomain):
    """Contexts drawn uniformly from a finite set of values.

    Parameters
    ----------
    values : array-like of shape (m,) or (m, k)
        The ``m`` contexts (one number each, or ``k``).

    Examples
    --------
    >>> from skcds.energies import FiniteSet
    >>> FiniteSet([0.5, 1.0, 2.0]).dim
    1
    """

    def __init__(self, values) -> None:
        values = as_float64_array(values, "values")
        values = values[:, None] if values.ndim == 1 else values
        if values.ndim != 2 or values.shape[0] < 1:
            raise ValueError(
                f"'values' must be a non-empty array of shape (m,) or (m, k); got {values.shape}."
            )
        self.values, self.dim = values, values.shape[1]
        self._loc = values.mean(0)
        spread = values.std(0)
        self._scale = np.where(spread > 0, spread, 1.0)

    def sample(self, n, generator, dtype, device):
        index = torch.randint(len(self.values), (n,), generator=generator, device=device)
        return torch.as_tensor(self.values, dtype=dtype, device=device)[index]

    def check(self, c, name):
        values = torch.as_tensor(self.values).to(c)
        near = torch.isclose(c[:, None, :], values[None], rtol=1e-6, atol=1e-9).all(-1).any(-1)
        if not bool(near.all()):
            raise ValueError(
                f"'{name}' must be one of the {len(self.values)} values of the context's "
                f"domain (a FiniteSet); got {int((~near).sum())} row(s) that are not, e.g. "
                f"{_show(c[~near][0].cpu().numpy())}."
            )

    def standardise(self, c):
        return (c - torch.as_tensor(self._loc).to(c)) / torch.as_tensor(self._scale).to(c)

    def __repr__(self) -> str:
        return f"FiniteSet({len(self.values)} values of dimension {self.dim})"


class ContextSampler(ContextDomain):
    """Contexts from a user's sampler (e.g. datasets of one shape, a prior over ``c``).

    Parameters
    ----------
    sample : callable
        ``sample(n, generator)`` returns ``n`` contexts, an array-like of shape ``(n, k)``
        (or ``(n,)``), drawn with the ``torch.Generator`` it is given (for reproducible
        fits). A module-level function pickles with the sampler; a lambda does not.

    Notes
    -----
    Its domain is whatever it draws: contexts given to a fitted sampler are checked for
    shape and finiteness only. The networks see the contexts standardised by the mean and
    standard deviation of 4096 draws (generator seeded 0).

    Examples
    --------
    >>> import torch
    >>> from skcds.energies import ContextSampler
    >>> domain = ContextSampler(lambda n, g: torch.rand(n, 2, generator=g))
    >>> domain.dim
    2
    """

    def __init__(self, sample: Callable) -> None:
        if not callable(sample):
            raise TypeError(f"'sample' must be callable; got {type(sample).__name__}.")
        self.fn = sample
        draws = self._call(_MOMENT_DRAWS, torch.Generator().manual_seed(0), torch.float64, "cpu")
        self.dim = draws.shape[1]
        spread = draws.std(0)
        self._loc, self._scale = draws.mean(0), torch.where(spread > 0, spread, 1.0)

    def _call(self, n, generator, dtype, device) -> Tensor:
        out = self.fn(n, generator)
        c = torch.as_tensor(np.asarray(out) if not isinstance(out, Tensor) else out)
        c = c[:, None] if c.ndim == 1 else c
        if c.ndim != 2 or c.shape[0] != n or not c.is_floating_point():
            raise ValueError(
                f"the context sampler must return {n} real contexts, an array of shape ({n}, k) "
                f"or ({n},); got {_describe(out)}."
            )
        if not bool(torch.isfinite(c).all()):
            raise ValueError("the context sampler returned NaN or inf.")
        return c.to(dtype=dtype, device=device)

    def sample(self, n, generator, dtype, device):
        return self._call(n, generator, dtype, device)

    def standardise(self, c):
        return (c - self._loc.to(c)) / self._scale.to(c)

    def __repr__(self) -> str:
        return f"ContextSampler({getattr(self.fn, '__name__', self.fn)!r}, dim={self.dim})"


def as_domain(context) -> ContextDomain:
    """A :class:`ContextDomain` from the ``context=`` argument of :func:`from_log_prob`."""
    if isinstance(context, ContextDomain):
        return context
    if callable(context):
        return ContextSampler(context)
    raise TypeError(
        "'context' must be a context domain: skcds.energies.Box(low, high), "
        "skcds.energies.FiniteSet(values) or a sampler fn(n, generator) -> (n, k) array; "
        f"got {type(context).__name__}."
    )


def _show(array) -> str:
    return np.array2string(np.asarray(array), precision=4, separator=", ")


def _describe(out) -> str:
    shape = getattr(out, "shape", None)
    return f"shape {tuple(shape)}" if shape is not None else type(out).__name__


class ConditionalEnergy(Energy):
    """Base class of families of densities ``rho(x | c) = exp(-E(x, c))``.

    Subclasses set ``dim`` and ``context`` (a :class:`ContextDomain`) and implement
    :meth:`_log_prob_at`; they may add ``_grad_log_prob_at(x, c)`` (a closed-form score),
    :meth:`log_normalizer_at` and ``_sample_at(n, c, generator)`` (an exact sampler).
    A conditional energy is evaluated at a context: :meth:`log_prob` takes it, and
    :meth:`at` gives the plain :class:`Energy` of one member of the family.

    Attributes
    ----------
    dim : int
        Dimension of the sample space.
    context : ContextDomain
        The contexts a sampler trains on.
    """

    context: ContextDomain

    @property
    def context_dim(self) -> int:
        """Dimension ``k`` of a context."""
        return self.context.dim

    def _log_prob_at(self, x: Tensor, c: Tensor) -> Tensor:
        raise NotImplementedError

    def _log_prob(self, x: Tensor) -> Tensor:
        raise EnergyError(
            f"{type(self).__name__} is a family of densities over a context: evaluate it with "
            "log_prob(x, context) or at one member, energy.at(context)."
        )

    def check_context(self, context, n: int, name: str = "context", *, like=None) -> Tensor:
        """Contexts for ``n`` rows, checked against the domain.

        Parameters
        ----------
        context : float or array-like of shape (k,), (1, k) or (n, k)
            One context for every row, or one per row.
        n : int
            Rows.
        name : str, default='context'
            The argument's name, for the error messages.
        like : Tensor, optional
            A tensor whose dtype and device the result takes (default float64, CPU).

        Returns
        -------
        Tensor of shape (n, k)
        """
        k = self.context_dim
        if context is None:
            raise ValueError(
                f"'{name}' is required: {type(self).__name__} is a family of densities over "
                f"a {k}-dimensional context ({self.context!r})."
            )
        c = torch.as_tensor(as_float64_array(context, name))
        if c.ndim <= 1 and c.numel() == k:
            c = c.reshape(1, k)
        if c.ndim == 1 and k == 1:
            c = c[:, None]
        if c.ndim != 2 or c.shape[1] != k or c.shape[0] not in (1, n):
            raise ValueError(
                f"'{name}' must be one context (a float or shape ({k},)) or one per row "
                f"(shape ({n}, {k})); got shape {tuple(c.shape)}."
            )
        self.context.check(c, name)
        c = c.expand(n, k)
        return c if like is None else c.to(dtype=like.dtype, device=like.device)

    def log_prob(self, x: Tensor, context=None) -> Tensor:
        """Unnormalised log-density ``log rho(x | c)``.

        Parameters
        ----------
        x : torch.Tensor of shape (n, dim)
        context : float or array-like of shape (k,) or (n, k)
            One context for every row, or one per row.

        Returns
        -------
        torch.Tensor of shape (n,)
        """
        x = _check_batch(x, self.dim)
        c = self.check_context(context, x.shape[0], like=x)
        return _check_output(self._log_prob_at(x, c), x, type(self).__name__)

    def grad_log_prob(self, x: Tensor, context=None) -> Tensor:
        """Score ``grad_x log rho(x | c)`` of shape ``(n, dim)``; see :meth:`log_prob`."""
        x = _check_batch(x, self.dim)
        return self.at(self.check_context(context, x.shape[0], like=x))._grad_log_prob(x)

    def energy(self, x: Tensor, context=None) -> Tensor:
        """Energy ``E(x, c) = -log rho(x | c)``; see :meth:`log_prob`."""
        return -self.log_prob(x, context)

    def at(self, context) -> Energy:
        """The density at ``context``, a plain :class:`Energy`.

        Parameters
        ----------
        context : float, array-like or Tensor of shape (k,), (1, k) or (n, k)
            One context (a member of the family), or one per row of the batches it will be
            evaluated on.

        Returns
        -------
        Energy
            With :attr:`~Energy.log_normalizer` and an exact ``sample`` where the family
            has them (one context).
        """
        if isinstance(context, Tensor) and context.ndim == 2:
            c = context  # internal: already checked rows, in the caller's dtype
        else:
            c = self.check_context(context, 1)
        return _Member(self, c)

    def log_normalizer_at(self, c: Tensor) -> float | None:
        """Exact ``log Z(c)`` at one context ``c`` of shape ``(k,)``, or ``None``."""
        return None

    @property
    def can_sample(self) -> bool:
        """Whether the family has an exact sampler of its members (``at(c).sample``)."""
        return hasattr(self, "_sample_at")

    def extra_repr(self) -> str:
        return f"dim={self.dim}, context={self.context!r}"


class _Member(Energy):
    """One member ``rho(. | c)`` of a :class:`ConditionalEnergy` (or one per row: ``c`` of
    shape ``(n, k)`` for batches of ``n`` rows; a single row is broadcast)."""

    def __init__(self, family: ConditionalEnergy, context: Tensor) -> None:
        super().__init__()
        self.family, self.context, self.dim = family, context, family.dim

    def _rows(self, x: Tensor) -> Tensor:
        c = self.context.to(dtype=x.dtype, device=x.device)
        if c.shape[0] == x.shape[0]:
            return c
        if c.shape[0] == 1:
            return c.expand(x.shape[0], -1)
        raise RuntimeError(  # an internal mix-up of rows, not a user's error
            f"{c.shape[0]} contexts for a batch of {x.shape[0]} rows."
        )

    def _log_prob(self, x: Tensor) -> Tensor:
        return _check_form(self.family._log_prob_at(x, self._rows(x)), x, self._name())

    def _grad_log_prob(self, x: Tensor) -> Tensor:
        closed_form = getattr(self.family, "_grad_log_prob_at", None)
        if closed_form is None:
            return super()._grad_log_prob(x)
        return closed_form(x, self._rows(x))

    def _single(self) -> Tensor | None:
        return self.context[0] if self.context.shape[0] == 1 else None

    @property
    def log_normalizer(self) -> float | None:
        c = self._single()
        return None if c is None else self.family.log_normalizer_at(c)

    @property
    def can_sample(self) -> bool:
        return self.family.can_sample and self._single() is not None

    def _sample(self, n: int, generator) -> Tensor:
        return self.family._sample_at(n, self._single(), generator)

    def _name(self) -> str:
        return type(self.family).__name__

    def extra_repr(self) -> str:
        c = self._single()
        where = _show(c.cpu().numpy()) if c is not None else f"{self.context.shape[0]} rows"
        return f"{self._name()} at context {where}"


class _CallableConditional(ConditionalEnergy):
    """A user's torch callable ``fn(x, c)`` returning ``log rho(x | c)`` (``sign=+1``) or
    ``E(x, c)`` (``sign=-1``)."""

    def __init__(self, fn: Callable, dim: int, sign: float, context: ContextDomain) -> None:
        super().__init__()
        if not callable(fn):
            raise TypeError(f"'fn' must be callable; got {type(fn).__name__}.")
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"'dim' must be a positive int; got {dim!r}.")
        self.fn, self.dim, self.sign, self.context = fn, int(dim), sign, context

    def _log_prob_at(self, x: Tensor, c: Tensor) -> Tensor:
        out = self.fn(x, c)
        if not isinstance(out, Tensor):
            raise EnergyError(
                f"the wrapped function must return a torch.Tensor; got {type(out).__name__}."
            )
        return self.sign * out


def conditional(fn: Callable, dim: int, sign: float, backend: str, context) -> ConditionalEnergy:
    """The conditional energy of :func:`from_log_prob` / :func:`from_energy`."""
    if backend != "torch":
        raise ValueError(
            f"a conditional energy (context=...) needs backend='torch'; got {backend!r}."
        )
    return _CallableConditional(fn, dim, sign, as_domain(context))
