"""When training stops: a wall-clock budget and early stopping on a monitored ELBO.

Every ``monitor_every`` iterations the sampler draws a small fresh batch with valid
log-weights (its own path or map weights, from a generator of its own, so the training
draws are those of an unmonitored run) and records their ELBO and ESS in ``history_``.
Training stops once the best ELBO has not improved by more than ``tol`` for
``n_iter_no_change`` consecutive checks (scikit-learn's idiom), or once ``max_time``
seconds of this ``fit`` have passed (checked after every iteration).
"""

from __future__ import annotations

import math
import time

MONITOR_SAMPLES = 512  # draws per check: the ELBO's standard error is about sd(log w) / 23


class Stopper:
    """The stopping state of one ``fit`` call."""

    def __init__(self, estimator) -> None:
        self.estimator = estimator
        self.start = time.perf_counter()
        self.best, self.stale = -math.inf, 0

    def monitored(self, iteration: int) -> bool:
        """Whether the ELBO is checked after ``iteration`` (counted over all fits)."""
        return (iteration + 1) % self.estimator.monitor_every == 0

    def out_of_time(self) -> bool:
        budget = self.estimator.max_time
        return budget is not None and time.perf_counter() - self.start >= budget

    def converged(self, elbo: float) -> bool:
        """Record one check; whether early stopping ends training now."""
        if elbo > self.best + self.estimator.tol:
            self.best, self.stale = elbo, 0
        else:
            self.best, self.stale = max(self.best, elbo), self.stale + 1
        return self.estimator.early_stopping and self.stale >= self.estimator.n_iter_no_change
