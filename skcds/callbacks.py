"""Callbacks for the ``callbacks`` parameter of the samplers.

A callback is any callable ``callback(estimator, record)``; it runs after every training
iteration, with ``record`` the iteration's row of ``history_``.
"""

from __future__ import annotations

import os

from ._core import distributed
from ._estimators._validation import positive_int
from ._persistence import write_model

__all__ = ["Checkpoint"]


class Checkpoint:
    """Save the sampler to ``path`` every ``every`` iterations, for long runs.

    The file is written with :func:`skcds.save` (parameters, weights, optimiser and
    learning-rate state, random generator, ``history_``; ``callbacks`` stored as ``None``),
    under a temporary name and renamed over ``path``, so the last checkpoint survives a
    crash or a kill at any moment, even during a write.

    Resume with :func:`skcds.load` and ``warm_start``: ``max_iter`` more iterations from the
    saved one. Resuming for the iterations that remain reproduces the uninterrupted run
    exactly (same random draws, same updates)::

        sampler = skcds.load(path)  # skcds.load(path, energy=energy) for your own energy
        remaining = sampler.max_iter - sampler.n_iter_
        sampler.set_params(warm_start=True, max_iter=remaining).fit(energy)

    Parameters
    ----------
    path : str or path-like
        The checkpoint file (overwritten at every save).
    every : int, default=1000
        Save after iterations ``every``, ``2 * every``, ... (counted over all fits).

    Examples
    --------
    >>> import os, tempfile
    >>> import skcds
    >>> from skcds.callbacks import Checkpoint
    >>> from skcds.energies import GaussianMixture
    >>> path = os.path.join(tempfile.mkdtemp(), "checkpoint.skcds")
    >>> sampler = skcds.DiffusionSampler(
    ...     n_steps=4, max_iter=6, batch_size=8, random_state=0,
    ...     callbacks=[Checkpoint(path, every=4)],
    ... ).fit(GaussianMixture.grid())
    >>> skcds.load(path).n_iter_
    4
    """

    def __init__(self, path, every: int = 1000) -> None:
        if not positive_int().accepts(every):
            raise ValueError(f"Checkpoint's 'every' must be an int >= 1; got {every!r}.")
        self.path, self.every = os.fspath(path), int(every)
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder):  # fail now, not after the first `every` iterations
            raise FileNotFoundError(
                f"Checkpoint's 'path' is in a folder that does not exist: {folder!r}."
            )

    def __call__(self, estimator, record: dict) -> None:
        """Save ``estimator`` if ``record`` closes a multiple of ``every`` iterations (on
        rank 0 only, when training data-parallel: every rank holds the same model)."""
        if (record["iteration"] + 1) % self.every == 0 and distributed.rank() == 0:
            write_model(estimator, self.path, drop_callbacks=True)

    def __repr__(self) -> str:
        return f"Checkpoint({self.path!r}, every={self.every})"
