"""Model selection of sampler hyperparameters on a fixed energy, scored by the ELBO."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import ParameterGrid

from ._warnings import weight_check

__all__ = ["SamplerSearch", "search_sampler"]


@dataclass
class SamplerSearch:
    """The result of :func:`search_sampler`.

    Attributes
    ----------
    results : list of dict
        One row per candidate: ``params``, ``elbo`` (``-inf`` where the weights are invalid),
        ``elbo_stderr``, ``log_z``, ``ess``, ``khat``, ``valid`` and ``fit_seconds``; best first.
    best_params : dict
    best_score : float
        The best ELBO.
    best_estimator : estimator
        The best candidate, fitted.
    """

    results: list = field(default_factory=list)
    best_params: dict = field(default_factory=dict)
    best_score: float = -np.inf
    best_estimator: object = None


def search_sampler(
    sampler, param_grid, energy=None, *, n_samples: int = 4096, random_state=0, **sample_options
) -> SamplerSearch:
    """Fit one sampler per point of ``param_grid`` on ``energy`` and rank them by the ELBO.

    The ELBO ``E_q[log rho(x) - log q(x)]`` is a lower bound of ``log Z`` for every valid
    sampler whatever its hyperparameters, so a greater ELBO means a sampler closer to the
    target in KL divergence: a meaningful greater-is-better score on a fixed energy, with no
    data and no exact samples. It is computed from each sampler's own valid importance
    weights on the same ``random_state``. A deterministic map that folds has no valid
    weights: its candidate scores ``-inf`` and is marked ``valid=False``.
    (:class:`~sklearn.model_selection.GridSearchCV` cannot do this: it fits on data
    matrices, while a sampler fits on an energy.)

    Parameters
    ----------
    sampler : skcds sampler
        The template; cloned for every candidate.
    param_grid : dict or list of dict
        As for :class:`~sklearn.model_selection.ParameterGrid`.
    energy : Energy, optional
        Target; defaults to the sampler's ``energy``.
    n_samples : int, default=4096
        Weighted samples per ELBO.
    random_state : int, default=0
        Seeds the ELBO's samples (the same for every candidate).
    **sample_options
        Passed to the samplers' ``estimate_log_normalizer`` (e.g. ``n_steps``, ``method``).

    Returns
    -------
    SamplerSearch

    Examples
    --------
    >>> from skcds import DiffusionSampler, search_sampler
    >>> from skcds.energies import GaussianMixture
    >>> template = DiffusionSampler(n_steps=8, max_iter=10, batch_size=32, random_state=0)
    >>> search = search_sampler(template, {"learning_rate": [1e-3, 5e-3]}, GaussianMixture.grid())
    >>> len(search.results), sorted(search.best_params)
    (2, ['learning_rate'])
    """
    rows = []
    for params in ParameterGrid(param_grid):
        candidate = clone(sampler).set_params(**params)
        start = time.perf_counter()
        candidate.fit(energy)
        seconds = time.perf_counter() - start
        with weight_check(ignore_unreliable=True) as check:  # the khat column says
            estimate = candidate.estimate_log_normalizer(
                n_samples, random_state=random_state, **sample_options
            )
        valid = check.valid
        rows.append(
            {
                "params": params,
                "elbo": estimate.elbo if valid else -np.inf,
                "elbo_stderr": estimate.elbo_stderr,
                "log_z": estimate.log_z,
                "ess": estimate.ess,
                "khat": estimate.khat,
                "valid": valid,
                "fit_seconds": seconds,
                "_estimator": candidate,
            }
        )
    rows.sort(key=lambda row: row["elbo"], reverse=True)
    estimators = [row.pop("_estimator") for row in rows]
    return SamplerSearch(rows, rows[0]["params"], rows[0]["elbo"], estimators[0])
