"""ConsistentDistiller (CDDS): one-step quality against the teacher, valid one-step weights,
multistep consistency sampling, and the cost of distillation next to the teacher's training.

    python benchmarks/cdds_distill.py teacher --target gmm9 --max-iter 3000 --out DIR
    python benchmarks/cdds_distill.py train --teacher DIR/teacher_gmm9.joblib --max-iter 3000 \
        [--solver heun --target-net ema --loss pseudo_huber] --name NAME --out DIR
    python benchmarks/cdds_distill.py report DIR [--markdown DIR/table.md]

``teacher`` fits a DiffusionSampler and saves it (joblib) with its training time. ``train``
distils it and writes ``DIR/<name>.npz``: 6000 one-step samples with their exact
change-of-variables log-weights, 6000 samples of multistep consistency sampling at
k = 2, 4, 8, 16 (no weights: the re-noising sampler has no tractable density), 6000 samples of
the teacher (128-step SDE, with its path weights) and two independent sets of 6000 exact
samples; and ``DIR/<name>.json`` with training times, network evaluations and sampling
times. ``report`` computes the metrics of ``scds_steps.py`` (exact W1, converged and
paper-definition Sinkhorn, ESS, |Δlog Z|, ELBO gap, floors).
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import joblib
import numpy as np
import torch
from scds_steps import (
    N_METRIC,
    N_TIMING,
    TARGETS,
    _device_name,
    _fold_summary,
    _timed,
    paper_one_step,
)

from skcds import ConsistentDistiller, DiffusionSampler
from skcds.exceptions import InvalidWeightsWarning

PAPER_CDDS_1 = {name: paper_one_step("cdds", name) for name in TARGETS}
MULTISTEP = (2, 4, 8, 16)


def teacher(args) -> None:
    torch.set_num_threads(args.threads)
    sampler = DiffusionSampler(
        n_steps=args.n_steps,
        max_iter=args.max_iter,
        batch_size=args.batch_size,
        random_state=args.seed,
    ).fit(TARGETS[args.target]())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    joblib.dump(sampler, out / f"teacher_{args.target}.joblib")
    info = {
        "target": args.target,
        "max_iter": args.max_iter,
        "batch_size": args.batch_size,
        "n_steps": args.n_steps,
        "train_seconds": sampler.history_[-1]["elapsed"],
        "device": _device_name(sampler.device_),
    }
    (out / f"teacher_{args.target}.json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info, indent=2))


def train(args) -> None:
    torch.set_num_threads(args.threads)
    fitted = joblib.load(args.teacher)
    teacher_info = json.loads(Path(args.teacher).with_suffix(".json").read_text())
    target = teacher_info["target"]
    student = ConsistentDistiller(
        fitted,
        n_intervals=args.n_intervals,
        max_iter=args.max_iter,
        batch_size=args.batch_size,
        solver=args.solver,
        target=args.target_net,
        loss=args.loss,
        random_state=args.seed,
    ).fit()
    energy = fitted.energy_
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InvalidWeightsWarning)
        x1, log_w1 = student.sample(N_METRIC, random_state=1, return_log_weights=True)
    folding = [str(w.message) for w in caught if w.category is InvalidWeightsWarning]
    xt, log_wt = fitted.sample(N_METRIC, random_state=1, return_log_weights=True)
    arrays = {"log_z": energy.log_normalizer, "x_1": x1, "log_w_1": log_w1}
    arrays.update({"x_teacher": xt, "log_w_teacher": log_wt})
    steps = [k for k in MULTISTEP if k <= args.n_intervals]
    for k in steps:
        arrays[f"x_{k}"] = student.sample(N_METRIC, n_steps=k, random_state=1)
    g = torch.Generator().manual_seed(3)
    arrays["exact_a"], arrays["exact_b"] = (energy.sample(N_METRIC, g).numpy() for _ in range(2))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = args.name or f"{target}_{args.solver}_{args.target_net}_{args.loss}"
    np.savez(out / f"{name}.npz", **arrays)
    # teacher evaluations per distillation iteration: flow to the end of a uniformly drawn
    # coarse interval, on average; Heun doubles them
    ends = student._coarse[1:]
    per_step = 2 if args.solver == "heun" else 1
    info = {
        "target": target,
        "solver": args.solver,
        "target_net": args.target_net,
        "loss": args.loss,
        "max_iter": args.max_iter,
        "batch_size": args.batch_size,
        "n_intervals": args.n_intervals,
        "device": _device_name(student.device_),
        "train_seconds": student.history_[-1]["elapsed"],
        "teacher": teacher_info,
        "teacher_nfe_per_iteration": per_step * float(np.mean(ends)),
        "student_nfe_per_iteration": 2,
        "teacher_training_nfe_per_iteration": teacher_info["n_steps"] * 2,
        "steps": [1, *steps],
        "sample_100k_seconds": {
            "student_1": _timed(lambda: student.sample(N_TIMING, random_state=0)),
            "teacher_128": _timed(lambda: fitted.sample(N_TIMING, random_state=0)),
        },
        "folding_warnings": folding,
        "final_loss": student.history_[-1]["loss"],
    }
    (out / f"{name}.json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info, indent=2))


def _weights(log_w, log_z) -> dict:
    from skcds.metrics import estimate_log_normalizer

    estimate = estimate_log_normalizer(log_w)
    return {
        "ess": estimate.ess,
        "abs_dlogz": abs(estimate.log_z - log_z),
        "log_z_stderr": estimate.stderr,
        "elbo_gap": log_z - estimate.elbo,
        "elbo_stderr": estimate.elbo_stderr,
    }


def _transport(x, a) -> dict:
    from skcds.metrics import paper_sinkhorn, sinkhorn, wasserstein

    return {
        "w1": wasserstein(x, a, p=1),
        "sinkhorn": sinkhorn(x, a),
        "paper_sinkhorn": paper_sinkhorn(x, a),
    }


def report(args) -> None:
    from skcds.metrics import wasserstein

    results, shared = {}, {}
    for folder in args.dirs:
        for path in sorted(Path(folder).glob("*.npz")):
            cache = path.with_suffix(".metrics.json")
            if cache.exists():  # the Sinkhorn costs take minutes: computed once per run
                results[path.stem] = json.loads(cache.read_text())
                continue
            data, info = np.load(path), json.loads(path.with_suffix(".json").read_text())
            a, b, log_z = data["exact_a"], data["exact_b"], float(data["log_z"])
            # floors and teacher metrics are shared by runs on the same samples: once each
            floor_key = ("floor", hash(a.tobytes() + b.tobytes()))
            teacher_key = ("teacher", hash(data["x_teacher"].tobytes()))
            if floor_key not in shared:
                shared[floor_key] = _transport(b, a)
            if teacher_key not in shared:
                teacher_metrics = _weights(data["log_w_teacher"], log_z)
                shared[teacher_key] = {**_transport(data["x_teacher"], a), **teacher_metrics}
            res = {
                "info": info,
                "one_step": {**_transport(data["x_1"], a), **_weights(data["log_w_1"], log_z)},
                "teacher": shared[teacher_key],
                "multistep": {k: wasserstein(data[f"x_{k}"], a, p=1) for k in info["steps"][1:]},
                "floor": shared[floor_key],
            }
            cache.write_text(json.dumps(res, indent=2))
            results[path.stem] = res
            print(path.stem, json.dumps(res["one_step"]), flush=True)
    lines = _table(results)
    print("\n".join(lines))
    if args.markdown:
        Path(args.markdown).write_text("\n".join(lines) + "\n")


def _row(name, label, m, floor, paper, folds) -> str:
    return (
        f"| {name} | {label} | {m['paper_sinkhorn']:.4f} ({floor['paper_sinkhorn']:.4f}; "
        f"{paper}) | {m['sinkhorn']:.4f} ({floor['sinkhorn']:.4f}) | {m['w1']:.4f} "
        f"({floor['w1']:.4f}) | {m['ess']:.3g} | {m['abs_dlogz']:.3f} ± {m['log_z_stderr']:.3f} "
        f"| {m['elbo_gap']:.3f} ± {m['elbo_stderr']:.3f} | {folds} |"
    )


def _table(results) -> list[str]:
    lines = [
        "| run | sampler | paper Sinkhorn (floor; paper) | converged Sinkhorn (floor) "
        "| exact W1 (floor) | ESS | IS abs Δlog Z | ELBO gap | map folds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, res in results.items():
        info, floor = res["info"], res["floor"]
        paper = PAPER_CDDS_1[info["target"]][0]
        folds = _fold_summary(info["folding_warnings"])
        lines.append(_row(name, "CDDS, 1 step", res["one_step"], floor, paper, folds))
        lines.append(_row(name, "teacher DIS, 128-step SDE", res["teacher"], floor, "–", "–"))
        multistep = ", ".join(f"k={k}: {w:.4f}" for k, w in res["multistep"].items())
        t, timing = info["teacher"], info["sample_100k_seconds"]
        lines.append(
            f"| {name} | cost | distillation {info['max_iter']} it × {info['batch_size']} "
            f"({info['solver']}, {info['target_net']} target, {info['loss']}): "
            f"{info['train_seconds']:.0f} s, {info['teacher_nfe_per_iteration']:.0f} teacher + "
            f"{info['student_nfe_per_iteration']} student NFE per trajectory; teacher training "
            f"{t['max_iter']} it × {t['batch_size']}: {t['train_seconds']:.0f} s, "
            f"{info['teacher_training_nfe_per_iteration']} NFE per trajectory | 100 000 samples: "
            f"{timing['student_1']:.2f} s one step, {timing['teacher_128']:.2f} s teacher | "
            f"multistep W1: {multistep} | | | | | |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("teacher")
    p.add_argument("--target", choices=sorted(TARGETS), default="gmm9")
    p.add_argument("--max-iter", type=int, default=20_000)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--n-steps", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="benchmarks/results/cdds")
    p = sub.add_parser("train")
    p.add_argument("--teacher", required=True)
    p.add_argument("--n-intervals", type=int, default=17)
    p.add_argument("--max-iter", type=int, default=20_000)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--solver", choices=["euler", "heun"], default="euler")
    p.add_argument("--target-net", choices=["online", "ema"], default="online")
    p.add_argument("--loss", choices=["l2", "pseudo_huber"], default="l2")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--name")
    p.add_argument("--out", default="benchmarks/results/cdds")
    p = sub.add_parser("report")
    p.add_argument("dirs", nargs="+")
    p.add_argument("--markdown")
    args = parser.parse_args()
    {"teacher": teacher, "train": train, "report": report}[args.command](args)


if __name__ == "__main__":
    main()
