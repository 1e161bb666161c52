"""Loaders for the benchmark data files (Finnish pines, UCI Ionosphere).

The package ships no data and never downloads any. A loader reads its file from ``path``
when given, else from the first of these folders that holds it:

1. the folder named by the environment variable ``SKCDS_DATA``;
2. ``./shared/data`` and ``../shared/data``, relative to the current directory;
3. ``<repository root>/../shared/data``, relative to the installed package.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

__all__ = ["load_ionosphere", "load_pines"]

_ENV_VAR = "SKCDS_DATA"
# the project layout keeps the data beside the repository: <root>/../shared/data
_PACKAGE_DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _search_dirs() -> list[Path]:
    """The folders searched for a data file, in order, without duplicates."""
    dirs = [Path(os.environ[_ENV_VAR])] if os.environ.get(_ENV_VAR) else []
    dirs += [Path.cwd() / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    dirs.append(_PACKAGE_DATA_DIR)
    unique: list[Path] = []
    for folder in dirs:
        if folder.resolve() not in [u.resolve() for u in unique]:
            unique.append(folder)
    return unique


def _find_file(filename: str, path: str | os.PathLike | None) -> Path:
    """Resolve ``path`` (a file or a folder) or search the default folders for ``filename``."""
    if path is not None:
        candidate = Path(path)
        candidate = candidate / filename if candidate.is_dir() else candidate
        if not candidate.is_file():
            raise FileNotFoundError(
                f"'path' must be the file {filename!r} or a folder that contains it; "
                f"got {str(path)!r}, and {str(candidate)!r} does not exist."
            )
        return candidate
    dirs = _search_dirs()
    for folder in dirs:
        if (folder / filename).is_file():
            return folder / filename
    looked = ", ".join(str(folder) for folder in dirs)
    raise FileNotFoundError(
        f"Could not find the data file {filename!r}; looked in: {looked}. Pass "
        f"path='/path/to/{filename}' (or a folder that contains it), or set the "
        f"{_ENV_VAR} environment variable to such a folder. skcds never downloads data."
    )


def _read_columns(file: Path, columns: list[str]) -> np.ndarray:
    """The named columns of a CSV file with a header row, as a float64 array."""
    with open(file, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        missing = [c for c in columns if c not in header]
        if missing:
            raise ValueError(f"{str(file)!r} has no column(s) {missing}; its header is {header}.")
        idx = [header.index(c) for c in columns]
        return np.array([[float(row[i]) for i in idx] for row in reader], dtype=np.float64)


def load_pines(path: str | os.PathLike | None = None) -> np.ndarray:
    """Load the Finnish pines point pattern (126 trees, coordinates in the unit square).

    This is the input of the log-Gaussian Cox process benchmark
    (:class:`skcds.energies.LGCP`).

    Parameters
    ----------
    path : str or path-like, default=None
        The file ``pines.csv`` or a folder that contains it; ``None`` searches the default
        folders (see the module docstring).

    Returns
    -------
    numpy.ndarray of shape (126, 2)
        Columns ``data_x`` and ``data_y`` of the file.

    Raises
    ------
    FileNotFoundError
        If the file is not found; the message lists every place looked.

    Examples
    --------
    >>> from skcds.datasets import load_pines
    >>> try:
    ...     points = load_pines()
    ... except FileNotFoundError:  # the data lives outside the package
    ...     points = None
    >>> points is None or points.shape == (126, 2)
    True
    """
    return _read_columns(_find_file("pines.csv", path), ["data_x", "data_y"])


def load_ionosphere(path: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load UCI Ionosphere, prepared as in the Bayesian logistic regression benchmark.

    The 34 features are standardised (zero mean, unit variance; a constant feature, such as
    the second one, is only centred, so it becomes zero) and a bias column of ones is
    prepended, giving 35 columns. Labels ``{-1, +1}`` become ``{0, 1}``.

    Parameters
    ----------
    path : str or path-like, default=None
        The file ``ionosphere.csv`` or a folder that contains it; ``None`` searches the
        default folders (see the module docstring).

    Returns
    -------
    X : numpy.ndarray of shape (351, 35)
        Bias column, then the standardised features.
    y : numpy.ndarray of shape (351,)
        Labels in ``{0, 1}`` (int64).

    Raises
    ------
    FileNotFoundError
        If the file is not found; the message lists every place looked.

    Examples
    --------
    >>> from skcds.datasets import load_ionosphere
    >>> try:
    ...     X, y = load_ionosphere()
    ... except FileNotFoundError:  # the data lives outside the package
    ...     X, y = None, None
    >>> X is None or (X.shape, y.shape) == ((351, 35), (351,))
    True
    """
    columns = [f"x{i}" for i in range(34)] + ["label"]
    data = _read_columns(_find_file("ionosphere.csv", path), columns)
    features, labels = data[:, :-1], data[:, -1]
    std = features.std(axis=0)
    std[std == 0] = 1.0  # a constant feature carries no information; avoid 0 / 0
    X = (features - features.mean(axis=0)) / std
    X = np.concatenate([np.ones((X.shape[0], 1)), X], axis=1)
    return X, (labels > 0).astype(np.int64)
