"""Parameter validation from a declarative table, random generators, devices."""

from __future__ import annotations

import difflib
import numbers

import numpy as np
import torch
from sklearn.utils import check_random_state


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


def auto_or(constraint: Constraint) -> Constraint:
    """``'auto'`` or a value that ``constraint`` accepts."""
    return Constraint(
        object,
        lambda v: (isinstance(v, str) and v == "auto") or constraint.accepts(v),
        f"'auto' or {constraint.description}",
    )


def one_of(*options):
    return Constraint(object, options=options)


def validate_params(estimator, table: dict) -> None:
    """Check every parameter of ``estimator`` named in ``table``; never rewrites them."""
    owner = type(estimator).__name__
    for name, constraint in table.items():
        constraint.validate(owner, name, getattr(estimator, name))


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


# Adam moves each weight by about the learning rate per step: above 1 is a typo (5e3 for
# 5e-3) that overflows the weights, not a setting
LEARNING_RATE = Constraint(numbers.Real, lambda r: 0 < r <= 1, "a float in (0, 1]")
DEVICE = Constraint(object, _is_device, "'auto' or a torch device such as 'cpu' or 'cuda:0'")
RANDOM_STATE = Constraint(object, _is_seed, "None, an int in [0, 2**32) or a RandomState")
N_THREADS = Constraint(
    object,
    lambda n: n is None or (isinstance(n, str) and n == "auto") or positive_int().accepts(n),
    "'auto', None or an int >= 1",
)
CALLBACKS = Constraint(object, _are_callbacks, "None or a list of callables")
