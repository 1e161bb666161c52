"""Private helpers shared by the built-in targets: argument checks and buffer conversion."""

from __future__ import annotations

import numbers

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor

__all__ = [
    "as_float64_array",
    "categorical",
    "check_positive_float",
    "check_positive_int",
    "sample_device_dtype",
    "to_buffer",
]


def check_positive_int(value: object, name: str, minimum: int = 1) -> int:
    """Return ``value`` as an int if it is an integer ``>= minimum``; raise otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"'{name}' must be an int >= {minimum}; got {value!r}.")
    return int(value)


def check_positive_float(value: object, name: str) -> float:
    """Return ``value`` as a float if it is a finite real number ``> 0``; raise otherwise."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not np.isfinite(value) or value <= 0:
        raise ValueError(f"'{name}' must be a finite float > 0; got {value!r}.")
    return float(value)


def as_float64_array(value: ArrayLike, name: str, ndim: int | None = None) -> np.ndarray:
    """Convert an array-like (numpy, torch, list) to a finite float64 array (``ndim`` axes)."""
    if isinstance(value, Tensor):
        value = value.detach().cpu().numpy()
    try:
        if value is None:
            raise TypeError
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"'{name}' must be a real array-like; got {type(value).__name__}."
        ) from None
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"'{name}' must be a {ndim}-D array; got an array of shape {array.shape}.")
    if not np.isfinite(array).all():
        raise ValueError(f"'{name}' must contain only finite values; got NaN or inf.")
    return array


def to_buffer(array: ArrayLike) -> Tensor:
    """A float64 CPU tensor holding a copy of ``array``, ready for ``register_buffer``."""
    return torch.as_tensor(np.array(array, dtype=np.float64))


def sample_device_dtype(
    module: torch.nn.Module, generator: torch.Generator | None
) -> tuple[torch.device, torch.dtype]:
    """Device (the generator's, else the buffers') and floating dtype (the buffers') of samples."""
    anchor = next(b for b in module.buffers() if b.is_floating_point())
    device = generator.device if generator is not None else anchor.device
    return device, anchor.dtype


def categorical(probs: Tensor, n: int, generator: torch.Generator | None) -> Tensor:
    """``n`` draws of a category index with probabilities ``probs`` (inverse CDF, any ``n``)."""
    cdf = torch.cumsum(probs, 0)
    u = torch.rand(n, generator=generator, device=probs.device, dtype=probs.dtype) * cdf[-1]
    return torch.searchsorted(cdf, u, right=True).clamp_(max=probs.shape[0] - 1)
