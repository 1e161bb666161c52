"""One-step study (issue 15): training variants of SelfConsistentSampler side by side at
equal CPU time, on one thread each.

    python benchmarks/one_step_study.py run --target gmm9 --variant paper --seconds 240 \
        --out benchmarks/results/one_step_study
    python benchmarks/one_step_study.py report --out benchmarks/results/one_step_study
    python benchmarks/one_step_study.py imh --target gmm9 --save MODEL.joblib \
        --out benchmarks/results/one_step_study_s23

    python benchmarks/one_step_study.py cost --target mw54 --variant default_foldspread \
        --reference-variant default_nofoldspread

``cost`` times a variant against a reference variant per iteration: 60-iteration fits on one
thread, alternated twice (seeds 0 and 1), the first 10 iterations left out.
``imh`` corrects a saved model's one-step draws by independent Metropolis-Hastings on its own
weights (``sample(n, imh_steps=m)``); ``report`` collects those runs into ``imh.csv``.

Variants whose keys start with ``_`` set study switches of the estimator (not parameters):
``_penalise_later_jumps`` and ``_sde_match_weight`` (docs' benchmark page).

``run`` times a short pilot to set ``max_iter`` so that training takes about ``--seconds``
(or takes ``--max-iter``: a pilot under contention can be off by a factor of two),
trains with an evaluation callback every tenth of the run (its time is excluded from the
training clock), then evaluates at every step count: exact W1 against 6000 exact samples,
the fraction of reversed Jacobians (fold check), ESS, |Δlog Z|, ELBO and PSIS k-hat of the
change-of-variables weights. ``report`` writes ``table.md`` and ``time_to_quality.png``, with
W1 divided by the *expected* floor: the mean W1 between two independent exact sets of the
same size over 6 pairs (one pair is not enough on mixtures: on GMM9 at 6000 samples single
pairs range from 0.13 to 0.26, mean 0.20, because the counts per mode fluctuate).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import joblib
import numpy as np
import torch

from skcds import ConsistentDistiller, DiffusionSampler, SelfConsistentSampler
from skcds.bench import TARGETS
from skcds.exceptions import InvalidWeightsWarning
from skcds.metrics import estimate_log_normalizer, wasserstein

N_EVAL = 6000
BATCH = 256
N_STEPS = 32

VARIANTS = {  # results of the replaced det-sign hinge are kept as "*dethinge*"
    "paper": {"flow_map_weight": 0.0, "fold_weight": 0.0, "kl_weight": 0.0},
    "ema": {
        "flow_map_weight": 0.0,
        "fold_weight": 0.0,
        "kl_weight": 0.0,
        "consistency_target": "ema",
    },
    "flowmap": {"fold_weight": 0.0, "kl_weight": 0.0},
    "flowmap_mono": {"kl_weight": 0.0},
    "flowmap_mono1_kl": {"fold_weight": 1.0},
    "default": {},  # flow map, monotonicity penalty (weight 10) and one-step KL 0.1
    "default_ema": {"consistency_target": "ema"},
    "default_kl1": {"kl_weight": 1.0},
    "default_alljumps": {"_penalise_later_jumps": True},
    "default_sdematch": {"_sde_match_weight": 1.0},
    "default_sdematch03": {"_sde_match_weight": 0.3},
    "default_scale2": {"_prior_scale": 2.0},
    "default_scale3": {"_prior_scale": 3.0},
    "default_kllast": {"_kl_last_jump": True},
    "default_kllast_fold": {"_kl_last_jump": True, "_penalise_last_jump": True},
    "default_width128": {"width": 128},
    "default_grid16": {"n_steps": 16},
    "default_lv": {"_one_step_log_variance": True},
    "default_damped": {"_damp_long_jumps": True},
    "default_kl03": {"kl_weight": 0.3},
    "default_longjumps": {"_favour_long_jumps": True},
    "default_volume": {"_volume_weight": 1.0},
    "default_foldspread": {"_fold_spread": 1.5},  # the default since this pass
    "default_nofoldspread": {"_fold_spread": 0.0},  # the default before it
    "default_foldspread1": {"_fold_spread": 1.0},
    "default_scorematch": {"_score_match_weight": 1.0},
}


def _khat(log_w: np.ndarray) -> float:
    try:
        import arviz as az
    except ImportError:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, k = az.psislw(log_w - log_w.max())
    return float(k)


def _reversed(sampler, k: int, x0_seed: int = 5) -> float:
    """Largest fraction of reversed Jacobians over the k steps (0: no provable fold)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InvalidWeightsWarning)
        sampler.sample(2000, n_steps=k, random_state=x0_seed, return_log_weights=True)
    for w in caught:
        if issubclass(w.category, InvalidWeightsWarning):
            text = str(w.message)
            return float(text.split("(up to ")[1].split("%")[0]) / 100
    return 0.0


