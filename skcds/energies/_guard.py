"""The one place skcds evaluates a user's model: the guarded view every sampler loop calls.

A user's model may fail at a few points of a batch for reasons that are not bugs: a
``torch.distributions`` argument check on a value that rounded onto its support's edge, a
Cholesky factorisation that fails at extreme hyperparameters, ``log`` of a rounded zero, NaN
from numpy code. The density there is simply tiny. The guarded view gives such a point
**zero density** (``log rho = -inf``) and uses the rest of the batch unchanged:

- an exception of the model's own kinds (:data:`MODEL_ERRORS`: ``ValueError``,
  ``RuntimeError`` such as a failed Cholesky, ``ArithmeticError``) isolates the rows that
  raise by re-evaluating the batch in halves (about ``2 log2(n)`` extra calls per failing
  row); their log-density is ``-inf``, and their score and Hessian zero. The score is
  only an input of the samplers' control (any control gives exact path weights), so a
  trajectory that passes such a point goes on with exact weights; one that ends there
  gets weight zero;
- a NaN or ``+inf`` log-density becomes ``-inf``.

Programming errors still raise at once: ``TypeError``, ``IndexError``, torch's shape,
dtype, device and autograd errors (recognised by their messages), a malformed output
(:class:`~skcds.exceptions.EnergyError`) and running out of memory. The public entry points
of the samplers record what the view met and warn once per call
(:class:`~skcds.exceptions.ModelFailureWarning`, decorator :func:`reports_model_failures`).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import warnings

import torch
from torch import Tensor

from ..exceptions import EnergyError, ModelFailureWarning
from ._base import Energy, _check_form

__all__ = [
    "MODEL_ERRORS",
    "Failures",
    "dynamics_view",
    "is_model_failure",
    "recording",
    "reports_model_failures",
]

MODEL_ERRORS = (ValueError, RuntimeError, ArithmeticError)

# torch's words for an error of the code, whatever the point: these are never isolated
_CODE_ERRORS = (
    "size of tensor",
    "shapes cannot be multiplied",
    "size mismatch",
    "is invalid for input of size",
    "dimension out of range",
    "must match the size",
    "expected scalar type",
    "same device",
    "does not require grad",
    "does not have a grad_fn",
    "appears to not have been used in the graph",
)


def is_model_failure(error: BaseException) -> bool:
    """Whether ``error`` says the model failed at its point (isolated, zero density) rather
    than that its code is wrong (raised at once)."""
    if isinstance(error, (EnergyError, torch.OutOfMemoryError)):
        return False
    if not isinstance(error, MODEL_ERRORS):
        return False
    message = str(error).lower()
    return not (isinstance(error, RuntimeError) and any(m in message for m in _CODE_ERRORS))


class Failures:
    """What the guarded calls of a block met: rows that raised (and the first exception)
    and log-densities that were NaN or ``+inf``. The non-finite count stays a tensor
    until read, so recording it costs no host-device synchronisation."""

    def __init__(self) -> None:
        self.raised, self.first, self._nonfinite = 0, None, 0

    def note_raised(self, error: BaseException) -> None:
        self.raised += 1
        self.first = self.first if self.first is not None else error

    def note_nonfinite(self, bad: Tensor) -> None:
        if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
            return  # inside a CUDA graph: no side effects outside the captured buffers
        self._nonfinite = self._nonfinite + bad.sum()

    @property
    def nonfinite(self) -> int:
        return int(self._nonfinite)

    def __bool__(self) -> bool:
        return bool(self.raised or self.nonfinite)

    def describe(self, where: str) -> str:
        """The warning for ``where`` (the call that met the failures)."""
        parts = []
        if self.raised:
            kind = type(self.first).__name__
            parts.append(
                f"raised at {self.raised} point(s) (first: {kind}: {_first_line(self.first)})"
            )
        if self.nonfinite:
            parts.append(f"returned NaN or +inf at {self.nonfinite} point(s)")
        return (
            f"{where}: the model {' and '.join(parts)}. skcds gave those points zero density "
            "(log rho = -inf) and used the rest of each batch unchanged. If they are where "
            "the density is negligible (a value rounded onto a support's edge, a Cholesky "
            "that fails at extreme parameters) nothing is lost; if not, fix the model there."
        )


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else "(no message)"


_ACTIVE: contextvars.ContextVar[Failures | None] = contextvars.ContextVar(
    "skcds_model_failures", default=None
)


@contextlib.contextmanager
def recording(private: bool = False):
    """Record the guarded calls' failures within the block into one :class:`Failures`
    (yielded). Nested blocks share the outermost record, unless ``private``: skcds's own
    probes (the decay check, the probe batch) keep theirs out of the user's warning."""
    outer = _ACTIVE.get()
    if outer is not None and not private:
        yield outer
        return
    failures = Failures()
    token = _ACTIVE.set(failures)
    try:
        yield failures
    finally:
        _ACTIVE.reset(token)


