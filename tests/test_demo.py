"""The README's main job, on a tiny budget: it trains, reports, plots and saves."""

import math
import warnings

import joblib

from skcds import SelfConsistentSampler
from skcds.__main__ import main
from skcds._demo import _weight_metrics
from skcds.exceptions import InvalidWeightsWarning
from skcds.metrics import LogNormalizerEstimate


def test_demo_writes_plot_and_model_and_prints_metrics(tmp_path, capsys):
    main(["demo", "--out", str(tmp_path), "--max-iter", "3"])
    printed = capsys.readouterr().out
    for label in ("1 step", "4 steps", "32-step SDE"):
        assert f"[{label}] Wasserstein-1" in printed
    # the flow's weights and the SDE's are exact: their numbers are always printed
    assert "[1 step] ESS" in printed and "[32-step SDE] ESS" in printed
    assert "[4 steps] ESS" not in printed  # Metropolis-Hastings output has no density
    assert (tmp_path / "samples.png").stat().st_size > 10_000
    sampler = joblib.load(tmp_path / "sampler.joblib")
    assert isinstance(sampler, SelfConsistentSampler) and sampler.n_iter_ == 3
    assert all(math.isfinite(float(v)) for v in sampler.sample(5, random_state=0).ravel())


class _StubSampler:
    """Returns a fixed estimate and, if ``folds``, warns as a folding map does."""

    def __init__(self, folds):
        self.folds = folds

    def estimate_log_normalizer(self, n, n_steps, random_state, **options):
        if self.folds:
            warnings.warn("folds", InvalidWeightsWarning, stacklevel=2)
        return LogNormalizerEstimate(0.1, 0.01, -0.2, 0.02, 0.5, n)


def test_demo_prints_no_weight_numbers_for_a_folding_map():
    assert _weight_metrics(_StubSampler(folds=False), 4)["[4 step(s)] ESS"] == 0.5
    (only,) = _weight_metrics(_StubSampler(folds=True), 4).values()
    assert only.startswith("not valid")
