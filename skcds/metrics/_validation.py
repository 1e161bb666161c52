"""Input checks shared by the metrics: sample sets, weights and size limits (style rule R2)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

ArrayLike = np.ndarray | Tensor  # what every metric accepts

# Dense (n, m) cost or kernel matrices above this many entries do not fit comfortably in
# memory (10**8 float64 entries are 800 MB per matrix) and the solvers take minutes.
MAX_PAIRS = 10**8


def as_tensor(x: ArrayLike, name: str) -> Tensor:
    """Return ``x`` as a floating torch tensor (numpy arrays are not copied when possible)."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    elif not isinstance(x, Tensor):
        raise TypeError(
            f"'{name}' must be a numpy array or a torch tensor; got {type(x).__name__}."
        )
    if x.is_complex():
        raise TypeError(f"'{name}' must be real; got dtype {x.dtype}.")
    return x.detach() if x.is_floating_point() else x.detach().to(torch.float64)


def check_samples(
    x: ArrayLike, name: str, dim: int | None = None, rows: str = "n_samples"
) -> Tensor:
    """Check a sample set: a finite floating tensor of shape ``(n, d)`` with ``n >= 1``;
    ``dim`` is the ``d`` of 'X' when ``x`` must match it."""
    x = as_tensor(x, name)
    if x.ndim != 2 or (dim is not None and x.shape[1] != dim):
        expected = f"({rows}, n_features)" if dim is None else f"({rows}, {dim}) to match 'X'"
        raise ValueError(f"'{name}' must be of shape {expected}; got shape {tuple(x.shape)}.")
    if x.shape[0] == 0:
        raise ValueError(f"'{name}' must contain at least one sample; got shape {tuple(x.shape)}.")
    bad = int((~torch.isfinite(x)).sum())
    if bad:
        raise ValueError(
            f"'{name}' contains {bad} non-finite value(s) (NaN or inf); metrics need finite "
            "samples."
        )
    return x


def check_pair(
    x: ArrayLike, y: ArrayLike, dtype: torch.dtype | None = torch.float64
) -> tuple[Tensor, Tensor]:
    """Check two sample sets with the same number of features, on one device.

    ``dtype=None`` keeps the promoted input dtype (the reference Sinkhorn's behaviour);
    otherwise both are cast to ``dtype``.
    """
    x, y = check_samples(x, "X"), as_tensor(y, "Y")
    if x.device != y.device:
        raise ValueError(f"'X' and 'Y' must be on the same device; got {x.device} and {y.device}.")
    y = check_samples(y, "Y", dim=x.shape[1])
    dtype = torch.promote_types(x.dtype, y.dtype) if dtype is None else dtype
    return x.to(dtype), y.to(dtype)


def check_size(n: int, m: int, what: str) -> None:
    """Refuse dense ``(n, m)`` problems larger than :data:`MAX_PAIRS` entries."""
    if n * m > MAX_PAIRS:
        raise ValueError(
            f"{what} builds a dense ({n}, {m}) matrix: {n * m:,} entries exceed the limit of "
            f"{MAX_PAIRS:,} (about 10,000 samples per set); subsample X and Y."
        )


def check_positive(value: float, name: str) -> float:
    """Check a strictly positive finite real number."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"'{name}' must be a real number > 0; got {type(value).__name__}.")
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"'{name}' must be a real number > 0; got {value!r}.")
    return float(value)


def check_max_iter(value: int) -> int:
    """Check an iteration budget: an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"'max_iter' must be an int >= 1; got {value!r}.")
    return int(value)