def evaluate(sampler, energy, exact, exact_b, steps, log_z) -> dict:
    floor = wasserstein(exact_b, exact, p=1)
    rows = {"floor": floor}
    for k in steps:
        weighted = not isinstance(sampler, ConsistentDistiller) or k == 1
        if not weighted:  # multistep consistency sampling re-noises: no density
            x = sampler.sample(N_EVAL, n_steps=k, random_state=1)
            w1 = wasserstein(x, exact, p=1)
            nan = float("nan")
            rows[k] = {
                "w1": w1,
                "w1_over_floor": w1 / floor,
                "reversed": nan,
                "ess": nan,
                "abs_dlogz": None,
                "elbo": nan,
                "khat": nan,
                "sd_ratio": (x.std(0) / exact.std(0)).tolist(),
            }
            continue
        x, log_w = sampler.sample(N_EVAL, n_steps=k, random_state=1, return_log_weights=True)
        w1 = wasserstein(x, exact, p=1)
        est = estimate_log_normalizer(log_w.astype(np.float64))
        rows[k] = {
            "w1": w1,
            "w1_over_floor": w1 / floor,
            "reversed": _reversed(sampler, k),
            "ess": est.ess,
            "abs_dlogz": abs(est.log_z - log_z) if log_z is not None else None,
            "elbo": est.elbo,
            "khat": _khat(log_w.astype(np.float64)),
            "sd_ratio": (x.std(0) / exact.std(0)).tolist(),
        }
    return rows


class _Monitor:
    """Every ``every`` iterations: one-step W1 (2000 samples) against training seconds (the
    monitor's own time excluded)."""

    def __init__(self, every, exact2000):
        self.every, self.exact = every, exact2000
        self.points, self.excluded = [], 0.0

    def __call__(self, sampler, record):
        if (record["iteration"] + 1) % self.every:
            return
        start = time.perf_counter()
        w1 = wasserstein(sampler.sample(2000, n_steps=1, random_state=7), self.exact, p=1)
        self.points.append((record["elapsed"] - self.excluded, w1))
        self.excluded += time.perf_counter() - start


FLOOR_PAIRS = 6
PLOTTED = ("paper", "default", "cdds")  # the time-to-quality plot: old default, new, CDDS


def expected_floor(energy, n: int) -> tuple[float, float]:
    """Mean and standard deviation of W1 between two exact n-sets, over FLOOR_PAIRS pairs."""
    g = torch.Generator().manual_seed(100)
    values = [
        wasserstein(*(energy.sample(n, generator=g).numpy() for _ in range(2)), p=1)
        for _ in range(FLOOR_PAIRS)
    ]
    return float(np.mean(values)), float(np.std(values))


def _run_name(args) -> str:
    """The variant, with its seed when not the study's 0 (the run-to-run spread) and its
    threads when not one."""
    name = args.variant if args.seed == 0 else f"{args.variant}_seed{args.seed}"
    return name if args.threads == 1 else f"{name}_{args.threads}threads"


def _make(variant, max_iter, seed, callbacks=None):
    params = {k: v for k, v in VARIANTS[variant].items() if not k.startswith("_")}
    options = {"n_steps": N_STEPS, "batch_size": BATCH, **params}
    sampler = SelfConsistentSampler(
        max_iter=max_iter,
        random_state=seed,
        callbacks=callbacks,
        early_stopping=False,  # equal training time for every variant
        **options,
    )
    for k, v in VARIANTS[variant].items():  # switches of a study, not parameters
        if k.startswith("_"):
            setattr(sampler, k, v)
    return sampler


