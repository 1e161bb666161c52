"""The :class:`Energy` contract and the wrappers for a user's own density.

Sign convention: a target density is ``rho(x) = exp(-E(x))``; ``log_prob(x) = -E(x)`` up to
the unknown constant ``log Z``.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from ..exceptions import EnergyError

__all__ = ["Energy", "from_energy", "from_log_prob"]


def _check_batch(x: Tensor, dim: int, name: str = "x") -> Tensor:
    """Check that ``x`` is a floating tensor of shape ``(n, dim)``."""
    if not isinstance(x, Tensor):
        raise TypeError(
            f"'{name}' must be a torch.Tensor of shape (n, {dim}); got {type(x).__name__}."
        )
    if not x.is_floating_point():
        raise TypeError(f"'{name}' must be a floating-point tensor; got dtype {x.dtype}.")
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"'{name}' must be of shape (n, {dim}); got shape {tuple(x.shape)}.")
    return x


def _check_form(out, x: Tensor, where: str) -> Tensor:
    """Check an energy's output form, without reading its values (no device sync): a real
    floating-point tensor of shape ``(n,)``."""
    if not isinstance(out, Tensor) or out.shape != (x.shape[0],):
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise EnergyError(
            f"{where}.log_prob must return a tensor of shape ({x.shape[0]},) for an input of "
            f"shape {tuple(x.shape)}; got {shape}."
        )
    if not out.is_floating_point():
        raise EnergyError(
            f"{where}.log_prob must return a real floating-point tensor; got dtype {out.dtype}."
        )
    return out


def _check_output(out, x: Tensor, where: str) -> Tensor:
    """:func:`_check_form`, then no NaN and no ``+inf``; returned in ``x``'s dtype."""
    out = _check_form(out, x, where)
    bad = torch.isnan(out) | (out == math.inf)
    if bool(bad.any()):
        raise EnergyError(
            f"{where}.log_prob returned {int(bad.sum())} non-finite value(s) (NaN or +inf) for "
            f"{x.shape[0]} input(s); -inf (zero density) is allowed, NaN and +inf are not."
        )
    return out.to(x.dtype)


