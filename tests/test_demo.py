"""The README's main job, on a tiny budget: it trains, reports, plots and saves."""

import math

import joblib

from skcds import SelfConsistentSampler
from skcds.__main__ import main


def test_demo_writes_plot_and_model_and_prints_metrics(tmp_path, capsys):
    main(["demo", "--out", str(tmp_path), "--max-iter", "3"])
    printed = capsys.readouterr().out
    assert "[1 step(s)] ESS" in printed and "[32 step(s)] ELBO" in printed
    assert (tmp_path / "samples.png").stat().st_size > 10_000
    sampler = joblib.load(tmp_path / "sampler.joblib")
    assert isinstance(sampler, SelfConsistentSampler) and sampler.n_iter_ == 3
    assert all(math.isfinite(float(v)) for v in sampler.sample(5, random_state=0).ravel())