def run(args) -> None:
    torch.set_num_threads(args.threads)
    bench = TARGETS[args.target]
    energy = bench.build(None)
    g = torch.Generator().manual_seed(2)
    exact, exact_b = (energy.sample(N_EVAL, generator=g).numpy() for _ in range(2))
    exact2000 = exact[:2000]
    log_z = getattr(energy, "log_normalizer", None)
    log_z = float(log_z) if log_z is not None else None
    out = Path(args.out) / args.target
    out.mkdir(parents=True, exist_ok=True)
    if args.variant == "cdds":
        record = _run_cdds(args, energy, exact, exact_b, exact2000, log_z)
    else:
        pilot = _make(args.variant, 20, args.seed).fit(energy)
        per_iter = pilot.history_[-1]["elapsed"] / 20
        max_iter = args.max_iter or max(50, int(args.seconds / per_iter))
        monitor = _Monitor(max(1, max_iter // 10), exact2000)
        sampler = _make(args.variant, max_iter, args.seed, [monitor])
        sampler.fit(energy)
        if args.save:
            joblib.dump(sampler, args.save)
        train_s = sampler.history_[-1]["elapsed"] - monitor.excluded
        grid = sampler.n_steps
        steps = [2**j for j in range(int(np.log2(grid)) + 1) if 2**j <= args.max_eval_steps]
        resolved = sampler.get_params()
        record = {
            "variant": _run_name(args),
            "params": VARIANTS[args.variant],
            "resolved": {k: resolved[k] for k in sorted(resolved) if k not in ("callbacks",)},
            "max_iter": max_iter,
            "batch_size": BATCH,
            "n_steps": grid,
            "train_seconds": train_s,
            "curve": monitor.points,
            "curve_raw": True,
            "eval": evaluate(sampler, energy, exact, exact_b, steps, log_z),
        }
    (out / f"{_run_name(args)}.json").write_text(json.dumps(record, indent=1))
    one = record["eval"][1] if 1 in record["eval"] else record["eval"]["1"]
    print(args.target, args.variant, f"{record['train_seconds']:.0f}s", json.dumps(one))


def _run_cdds(args, energy, exact, exact_b, exact2000, log_z) -> dict:
    """The teacher (DIS at N = 128) gets half the seconds, the distillation the other half."""
    half = args.seconds / 2
    pilot = DiffusionSampler(max_iter=10, batch_size=BATCH, random_state=args.seed).fit(energy)
    teacher_iter = max(50, int(half / (pilot.history_[-1]["elapsed"] / 10)))
    teacher = DiffusionSampler(max_iter=teacher_iter, batch_size=BATCH, random_state=args.seed)
    teacher.fit(energy)
    teacher_s = teacher.history_[-1]["elapsed"]
    pilot = ConsistentDistiller(teacher, max_iter=10, batch_size=BATCH, random_state=args.seed)
    pilot.fit()
    max_iter = max(50, int(half / (pilot.history_[-1]["elapsed"] / 10)))
    monitor = _Monitor(max(1, max_iter // 10), exact2000)
    student = ConsistentDistiller(
        teacher, max_iter=max_iter, batch_size=BATCH, random_state=args.seed, callbacks=[monitor]
    ).fit()
    train_s = student.history_[-1]["elapsed"] - monitor.excluded
    curve = [(teacher_s + s, q) for s, q in monitor.points]
    if args.save:
        joblib.dump({"teacher": teacher, "student": student}, args.save)
    return {
        "variant": "cdds",
        "params": {"teacher_iter": teacher_iter, "max_iter": max_iter},
        "max_iter": max_iter,
        "batch_size": BATCH,
        "train_seconds": teacher_s + train_s,
        "curve": curve,
        "curve_raw": True,
        "eval": evaluate(student, energy, exact, exact_b, [1, 2, 4], log_z),
    }


def _floors(target: str) -> dict:
    """Expected floors at 6000 and 2000 samples, and the single seed-2 pair of 2000 that
    curves of runs before 'curve_raw' were divided by (to convert them back)."""
    energy = TARGETS[target].build(None)
    g = torch.Generator().manual_seed(2)
    exact, exact_b = (energy.sample(N_EVAL, generator=g).numpy() for _ in range(2))
    return {
        N_EVAL: expected_floor(energy, N_EVAL),
        2000: expected_floor(energy, 2000),
        "old2000": wasserstein(exact_b[:2000], exact[:2000], p=1),
    }


SUMMARY_HEADER = [
    "target",
    "variant",
    "train s",
    "1-step W1/floor",
    "reversed",
    "ESS",
    "k-hat",
    "sd ratio (min, max)",
    "W1/floor at k = 1, 2, 4, ...",
]


def _summary_row(target: str, rec: dict, floor: float) -> list[str]:
    """One line per run: the one-step columns, then W1/floor at every evaluated k."""
    rows = {int(k): row for k, row in rec["eval"].items() if k != "floor"}
    one = rows[1]
    return [
        target,
        rec["variant"],
        f"{rec['train_seconds']:.0f}",
        f"{one['w1'] / floor:.2f}",
        f"{100 * one['reversed']:.2g}%",
        f"{one['ess']:.3f}",
        f"{one['khat']:.2f}",
        f"{min(one['sd_ratio']):.2f}, {max(one['sd_ratio']):.2f}",
        " / ".join(f"{rows[k]['w1'] / floor:.2f}" for k in sorted(rows)),
    ]


def _write_csv(path: Path, rows: list[list[str]]) -> None:
    path.write_text("\n".join(",".join(f'"{c}"' for c in row) for row in rows) + "\n")


def report(args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    root = Path(args.out)
    lines = [
        "| target | variant | train s | iters | k | W1 | W1/floor | reversed | ESS | "
        "abs dlogZ | k-hat | sd ratio (min, max) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    targets = sorted(p for p in root.iterdir() if p.is_dir())
    ncols = min(2, len(targets))
    nrows = -(-len(targets) // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(6 * ncols, 4 * nrows), squeeze=False, layout="constrained"
    )
    notes = []
    summary = [SUMMARY_HEADER]
    refined = [
        "| target | model | start | MALA moves | W1 | W1/floor | sd ratio (min, max) | "
        "evaluations |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for ax in axes.flat[len(targets) :]:
        ax.set_visible(False)
    for ax, folder in zip(axes.flat, targets, strict=False):
        floors = _floors(folder.name)
        floor, floor_sd = floors[N_EVAL]
        notes.append(
            f"- {folder.name}: expected W1 floor at {N_EVAL} samples {floor:.4f} "
            f"(sd {floor_sd:.4f} over {FLOOR_PAIRS} pairs); at 2000: {floors[2000][0]:.4f}"
        )
        for path in sorted(folder.glob("refine_*.json")):
            for row in json.loads(path.read_text()):
                sd = row.get("sd_ratio")
                sd = "" if sd is None else f"{min(sd):.2f}, {max(sd):.2f}"
                refined.append(
                    f"| {folder.name} | {path.stem[len('refine_') :]} | "
                    f"{row.get('start', 'one-step')} | {row['mcmc_steps']} | {row['w1']:.3f} | "
                    f"{row['w1'] / floor:.2f} | {sd} | {row['evaluations']} |"
                )
        for path in sorted(
            p for p in folder.glob("*.json") if not p.stem.startswith(("refine_", "imh_"))
        ):
            rec = json.loads(path.read_text())
            summary.append(_summary_row(folder.name, rec, floor))
            for k, row in rec["eval"].items():
                if k == "floor":
                    continue
                dz = "" if row["abs_dlogz"] is None else f"{row['abs_dlogz']:.3f}"
                sd = f"{min(row['sd_ratio']):.2f}, {max(row['sd_ratio']):.2f}"
                lines.append(
                    f"| {folder.name} | {rec['variant']} | {rec['train_seconds']:.0f} | "
                    f"{rec['max_iter']} | {k} | {row['w1']:.3f} | {row['w1'] / floor:.2f} | "
                    f"{100 * row['reversed']:.2g}% | {row['ess']:.3f} | {dz} | "
                    f"{row['khat']:.2f} | {sd} |"
                )
            if rec["curve"] and rec["variant"] in PLOTTED:
                s, w1 = zip(*rec["curve"], strict=True)
                scale = 1.0 if rec.get("curve_raw") else floors["old2000"]
                ax.plot(
                    s,
                    np.array(w1) * scale / floors[2000][0],
                    marker="o",
                    ms=3,
                    label=rec["variant"],
                )
        ax.set(
            title=folder.name,
            xlabel="training seconds (1 CPU thread)",
            ylabel="1-step W1 / expected floor (2000 samples)",
        )
        ax.set_yscale("log")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.legend(fontsize=8)
    text = "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"
    (root / "table.md").write_text(text)
    # the same rows as CSV, for the docs' csv-table (rendered as a real table)
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    _write_csv(root / "table.csv", [rows[0], *rows[2:]])
    (root / "floors.txt").write_text("\n".join(notes) + "\n")
    _write_csv(root / "summary.csv", summary)
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in refined]
    _write_csv(root / "refine.csv", [rows[0], *rows[2:]])
    imh_rows = [row for folder in targets for row in _imh_rows(folder)]
    if imh_rows:
        _write_csv(root / "imh.csv", [IMH_HEADER, *imh_rows])
    text += (
        "\nOne-step samples refined by MALA (sample(mcmc_steps=m)), and the same moves from "
        "the prior N(0, I):\n\n" + "\n".join(refined)
    )
    (root / "table.md").write_text(text + "\n")
    fig.savefig(root / "time_to_quality.png", dpi=110, bbox_inches="tight")
    print(text)


MALA_MOVES = (0, 5, 20, 100, 300, 1000, 3000)


def _refined_row(x, exact, floor, m, seconds, start) -> dict:
    w1 = wasserstein(x, exact, p=1)
    print(f"{start} + {m} MALA moves: W1 {w1:.3f} ({w1 / floor:.2f} x floor)", flush=True)
    return {
        "start": start,
        "mcmc_steps": m,
        "w1": w1,
        "w1_over_floor": w1 / floor,
        "evaluations": N_EVAL * (m + 1) + (256 * 20 * 3 if m else 0),
        "seconds": seconds,
        "sd_ratio": (x.std(0) / exact.std(0)).tolist(),
    }


def _saved_model(args):
    """The saved sampler of ``--save`` (a CDDS run's student), the 6000 exact draws of the
    study (seed 2) and the expected W1 floor, on one thread."""
    torch.set_num_threads(1)
    energy = TARGETS[args.target].build(None)
    model = joblib.load(args.save)
    sampler = model["student"] if isinstance(model, dict) else model
    exact = energy.sample(N_EVAL, generator=torch.Generator().manual_seed(2)).numpy()
    return sampler, exact, expected_floor(energy, N_EVAL)[0]


def refine(args) -> None:
    """One-step samples of a saved sampler followed by m MALA moves (W1, sd ratios, cost),
    beside the same moves from the sampler's prior N(0, I) (tuned alike, on prior draws): the
    baseline that tells whether the trained sampler is worth it."""
    sampler, exact, floor = _saved_model(args)
    rows = []
    for m in MALA_MOVES:
        begin = time.perf_counter()
        x = sampler.sample(N_EVAL, n_steps=1, random_state=1, mcmc_steps=m)
        rows.append(_refined_row(x, exact, floor, m, time.perf_counter() - begin, "one-step"))
    gen = torch.Generator().manual_seed(7)
    x0, pilot = sampler._prior(N_EVAL, gen), sampler._prior(256, gen)
    for m in MALA_MOVES:
        begin = time.perf_counter()
        x = sampler._refine(x0, pilot, m, gen) if m else x0
        x = sampler.energy_.transform(x).numpy()
        rows.append(_refined_row(x, exact, floor, m, time.perf_counter() - begin, "prior"))
    out = Path(args.out) / args.target
    (out / f"refine_{Path(args.save).stem}.json").write_text(json.dumps(rows, indent=1))


IMH_DRAWS = (1, 2, 3)  # W1 on GMM9-like mixtures varies by ~15 % between sets: average 3


def imh(args) -> None:
    """One-step samples of a saved sampler after m independent Metropolis-Hastings steps
    with its own weighted one-step draws as proposals (``sample(n, imh_steps=m)``): W1 over
    the expected floor (mean and range over 3 sets), sd ratios, seconds."""
    sampler, exact, floor = _saved_model(args)
    rows = []
    for m in [int(m) for m in args.imh_steps.split(",")]:
        ratios, sds, seconds = [], [], 0.0
        for seed in IMH_DRAWS:
            begin = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", InvalidWeightsWarning)
                x = sampler.sample(N_EVAL, n_steps=1, random_state=seed, imh_steps=m)
            seconds += (time.perf_counter() - begin) / len(IMH_DRAWS)  # sampling only
            ratios.append(wasserstein(x, exact, p=1) / floor)
            sds.append((x.std(0) / exact.std(0)).tolist())
        print(f"IMH {m}: W1/floor {np.mean(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})")
        rows.append(
            {
                "imh_steps": m,
                "w1_over_floor": ratios,
                "sd_ratio": sds,
                "seconds": seconds,
                "draws_with_weights": N_EVAL * (m + 1),
            }
        )
    out = Path(args.out) / args.target
    out.mkdir(parents=True, exist_ok=True)
    (out / f"imh_{Path(args.save).stem}.json").write_text(json.dumps(rows, indent=1))


def _imh_rows(folder: Path) -> list[list[str]]:
    rows = []
    for path in sorted(folder.glob("imh_*.json")):
        for row in json.loads(path.read_text()):
            ratios, sds = row["w1_over_floor"], np.array(row["sd_ratio"])
            rows.append(
                [
                    folder.name,
                    path.stem[len("imh_") :],
                    str(row["imh_steps"]),
                    f"{np.mean(ratios):.2f}",
                    f"{min(ratios):.2f}-{max(ratios):.2f}",
                    f"{sds.min():.2f}, {sds.max():.2f}",
                    f"{row['seconds']:.1f}",
                ]
            )
    return rows


IMH_HEADER = [
    "target",
    "model",
    "IMH steps",
    "W1/floor (mean of 3)",
    "range",
    "sd ratio",
    "sampling s",
]


def cost(args) -> None:
    torch.set_num_threads(1)
    energy = TARGETS[args.target].build(None)
    times = {args.reference_variant: [], args.variant: []}
    for seed in (0, 1):
        for variant in times:
            history = _make(variant, 60, seed).fit(energy).history_
            times[variant].append((history[-1]["elapsed"] - history[9]["elapsed"]) / 50)
    base = np.mean(times[args.reference_variant])
    for variant, values in times.items():
        ms = " ".join(f"{1000 * v:.1f}" for v in values)
        print(f"{args.target} {variant}: {ms} ms per iteration ({np.mean(values) / base:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["run", "report", "refine", "imh", "cost"])
    parser.add_argument("--target", default="gmm9")
    parser.add_argument("--variant", default="paper", choices=[*VARIANTS, "cdds"])
    parser.add_argument("--seconds", type=float, default=240.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/one_step_study")
    parser.add_argument("--max-eval-steps", type=int, default=N_STEPS)
    parser.add_argument("--imh-steps", default="0,1,2,5,20", help="imh: comma-separated")
    parser.add_argument(
        "--max-iter", type=int, default=None, help="iterations (instead of from --seconds)"
    )
    parser.add_argument("--save", default=None, help="joblib file for the fitted model(s)")
    parser.add_argument("--threads", type=int, default=1, help="run: torch threads")
    parser.add_argument("--reference-variant", default="default", help="cost: timed against")
    args = parser.parse_args()
    commands = {"run": run, "report": report, "refine": refine, "imh": imh, "cost": cost}
    commands[args.command](args)


if __name__ == "__main__":
    main()