class Energy(torch.nn.Module):
    """Base class of target densities ``rho(x) = exp(-E(x))``.

    Subclasses set ``dim`` and implement :meth:`_log_prob`; they may override
    :meth:`_grad_log_prob` with a closed form (the default uses autograd), :meth:`_sample`
    with an exact sampler, and :attr:`log_normalizer` with the known ``log Z``.
    Parameters are stored as buffers, so ``energy.to(device, dtype)`` moves them and energies
    pickle like any :class:`torch.nn.Module`. Implementations call ``buffer.to(x)`` so that
    device and dtype always follow the input.

    The public methods validate their inputs and outputs once; the sampler's inner loops call
    the private ``_log_prob`` and ``_grad_log_prob`` directly.

    Attributes
    ----------
    dim : int
        Dimension of the sample space.

    Examples
    --------
    >>> import torch
    >>> from skcds.energies import from_log_prob
    >>> energy = from_log_prob(lambda x: -0.5 * (x ** 2).sum(-1), dim=2)
    >>> energy.log_prob(torch.ones(3, 2))
    tensor([-1., -1., -1.])
    """

    dim: int

    def __init_subclass__(cls, **kwargs) -> None:
        """Record the constructor's arguments of every subclass (for :meth:`get_params`)."""
        super().__init_subclass__(**kwargs)
        if "__init__" not in cls.__dict__:
            return
        init = cls.__init__
        signature = inspect.signature(init)

        @functools.wraps(init)
        def recording_init(self, *args, **kw):
            # record only the call the user made: the class's own (possibly inherited)
            # constructor, not a parent's reached through super().__init__
            users_call = type(self).__init__ is recording_init
            if users_call:
                bound = signature.bind(self, *args, **kw)
                bound.apply_defaults()
            init(self, *args, **kw)
            if users_call:  # after a successful construction only
                object.__setattr__(self, "_init_params", dict(list(bound.arguments.items())[1:]))

        cls.__init__ = recording_init

    # ---------------------------------------------------------------- scikit-learn params
    def get_params(self, deep: bool = True) -> dict:
        """The constructor's arguments, as scikit-learn's ``get_params``.

        They make an energy a nested parameter of a sampler: ``clone`` rebuilds it, and
        ``sampler.set_params(energy__scale=2.0)`` changes it.

        Parameters
        ----------
        deep : bool, default=True
            Ignored (an energy has no nested estimators).

        Returns
        -------
        dict
        """
        return dict(getattr(self, "_init_params", {}))

    def set_params(self, **params) -> Energy:
        """Rebuild the energy with some constructor arguments changed.

        Parameters
        ----------
        **params
            Constructor arguments of this energy's class.

        Returns
        -------
        self
        """
        current = self.get_params()
        unknown = sorted(set(params) - set(current))
        if unknown:
            raise ValueError(
                f"Invalid parameter(s) {unknown} for {type(self).__name__}; valid parameters "
                f"are {sorted(current)}."
            )
        type(self).__init__(self, **{**current, **params})
        return self

    def _log_prob(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def log_prob(self, x: Tensor) -> Tensor:
        """Unnormalised log-density ``-E(x)``.

        Parameters
        ----------
        x : torch.Tensor of shape (n, dim)
            Points at which to evaluate the density.

        Returns
        -------
        torch.Tensor of shape (n,)
            ``log rho(x)``; ``-inf`` where the density is zero.
        """
        x = _check_batch(x, self.dim)
        return _check_output(self._log_prob(x), x, type(self).__name__)

    def energy(self, x: Tensor) -> Tensor:
        """Energy ``E(x) = -log rho(x)``; see :meth:`log_prob`."""
        return -self.log_prob(x)

    def _grad_log_prob(self, x: Tensor) -> Tensor:
        where = type(self).__name__
        if torch.is_grad_enabled() and x.requires_grad:
            # a caller differentiating through the score (the KL loss): keep the graph
            log_prob = _check_form(self._log_prob(x), x, where)
            (grad,) = torch.autograd.grad(log_prob.sum(), x, create_graph=True)
            return grad
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(_check_form(self._log_prob(x), x, where).sum(), x)
        return grad

    def _hessian_log_prob(self, x: Tensor) -> Tensor:
        """Hessians ``(n, dim, dim)`` of ``log rho``: ``dim`` autograd passes through the score
        (closed forms may override). Used for the exact density of deterministic samplers."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            score = self._grad_log_prob(x)
            if not score.requires_grad:
                raise EnergyError(
                    f"{type(self).__name__}: exact log-weights of a deterministic sampler need "
                    "the Hessian of log_prob, but this energy's score is not differentiable by "
                    "torch (a numpy log-density has finite-difference gradients). Use "
                    "method='sde' for weights, or wrap a torch log-density."
                )
            rows = [
                torch.autograd.grad(score[:, i].sum(), x, retain_graph=i + 1 < self.dim)[0]
                for i in range(self.dim)
            ]
        return torch.stack(rows, dim=1)

    def grad_log_prob(self, x: Tensor) -> Tensor:
        """Score ``grad log rho(x)`` of shape ``(n, dim)`` (autograd unless overridden)."""
        return self._grad_log_prob(_check_batch(x, self.dim))

    def transform(self, x: Tensor) -> Tensor:
        """Map points of this energy's sample space to the coordinates of the user's model.

        The identity, unless the energy is a change of variables of another one (a
        whitened view, :class:`~skcds.energies.AffineTransformed`, or a model with
        constrained parameters, :class:`~skcds.energies.Constrained`). Samplers train in the
        energy's own space and return ``energy.transform(x)`` from ``sample``.

        Parameters
        ----------
        x : torch.Tensor of shape (n, dim)

        Returns
        -------
        torch.Tensor of shape (n, model_dim)
        """
        return x

    @property
    def log_normalizer(self) -> float | None:
        """Exact ``log Z = log of the integral of rho``, or ``None`` when it is unknown."""
        return None

    @property
    def can_sample(self) -> bool:
        """Whether :meth:`sample` draws exact samples from the normalised target."""
        return type(self)._sample is not Energy._sample

    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Exact samples from the normalised target ``rho / Z``.

        Parameters
        ----------
        n : int
            Number of samples.
        generator : torch.Generator, optional
            Source of randomness; samples live on the generator's device.

        Returns
        -------
        torch.Tensor of shape (n, dim)

        Raises
        ------
        NotImplementedError
            If no exact sampler is known for this target (see :attr:`can_sample`).
        """
        if not self.can_sample:
            raise NotImplementedError(f"{type(self).__name__} has no exact sampler.")
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"'n' must be a non-negative int; got {n!r}.")
        return self._sample(int(n), generator)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class _CallableLogProb(Energy):
    """A user's torch callable returning ``log rho`` (``sign=+1``) or ``E`` (``sign=-1``)."""

    def __init__(self, fn: Callable[[Tensor], Tensor], dim: int, sign: float) -> None:
        super().__init__()
        if not callable(fn):
            raise TypeError(f"'fn' must be callable; got {type(fn).__name__}.")
        if not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"'dim' must be a positive int; got {dim!r}.")
        self.fn, self.dim, self.sign = fn, int(dim), sign

    def _log_prob(self, x: Tensor) -> Tensor:
        out = self.fn(x)
        if not isinstance(out, Tensor):
            raise EnergyError(
                f"the wrapped function must return a torch.Tensor; got {type(out).__name__}. "
                "For a numpy function pass backend='numpy'."
            )
        return self.sign * out


