"""Export of samples (and their weights and log-densities) to ArviZ.

ArviZ is optional: it is imported when :func:`to_inference_data` runs. Its ``from_dict``
changed in 1.0: 0.x takes one keyword per group (``from_dict(posterior={...},
sample_stats={...})``) and returns an ``InferenceData``; 1.x takes one nested dict
(``from_dict({"posterior": {...}, "sample_stats": {...}})``) and returns an
``xarray.DataTree``. :func:`_groups_as_keywords` tells them apart.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["to_inference_data"]

_INSTALL_HINT = "to_inference_data needs ArviZ, which is not installed: pip install arviz"
_RESERVED = ("chain", "draw")  # ArviZ's sample dimensions


def _import_arviz():
    try:
        import arviz
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    return arviz


def _groups_as_keywords(from_dict, version: str) -> bool:
    """Whether ``from_dict`` takes one keyword per group (ArviZ 0.x) or a nested dict (1.x).

    Read from the signature (0.x names its first parameter ``posterior``); the major
    version (``arviz.__version__``) decides when the signature cannot be read; an
    unparsable version counts as 0.x.
    """
    try:
        params = inspect.signature(from_dict).parameters
    except (TypeError, ValueError):
        major = re.match(r"\d+", version)
        return major is None or int(major.group()) < 1
    return "posterior" in params


def _as_numpy(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise TypeError(f"'{name}' must be a real numeric array; got dtype {x.dtype}.")
    return x


def _blocks(var_names, d: int) -> dict[str, int | list[int]]:
    """Variable name -> a column (scalar variable) or a list of columns (vector variable)."""
    if var_names is None:
        return {"x": list(range(d))}
    if isinstance(var_names, str) or not isinstance(var_names, Sequence | Mapping):
        raise TypeError(
            "'var_names' must be None, a list of names (one per column) or a dict of "
            f"name -> number of columns or slice; got {type(var_names).__name__}."
        )
    if not isinstance(var_names, Mapping):
        names = list(var_names)
        if len(names) != d:
            raise ValueError(
                f"'var_names' has {len(names)} name(s) for the {d} column(s) of 'samples'; "
                "give one name per column, or a dict of name -> number of columns."
            )
        if len(set(names)) != len(names):
            raise ValueError(f"'var_names' has repeated names: {names}.")
        blocks = dict(zip(names, range(d), strict=True))
    else:
        blocks, start = {}, 0
        for name, block in var_names.items():
            if isinstance(block, slice):
                if block.stop is not None and block.stop > d:
                    cols = list(range(block.stop))  # reported as too many columns below
                else:
                    cols = list(range(d)[block])
                if not cols:
                    raise ValueError(f"'var_names[{name!r}]' = {block} selects no column.")
                blocks[name], start = cols, cols[-1] + 1
            elif isinstance(block, int | np.integer) and not isinstance(block, bool):
                if block < 1:
                    raise ValueError(
                        f"'var_names[{name!r}]' must be a positive number of columns; got {block}."
                    )
                cols = list(range(start, start + int(block)))
                blocks[name], start = (start if block == 1 else cols), start + int(block)
            else:
                raise TypeError(
                    f"'var_names[{name!r}]' must be a number of columns or a slice; got "
                    f"{type(block).__name__}."
                )
            if cols[-1] >= d:
                raise ValueError(
                    f"'var_names' needs more columns than the {d} of 'samples' (at {name!r}); "
                    "the blocks must cover the columns exactly once."
                )
        counts = np.zeros(d, dtype=int)
        for block in blocks.values():
            counts[block] += 1
        if not (counts == 1).all():
            raise ValueError(
                f"'var_names' must cover each of the {d} column(s) of 'samples' exactly once; "
                f"missing: {np.flatnonzero(counts == 0).tolist()}, repeated: "
                f"{np.flatnonzero(counts > 1).tolist()}."
            )
    for name in blocks:
        if not isinstance(name, str) or not name or name in _RESERVED:
            raise ValueError(
                f"variable names must be non-empty strings other than {_RESERVED}; got {name!r}."
            )
    return blocks


def _per_draw(x: Any, name: str, n: int) -> np.ndarray:
    x = _as_numpy(x, name).astype(np.float64)
    if x.shape != (n,):
        raise ValueError(f"'{name}' must be of shape ({n},) to match 'samples'; got {x.shape}.")
    return x[None]


def to_inference_data(
    samples,
    *,
    log_weights=None,
    log_density=None,
    var_names=None,
    coords_names=None,
):
    """Samples as an ArviZ ``InferenceData``: one chain of ``n`` draws.

    The samples go to the ``posterior`` group, split into named variables; importance
    log-weights and log-densities, when given, go to ``sample_stats`` (``log_weight`` and
    ``lp``), so that ArviZ's summaries, diagnostics and plots apply. The draws are those of
    the sampler, unweighted: ``az.summary`` reports unweighted means.

    Parameters
    ----------
    samples : array-like of shape (n_samples, n_features)
        The draws (numpy array or torch tensor).
    log_weights : array-like of shape (n_samples,), default=None
        Log importance weights of the draws, stored as ``sample_stats.log_weight``.
    log_density : array-like of shape (n_samples,), default=None
        Log-density (e.g. unnormalised log-target) of each draw, stored as
        ``sample_stats.lp``.
    var_names : None, list of str or dict, default=None
        How the columns become variables:

        * ``None``: a single variable ``x`` with a dimension ``x_dim_0`` of size
          ``n_features``;
        * a list of ``n_features`` names: one scalar variable per column;
        * a dict name -> int or slice: an int ``m`` takes the next ``m`` columns (a vector
          variable with dimension ``<name>_dim_0``, or a scalar when ``m == 1``); a slice
          takes those columns (always a vector variable) and the next int block starts
          after it. Together the blocks must cover every column exactly once, e.g.
          ``{"beta": 2, "sigma": 1}`` for 3 columns.
    coords_names : dict or sequence, default=None
        Labels of the entries of vector variables, as coordinates of their dimension:
        a dict vector-variable name -> sequence of labels, or (with ``var_names=None``)
        the sequence of ``n_features`` labels of ``x``.

    Returns
    -------
    arviz.InferenceData or xarray.DataTree
        ``InferenceData`` with ArviZ 0.x, ``DataTree`` (its successor) with ArviZ >= 1;
        both give ``idata.posterior[name]`` with dimensions ``(chain, draw, ...)`` of sizes
        ``(1, n_samples, ...)``.

    Raises
    ------
    ImportError
        If ArviZ is not installed (``pip install arviz``).
    ValueError
        If ``samples`` is not two-dimensional, ``var_names`` does not match its columns,
        ``coords_names`` does not match the vector variables, or ``log_weights`` /
        ``log_density`` is not of shape ``(n_samples,)``.
    TypeError
        If ``var_names`` or an input array has the wrong type.

    Examples
    --------
    >>> import numpy as np
    >>> import pytest; az = pytest.importorskip("arviz")  # the example needs ArviZ
    >>> from skcds._arviz import to_inference_data
    >>> x = np.arange(12.0).reshape(4, 3)
    >>> idata = to_inference_data(x, var_names={"beta": 2, "sigma": 1},
    ...                           log_weights=np.zeros(4))
    >>> idata.posterior["beta"].shape, idata.posterior["sigma"].shape
    ((1, 4, 2), (1, 4))
    >>> idata.posterior["sigma"].values.tolist()
    [[2.0, 5.0, 8.0, 11.0]]
    >>> "log_weight" in idata.sample_stats
    True
    """
    x = _as_numpy(samples, "samples")
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(
            "'samples' must be of shape (n_samples, n_features) with at least one sample and "
            f"one feature; got shape {x.shape}."
        )
    n, d = x.shape
    blocks = _blocks(var_names, d)
    posterior, dims, coords = {}, {}, {}
    for name, block in blocks.items():
        posterior[name] = x[None, :, block]
        if isinstance(block, list):
            dims[name] = [f"{name}_dim_0"]
    if coords_names is not None:
        if not isinstance(coords_names, Mapping):
            if var_names is not None:
                raise ValueError(
                    "'coords_names' must be a dict of vector-variable name -> labels when "
                    "'var_names' is given; a plain sequence labels the columns of 'x' only."
                )
            coords_names = {"x": coords_names}
        for name, labels in coords_names.items():
            if name not in dims:
                raise ValueError(
                    f"'coords_names' names {name!r}, which is not a vector variable; the vector "
                    f"variables are {sorted(dims)}."
                )
            labels = list(labels)
            size = posterior[name].shape[2]
            if len(labels) != size:
                raise ValueError(
                    f"'coords_names[{name!r}]' has {len(labels)} label(s) for {size} entries."
                )
            coords[dims[name][0]] = labels
    sample_stats = {}
    if log_weights is not None:
        sample_stats["log_weight"] = _per_draw(log_weights, "log_weights", n)
    if log_density is not None:
        sample_stats["lp"] = _per_draw(log_density, "log_density", n)

    az = _import_arviz()
    groups = {"posterior": posterior}
    if sample_stats:
        groups["sample_stats"] = sample_stats
    options = {"coords": coords or None, "dims": dims or None}
    if _groups_as_keywords(az.from_dict, getattr(az, "__version__", "0")):
        return az.from_dict(**groups, **options)
    return az.from_dict(groups, **options)
