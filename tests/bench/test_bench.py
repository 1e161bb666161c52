"""The benchmark harness end to end at the smoke budget, its report, and the speed mode."""

import json
import math

import pytest

from skcds.bench import BUDGETS, TARGETS, run_benchmark, run_speed, speed_table
from skcds.bench.__main__ import main


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    return run_benchmark(["gmm9"], budget="smoke", out=out, seed=0), out


def test_smoke_budget_runs_every_method_end_to_end(smoke):
    results, out = smoke
    assert json.loads((out / "results.json").read_text())["budget"] == "smoke"
    rows = results["targets"]["gmm9"]["rows"]
    keys = {(r["method"], r["steps"]) for r in rows}
    n = BUDGETS["smoke"].n_steps
    assert {("pis", n), ("dds", n), ("dis", n), ("dis", 1), ("cdds", 1), ("scds", 1)} <= keys
    assert {("scds", 2**j) for j in range(n.bit_length())} <= keys  # quality against steps
    for row in rows:
        assert row["nfe"] == row["steps"] and row["sample_seconds"] > 0
        assert math.isfinite(row["paper_sinkhorn"]) and row["w1"] >= 0
        assert row["weights"] in ("valid", "folds", "none")
        if row["weights"] != "none":
            assert 0 < row["ess"] <= 1 and row["elbo"] <= row["log_z"]  # Jensen
        if row["weights"] == "valid":  # a true ELBO: below log Z = 0 beyond MC error
            assert row["elbo"] < 3 * row["elbo_stderr"], row
    for name in ("table.md", "samples_gmm9.png", "steps_gmm9.png", "samples_gmm9.npz"):
        assert (out / name).stat().st_size > 0


def test_paper_numbers_sit_beside_the_matching_rows(smoke):
    results, _ = smoke
    rows = {(r["method"], r["steps"]): r for r in results["targets"]["gmm9"]["rows"]}
    n = BUDGETS["smoke"].n_steps  # the budget's N stands for the paper's N = 128
    assert rows[("dis", n)]["paper"] == TARGETS["gmm9"].paper[("dis", 128)]
    assert rows[("cdds", 1)]["paper"]["paper_sinkhorn"] == 0.0313
    assert rows[("scds", 2)]["paper"] == {}  # the paper reports no 2-step SCDS
    floor = results["targets"]["gmm9"]["floor"]
    assert floor["sinkhorn"] >= floor["w1"] - 1e-6  # entropic cost >= exact W1


def test_table_shows_ours_and_the_papers(smoke):
    _, out = smoke
    table = (out / "table.md").read_text()
    for label in ("PIS", "DDS", "DIS", "CDDS", "SCDS"):
        assert f"| {label} |" in table
    assert "(0.0203)" in table and "Floors" in table


def test_report_only_redraws_from_results_json(smoke, capsys):
    _, out = smoke
    (out / "table.md").unlink()
    main(["--report-only", "--out", str(out), "--no-plots"])
    assert (out / "table.md").read_text() in capsys.readouterr().out


def test_missing_data_skips_the_target_and_says_what_is_missing(tmp_path):
    results = run_benchmark(
        ["ionosphere", "lgcp"], ["dis"], out=tmp_path, data_dir=tmp_path, plots=False
    )
    assert results["targets"] == {}
    assert "ionosphere.csv" in results["skipped"]["ionosphere"]
    assert "pines.csv" in results["skipped"]["lgcp"]
    assert "skipped" in (tmp_path / "table.md").read_text()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"targets": ["gmm"]}, "'targets' must be a non-empty subset of"),
        ({"methods": ["dis", "ais"]}, "'methods' must be a non-empty subset of"),
        ({"budget": "huge"}, "'budget' must be one of ['cpu', 'paper', 'smoke']; got 'huge'."),
        ({"baseline_loss": "lv"}, "'baseline_loss' must be one of ['kl', 'log_variance']"),
    ],
)
def test_invalid_arguments_are_named(tmp_path, kwargs, message):
    with pytest.raises(ValueError) as error:
        run_benchmark(**{"targets": ["gmm9"], "out": tmp_path, **kwargs})
    assert message in str(error.value)


def test_command_line_reports_bad_names_without_a_traceback(tmp_path):
    with pytest.raises(SystemExit, match="'methods' must be a non-empty subset"):
        main(["--targets", "gmm9", "--methods", "dis,foo", "--out", str(tmp_path)])


def test_budget_overrides_apply_per_target():
    paper = BUDGETS["paper"]
    assert paper.for_target("lgcp").batch_size == 64 and paper.for_target("gmm9").batch_size == 512
    assert paper.for_target("lgcp").overrides == {}


def test_speed_mode_measures_every_estimator(tmp_path):
    result = run_speed(
        n_steps=8,
        batch_size=16,
        n_iter=3,
        warmup=1,
        n_samples=500,
        n_samples_one_step=1000,
        device="cpu",
        out=tmp_path,
    )
    assert set(result["training"]) == {"dis", "scds", "cdds"}
    assert all(s > 0 for modes in result["training"].values() for s in modes.values())
    assert set(result["sampling"]) == {"cdds@1", "scds@1", "scds@8", "dis@8"}
    assert (tmp_path / "speed.md").read_text() == "\n".join(speed_table(result)) + "\n"