class _FiniteDifferenceLogProb(torch.autograd.Function):
    """Evaluate a numpy log-density; its gradient by central finite differences."""

    @staticmethod
    def forward(ctx, x: Tensor, energy: _NumpyLogProb) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.energy = energy
        return energy._numpy_log_prob(x)

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad_out[:, None] * ctx.energy._finite_difference_grad(x), None


class _NumpyLogProb(_CallableLogProb):
    """A user's numpy callable; gradients by central finite differences (2 * dim calls)."""

    def __init__(self, fn, dim: int, sign: float, step: float = 1e-4) -> None:
        super().__init__(fn, dim, sign)
        self.step = step

    def _numpy_log_prob(self, x: Tensor) -> Tensor:
        array = x.detach().cpu().double().numpy()
        raw = np.asarray(self.fn(array))
        if raw.dtype.kind not in "biuf":  # complex, strings, objects: not a log-density
            raise EnergyError(
                "the wrapped numpy function must return real numbers (an array of shape "
                f"({array.shape[0]},)); got an array of dtype {raw.dtype}."
            )
        out = raw.astype(np.float64)
        if out.shape != (array.shape[0],):
            raise EnergyError(
                f"the wrapped numpy function must return an array of shape ({array.shape[0]},) "
                f"for an input of shape {array.shape}; got {out.shape}."
            )
        return torch.from_numpy(self.sign * out).to(device=x.device, dtype=x.dtype)

    def _finite_difference_grad(self, x: Tensor) -> Tensor:
        n, d = x.shape
        offsets = self.step * torch.eye(d, dtype=torch.float64, device=x.device)
        xd = x.detach().double()
        plus = (xd[:, None, :] + offsets).reshape(n * d, d)
        minus = (xd[:, None, :] - offsets).reshape(n * d, d)
        diff = self._numpy_log_prob(plus).double() - self._numpy_log_prob(minus).double()
        return (diff.reshape(n, d) / (2 * self.step)).to(x.dtype)

    def _log_prob(self, x: Tensor) -> Tensor:
        return _FiniteDifferenceLogProb.apply(x, self)

    def _grad_log_prob(self, x: Tensor) -> Tensor:
        return self._finite_difference_grad(x)