def reports_model_failures(function):
    """Decorate a public sampler method or function: one :class:`ModelFailureWarning` per
    call (the outermost one) naming how many points failed and the first message."""
    is_method = "." in function.__qualname__

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        outermost = _ACTIVE.get() is None
        with recording() as failures:
            result = function(*args, **kwargs)
        if outermost and failures:
            owner = type(args[0]).__name__ if is_method else "skcds"
            where = f"{owner}.{function.__name__}"
            warnings.warn(failures.describe(where), ModelFailureWarning, stacklevel=2)
        return result

    return wrapper


def _record(method):
    """Note a failure into the active record (none outside a recorded block)."""
    failures = _ACTIVE.get()
    return getattr(failures, method) if failures is not None else lambda *_: None


def _by_rows(fn, x: Tensor, fill) -> Tensor:
    """``fn(x)``; where it raises a model failure, the batch again in halves, down to the
    single rows that raise, whose output is ``fill(row)``."""
    try:
        return fn(x)
    except BaseException as error:
        if not is_model_failure(error):
            raise
        if x.shape[0] <= 1:
            _record("note_raised")(error)
            return fill(x)
    half = x.shape[0] // 2
    parts = [_by_rows(fn, x[:half], fill), _by_rows(fn, x[half:], fill)]
    return torch.cat([p.to(x.dtype) for p in parts])


def _guarded(fn, x: Tensor, fill) -> tuple[Tensor, Tensor]:
    """``fn(x)`` with the rows where it raises a model failure isolated (:func:`_by_rows`,
    ``fill``) and NaN for the rows of ``x`` that are not finite; and the mask of the finite
    ones. Those rows never reach the model (they are zeros there): they belong to
    trajectories that died upstream, so what the model does at them is not its failure
    (torch.distributions' validation raises on NaN). No host-device synchronisation."""
    finite = torch.isfinite(x).all(-1)
    out = _by_rows(fn, torch.where(finite[:, None], x, 0.0), fill)
    return torch.where(finite.view(-1, *(1,) * (out.dim() - 1)), out, math.nan), finite


class _Dynamics(Energy):
    """``energy`` as skcds's loops call it: guarded (see the module), and every output's
    form checked (shape and dtype, no device sync), so a fault that appears mid-training is
    an :class:`EnergyError`, not a broadcasting error deep in a rollout.
    With ``score=False`` (a control without a Langevin term) the score is the zero function
    of ``x`` (differentiable, zero Hessian): the target is then never evaluated, nor
    differentiated, between the ends of a path."""

    def __init__(self, energy: Energy, score: bool = True) -> None:
        super().__init__()
        self.target, self.dim, self.score = energy, energy.dim, score
        self.where = type(energy).__name__

    def _log_prob(self, x: Tensor) -> Tensor:
        def log_prob(rows):
            return _check_form(self.target._log_prob(rows), rows, self.where)

        out, finite = _guarded(log_prob, x, lambda rows: rows.new_full(rows.shape[:1], -math.inf))
        bad = (torch.isnan(out) | (out == math.inf)) & finite
        _record("note_nonfinite")(bad)
        return torch.where(bad, -math.inf, out)

    def _grad_log_prob(self, x: Tensor) -> Tensor:
        if not self.score:
            return x * 0.0 if x.requires_grad else torch.zeros_like(x)
        try:
            score, _ = _guarded(self.target._grad_log_prob, x, torch.zeros_like)
        except torch.OutOfMemoryError:
            raise
        except RuntimeError as error:  # e.g. a log-density torch cannot differentiate
            raise EnergyError(
                f"The score (gradient of log_prob) of {self.where} could not be computed: "
                f"{error}. Make log_prob differentiable by torch, wrap a numpy function with "
                "backend='numpy' (finite differences), or fit with langevin=False (the "
                "sampler then never needs the score)."
            ) from error
        if not isinstance(score, Tensor) or score.shape != x.shape:
            got = tuple(score.shape) if isinstance(score, Tensor) else type(score).__name__
            raise EnergyError(f"{self.where} score must have shape {tuple(x.shape)}; got {got}.")
        return score

    def _hessian_log_prob(self, x: Tensor) -> Tensor:
        if not self.score:
            return x.new_zeros(x.shape[0], self.dim, self.dim)
        zeros = lambda rows: rows.new_zeros(rows.shape[0], self.dim, self.dim)  # noqa: E731
        return _guarded(self.target._hessian_log_prob, x, zeros)[0]

    def transform(self, x: Tensor) -> Tensor:
        return self.target.transform(x)


def dynamics_view(energy: Energy, score: bool = True) -> Energy:
    """``energy`` for skcds's loops: guarded and checked (see :class:`_Dynamics`)."""
    return _Dynamics(energy, score)
