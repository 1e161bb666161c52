"""Parameter validation from a declarative table, energy checks, random generators, devices."""

from __future__ import annotations

import difflib
import numbers
import warnings

import numpy as np
import torch
from sklearn.utils import check_random_state

from ..energies import Energy
from ..energies._base import dynamics_view
from ..exceptions import ImproperDensityWarning


class Constraint:
    """A parameter constraint: accepted types, a predicate and how to describe it."""

    def __init__(self, types, check=None, description: str = "", options=None) -> None:
        self.types, self.check, self.description, self.options = types, check, description, options

    def accepts(self, value) -> bool:
        """Whether ``value`` satisfies the constraint (bools are not numbers here)."""
        if self.options is not None:
            return value in self.options
        ok = isinstance(value, self.types) and (self.types is bool or not isinstance(value, bool))
        return ok and (self.check is None or bool(self.check(value)))

    def validate(self, owner: str, name: str, value) -> None:
        if self.options is not None:
            if value not in self.options:
                raise ValueError(_unknown_option(owner, name, value, self.options))
            return
        if not self.accepts(value):
            raise ValueError(
                f"The '{name}' parameter of {owner} must be {self.description}. "
                f"Got {value!r} instead."
            )


def _unknown_option(owner: str, name: str, value, options) -> str:
    message = (
        f"The '{name}' parameter of {owner} must be one of {sorted(map(str, options))}. "
        f"Got {value!r} instead."
    )
    close = difflib.get_close_matches(str(value), [str(o) for o in options], n=1)
    return message + (f" Did you mean {close[0]!r}?" if close else "")


def positive_int(description="an int >= 1"):
    return Constraint(numbers.Integral, lambda v: v >= 1, description)


def positive_float(description="a float > 0"):
    return Constraint(numbers.Real, lambda v: v > 0 and np.isfinite(v), description)


def optional(constraint: Constraint) -> Constraint:
    """``None`` or a value that ``constraint`` accepts."""
    return Constraint(
        object, lambda v: v is None or constraint.accepts(v), f"None or {constraint.description}"
    )


def one_of(*options):
    return Constraint(object, options=options)


def validate_params(estimator, table: dict) -> None:
    """Check every parameter of ``estimator`` named in ``table``; never rewrites them."""
    owner = type(estimator).__name__
    for name, constraint in table.items():
        constraint.validate(owner, name, getattr(estimator, name))


def check_energy(energy, owner: str) -> Energy:
    """An :class:`Energy` whose ``log_prob`` passes a probe batch, or a clear error."""
    if energy is None:
        raise ValueError(
            f"{owner}.fit needs an energy: call fit(energy) or pass energy= to the constructor."
        )
    if isinstance(energy, (np.ndarray, torch.Tensor, list, tuple)):
        raise TypeError(
            f"{owner}.fit expects an skcds.energies.Energy as 'energy'; got an array-like "
            f"({type(energy).__name__}). Wrap a log-density with "
            "skcds.energies.from_log_prob(fn, dim) or an energy with from_energy(fn, dim)."
        )
    if not isinstance(energy, Energy):
        raise TypeError(
            f"{owner}.fit expects an skcds.energies.Energy as 'energy'; got "
            f"{type(energy).__name__}. Wrap a callable with skcds.energies.from_log_prob."
        )
    return energy


def probe_energy(energy: Energy, x: torch.Tensor, score: bool = True) -> None:
    """Evaluate ``log_prob`` (and the score, if ``score``) once on prior samples ``x``; raise
    on bad output, and warn if the density obviously does not decay (see
    :func:`warn_if_improper`)."""
    near = energy.log_prob(x)
    if score:
        dynamics_view(energy)._grad_log_prob(x)  # raises on a bad or missing score
    warn_if_improper(energy, near)


_FAR = 1e3  # radius of the decay check, far beyond any benchmark target's mass


def warn_if_improper(energy: Energy, near: torch.Tensor) -> None:
    """Warn if ``log rho`` is, in most of 16 fixed directions, at least as large at radius
    1000 as its median near the origin: such a density does not decay and its ``Z`` is
    probably infinite (a flat or growing log-density, or a sign error: an energy passed as
    a log-density)."""
    directions = torch.randn(16, energy.dim, generator=torch.Generator().manual_seed(0))
    far_points = _FAR * directions / directions.norm(dim=1, keepdim=True)
    with torch.no_grad():
        far = dynamics_view(energy)._log_prob(far_points.to(near))
    finite_near = near[torch.isfinite(near)]
    if finite_near.numel() == 0 or torch.isnan(far).any():
        return  # nothing to compare: no verdict
    not_decaying = (far >= finite_near.median() - 1.0).float().mean()
    if not_decaying > 0.5:
        warnings.warn(
            f"{type(energy).__name__}.log_prob does not decay: at distance {_FAR:g} from the "
            f"origin it is at least as large as near it in {int(16 * not_decaying)} of 16 "
            "directions, so the density is probably not normalizable and no sampler can "
            "converge to it. Check the sign (from_log_prob wants log rho = -E, from_energy "
            "wants E) and that the density is proper (e.g. a prior on every parameter).",
            ImproperDensityWarning,
            stacklevel=4,
        )


def make_generator(random_state, device: torch.device) -> torch.Generator:
    """A private ``torch.Generator`` on ``device`` from None, an int or a ``RandomState``."""
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        seed = int(random_state)
    else:
        seed = int(check_random_state(random_state).randint(0, 2**31 - 1))
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


def resolve_device(device) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"The 'device' parameter is {device!r}, but CUDA is not available.")
    return resolved


_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_dtype(dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype) and dtype in _DTYPES.values():
        return dtype
    return _DTYPES[dtype]


DTYPE = Constraint(object, options=("float32", "float64", torch.float32, torch.float64))


def _is_device(value) -> bool:
    if value == "auto":
        return True
    try:
        torch.device(value)
    except (RuntimeError, TypeError, ValueError):
        return False
    return True


def _is_seed(value) -> bool:
    integral = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    return (
        value is None
        or (integral and 0 <= value < 2**32)
        or isinstance(value, np.random.RandomState)
    )


def _are_callbacks(value) -> bool:
    return value is None or (isinstance(value, (list, tuple)) and all(map(callable, value)))


DEVICE = Constraint(object, _is_device, "'auto' or a torch device such as 'cpu' or 'cuda:0'")
RANDOM_STATE = Constraint(object, _is_seed, "None, an int in [0, 2**32) or a RandomState")
CALLBACKS = Constraint(object, _are_callbacks, "None or a list of callables")