def _wrap(fn: Callable, dim: int, sign: float, backend: str, context=None) -> Energy:
    if context is not None:
        from ._conditional import conditional

        return conditional(fn, dim, sign, backend, context)
    if backend == "torch":
        return _CallableLogProb(fn, dim, sign)
    if backend == "numpy":
        return _NumpyLogProb(fn, dim, sign)
    raise ValueError(f"'backend' must be one of ['numpy', 'torch']; got {backend!r}.")


def from_log_prob(fn: Callable, dim: int, *, backend: str = "torch", context=None) -> Energy:
    """Wrap a user's **log-density** ``log rho(x)`` (larger is more probable) as an :class:`Energy`.

    Parameters
    ----------
    fn : callable
        Maps a batch of shape ``(n, dim)`` to ``log rho`` of shape ``(n,)``. With
        ``backend='torch'`` it receives and returns torch tensors and is differentiated with
        autograd; with ``backend='numpy'`` it receives and returns numpy arrays (float64) and
        its gradient is taken by central finite differences (``2 * dim`` extra calls per batch).
    dim : int
        Dimension of the sample space.
    backend : {'torch', 'numpy'}, default='torch'
        The array library ``fn`` works with.
    context : Box, FiniteSet or callable, optional
        Makes the result a family of densities over a context ``c`` (a temperature, a prior
        scale, a dataset): ``fn(x, c)`` then receives a batch ``x`` and the contexts ``c``
        of shape ``(n, k)``, one per row, and ``context`` is their domain, from which a
        sampler draws ``c`` while training: :class:`~skcds.energies.Box` (uniform),
        :class:`~skcds.energies.FiniteSet`, or a sampler ``fn(n, generator) -> (n, k)``.
        Needs ``backend='torch'``. See :doc:`/families`.

    Returns
    -------
    Energy
        A :class:`~skcds.energies.ConditionalEnergy` when ``context`` is given.

    See Also
    --------
    from_energy : the same for an energy ``E(x) = -log rho(x)``.

    Notes
    -----
    A fitted sampler keeps its energy; joblib can pickle it only if ``fn`` is a module-level
    function (not a lambda or a closure).

    Examples
    --------
    >>> import numpy as np
    >>> from skcds.energies import from_log_prob
    >>> energy = from_log_prob(lambda x: -0.5 * (x ** 2).sum(1), dim=2, backend="numpy")
    >>> energy.grad_log_prob(torch.ones(1, 2, dtype=torch.float64)).round(decimals=6)
    tensor([[-1., -1.]], dtype=torch.float64)
    """
    return _wrap(fn, dim, 1.0, backend, context)


def from_energy(fn: Callable, dim: int, *, backend: str = "torch", context=None) -> Energy:
    """Wrap a user's **energy** ``E(x) = -log rho(x)`` (smaller is more probable).

    The result is an :class:`Energy` with ``log_prob(x) = -fn(x)``.

    Parameters
    ----------
    fn : callable
        Maps a batch of shape ``(n, dim)`` to ``E`` of shape ``(n,)``; see
        :func:`from_log_prob` for the backends.
    dim : int
        Dimension of the sample space.
    backend : {'torch', 'numpy'}, default='torch'
        The array library ``fn`` works with.
    context : Box, FiniteSet or callable, optional
        A family of energies ``fn(x, c)`` over a context; see :func:`from_log_prob`.

    Returns
    -------
    Energy

    See Also
    --------
    from_log_prob : the same for a log-density.

    Examples
    --------
    >>> import torch
    >>> from skcds.energies import from_energy
    >>> energy = from_energy(lambda x: 0.5 * (x ** 2).sum(-1), dim=2)
    >>> energy.log_prob(torch.ones(1, 2))
    tensor([-1.])
    """
    return _wrap(fn, dim, -1.0, backend, context)
