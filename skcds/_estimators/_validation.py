"""Parameter validation from a declarative table, energy checks, random generators, devices."""

from __future__ import annotations

import difflib
import math
import numbers
import warnings

import numpy as np
import torch
from sklearn.utils import check_random_state

from ..energies import Energy
from ..energies._base import _check_batch, _check_form, dynamics_view
from ..exceptions import EnergyError, ImproperDensityWarning


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


def check_moves(value, name: str) -> int:
    """A number of MCMC moves or steps (``mcmc_steps``, ``imh_steps``): an int >= 0."""
    if not Constraint(numbers.Integral, lambda m: m >= 0, "").accepts(value):
        raise ValueError(f"'{name}' must be an int >= 0; got {value!r}.")
    return int(value)


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


def check_energy(energy, owner: str, call: str | None = None) -> Energy:
    """An :class:`Energy` whose ``log_prob`` passes a probe batch, or a clear error.
    ``call``: the function named in the messages (default ``{owner}.fit``)."""
    if call is None:
        call, how = f"{owner}.fit", "call fit(energy) or pass energy= to the constructor"
    else:
        how = "pass an skcds.energies.Energy"
    if energy is None:
        raise ValueError(f"{call} needs an energy: {how}.")
    if isinstance(energy, (np.ndarray, torch.Tensor, list, tuple)):
        raise TypeError(
            f"{call} expects an skcds.energies.Energy as 'energy'; got an array-like "
            f"({type(energy).__name__}). Wrap a log-density with "
            "skcds.energies.from_log_prob(fn, dim) or an energy with from_energy(fn, dim)."
        )
    if not isinstance(energy, Energy):
        raise TypeError(
            f"{call} expects an skcds.energies.Energy as 'energy'; got "
            f"{type(energy).__name__}. Wrap a callable with skcds.energies.from_log_prob."
        )
    return energy


def probe_energy(energy: Energy, x: torch.Tensor, score: bool = True) -> None:
    """Evaluate ``log_prob`` (and the score, if ``score``) once on prior samples ``x``;
    raise on a malformed output (shape, dtype) and when every value is NaN or ``+inf``.

    Some non-finite values are not an error here: training masks them out of the loss
    (and warns if they are frequent), so the outcome of ``fit`` does not depend on
    whether these few probe points happen to hit a region where the energy is undefined.
    """
    where = type(energy).__name__
    with torch.no_grad():
        near = _check_form(energy._log_prob(_check_batch(x, energy.dim)), x, where)
    if bool((torch.isnan(near) | (near == math.inf)).all()):
        raise EnergyError(
            f"{where}.log_prob returned {x.shape[0]} non-finite value(s) (NaN or +inf) for "
            f"all {x.shape[0]} probe points drawn from the sampler's N(0, I) prior; -inf "
            "(zero density) is allowed, NaN and +inf are not. Check the energy where the "
            "prior puts its mass."
        )
    if score:
        dynamics_view(energy)._grad_log_prob(x)  # raises on a bad or missing score


# Radius of the decay check in the sampler's coordinates, a multiple of the prior's
# typical radius sqrt(dim): far enough that a proper density has decayed, near enough not
# to leave where the sampler goes (at radius 1000, exp(-1000) = 0 is no valid scale)
_FAR_PER_SQRT_DIM = 10.0


def warn_if_improper(energy: Energy, near: torch.Tensor) -> None:
    """Warn if ``log rho`` is, in most of 16 fixed directions, at least as large at radius
    ``10 sqrt(dim)`` as its median on the prior samples ``near``: such a density does not
    decay and its ``Z`` is probably infinite (a flat or growing log-density, or a sign
    error: an energy passed as a log-density), or it is far wider than the sampler's prior.
    An energy that raises or returns NaN out there gives no verdict: the check never
    stops a fit."""
    radius = _FAR_PER_SQRT_DIM * math.sqrt(energy.dim)
    directions = torch.randn(16, energy.dim, generator=torch.Generator().manual_seed(0))
    far_points = (radius * directions / directions.norm(dim=1, keepdim=True)).to(near)
    try:
        with torch.no_grad():
            near_values = energy._log_prob(near)
            far = energy._log_prob(far_points)
    except Exception:  # noqa: BLE001 - the user's model may refuse points: no verdict
        return
    finite_near = near_values[torch.isfinite(near_values)]
    if finite_near.numel() == 0 or torch.isnan(far).any():
        return  # nothing to compare: no verdict
    not_decaying = (far >= finite_near.median() - 1.0).float().mean()
    if not_decaying > 0.5:
        warnings.warn(
            f"{type(energy).__name__}.log_prob does not decay: at distance {radius:.3g} "
            "from the origin of the sampler's coordinates (10 prior radii) it is at least as "
            f"large as near it in {int(16 * not_decaying)} of 16 directions, so the density "
            "is probably not normalizable and no sampler can converge to it. Check the sign "
            "(from_log_prob wants log rho = -E, from_energy wants E) and that the density is "
            "proper (e.g. a prior on every parameter); if it is proper but very wide, use "
            "precondition='laplace' or rescale it.",
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
