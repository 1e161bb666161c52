import math
import warnings

import numpy as np
import pytest

from skcds import DiffusionSampler, search_sampler
from skcds.energies import GaussianMixture
from skcds.exceptions import InvalidWeightsWarning

ENERGY = GaussianMixture.grid()


def test_candidates_are_ranked_by_elbo_and_the_best_is_fitted():
    template = DiffusionSampler(n_steps=16, batch_size=64, random_state=0)
    search = search_sampler(template, {"max_iter": [1, 150]}, ENERGY, n_samples=2000)
    assert [row["params"]["max_iter"] for row in search.results] == [150, 1]  # training helps
    elbos = [row["elbo"] for row in search.results]
    assert elbos == sorted(elbos, reverse=True) and all(row["valid"] for row in search.results)
    assert search.best_params == {"max_iter": 150} and search.best_score == elbos[0]
    assert search.best_estimator.n_iter_ == 150 and not hasattr(template, "n_iter_")
    for row in search.results:  # true lower bounds of log Z = 0
        assert row["elbo"] < 3 * row["elbo_stderr"]


class _FoldsAtSmallRates(DiffusionSampler):
    """A twin whose weights are declared invalid (as a folding map's are) at small rates."""

    def estimate_log_normalizer(self, *args, **kwargs):
        estimate = super().estimate_log_normalizer(*args, **kwargs)
        if self.learning_rate < 2e-3:
            warnings.warn("the map folds", InvalidWeightsWarning, stacklevel=2)
        return estimate


def test_a_candidate_without_valid_weights_scores_minus_infinity_and_ranks_last():
    template = _FoldsAtSmallRates(n_steps=8, max_iter=30, batch_size=32, random_state=0)
    search = search_sampler(template, {"learning_rate": [1e-3, 5e-3]}, ENERGY, n_samples=500)
    last = search.results[-1]
    assert last["params"] == {"learning_rate": 1e-3} and not last["valid"]
    assert last["elbo"] == -math.inf and np.isfinite(last["log_z"])
    assert search.best_params == {"learning_rate": 5e-3}


def test_energy_is_required_somewhere():
    with pytest.raises(ValueError, match="energy"):
        search_sampler(DiffusionSampler(max_iter=1), {"n_steps": [4]})
