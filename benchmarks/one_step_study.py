"""One-step study (issue 15): training variants of SelfConsistentSampler side by side at
equal CPU time, on one thread each.

    python benchmarks/one_step_study.py run --target gmm9 --variant paper --seconds 240 \
        --out benchmarks/results/one_step_study
    python benchmarks/one_step_study.py report --out benchmarks/results/one_step_study

``run`` times a short pilot to set ``max_iter`` so that training takes about ``--seconds``,
trains with an evaluation callback every tenth of the run (its time is excluded from the
training clock), then evaluates at every step count: exact W1 against 6000 exact samples
(floor: two exact sets), the fraction of reversed Jacobians (fold check), ESS, |Δlog Z|,
ELBO and PSIS k-hat of the change-of-variables weights. ``report`` writes ``table.md`` and
``time_to_quality.png``.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from skcds import ConsistentDistiller, DiffusionSampler, SelfConsistentSampler
from skcds.bench import TARGETS
from skcds.exceptions import InvalidWeightsWarning
from skcds.metrics import estimate_log_normalizer, wasserstein

N_EVAL = 6000
BATCH = 256
N_STEPS = 32

VARIANTS = {
    "paper": {},
    "ema": {"consistency_target": "ema"},
    "fold": {"fold_weight": 1.0},
    "flowmap_fold": {"flow_map_weight": 1.0, "fold_weight": 1.0},
    "flowmap_fold_ema": {"flow_map_weight": 1.0, "fold_weight": 1.0, "consistency_target": "ema"},
    "flowmap_fold_nosc": {"flow_map_weight": 1.0, "fold_weight": 1.0, "consistency_weight": 0.0},
    "flowmap_fold_kl": {"flow_map_weight": 1.0, "fold_weight": 1.0, "kl_weight": 0.1},
    "flowmap_fold_kl1": {"flow_map_weight": 1.0, "fold_weight": 1.0, "kl_weight": 1.0},
    "fold_kl": {"fold_weight": 1.0, "kl_weight": 0.1},
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
    """Every ``every`` iterations: one-step W1 (2000 samples) against training seconds."""

    def __init__(self, every, exact2000, floor2000):
        self.every, self.exact, self.floor = every, exact2000, floor2000
        self.points, self.excluded = [], 0.0

    def __call__(self, sampler, record):
        if (record["iteration"] + 1) % self.every:
            return
        start = time.perf_counter()
        x = sampler.sample(2000, n_steps=1, random_state=7)
        w1 = wasserstein(x, self.exact, p=1)
        self.excluded += time.perf_counter() - start
        train_s = record["elapsed"] - self.excluded + (time.perf_counter() - start)
        self.points.append((train_s, w1 / self.floor))


def _make(variant, target, max_iter, seed, callbacks=None):
    if variant == "cdds":
        return None
    return SelfConsistentSampler(
        n_steps=N_STEPS,
        max_iter=max_iter,
        batch_size=BATCH,
        random_state=seed,
        callbacks=callbacks,
        **VARIANTS[variant],
    )


def run(args) -> None:
    torch.set_num_threads(1)
    bench = TARGETS[args.target]
    energy = bench.build(None)
    g = torch.Generator().manual_seed(2)
    exact, exact_b = (energy.sample(N_EVAL, generator=g).numpy() for _ in range(2))
    exact2000, exact2000_b = exact[:2000], exact_b[:2000]
    floor2000 = wasserstein(exact2000_b, exact2000, p=1)
    log_z = getattr(energy, "log_normalizer", None)
    log_z = float(log_z) if log_z is not None else None
    out = Path(args.out) / args.target
    out.mkdir(parents=True, exist_ok=True)
    if args.variant == "cdds":
        record = _run_cdds(args, energy, exact, exact_b, exact2000, floor2000, log_z)
    else:
        pilot = _make(args.variant, energy, 20, args.seed).fit(energy)
        per_iter = pilot.history_[-1]["elapsed"] / 20
        max_iter = max(50, int(args.seconds / per_iter))
        monitor = _Monitor(max(1, max_iter // 10), exact2000, floor2000)
        sampler = _make(args.variant, energy, max_iter, args.seed, [monitor])
        sampler.fit(energy)
        train_s = sampler.history_[-1]["elapsed"] - monitor.excluded
        steps = [2**j for j in range(int(np.log2(N_STEPS)) + 1)]
        record = {
            "variant": args.variant,
            "params": VARIANTS[args.variant],
            "max_iter": max_iter,
            "batch_size": BATCH,
            "n_steps": N_STEPS,
            "train_seconds": train_s,
            "curve": monitor.points,
            "eval": evaluate(sampler, energy, exact, exact_b, steps, log_z),
        }
    (out / f"{args.variant}.json").write_text(json.dumps(record, indent=1))
    one = record["eval"][1] if 1 in record["eval"] else record["eval"]["1"]
    print(args.target, args.variant, f"{record['train_seconds']:.0f}s", json.dumps(one))


def _run_cdds(args, energy, exact, exact_b, exact2000, floor2000, log_z) -> dict:
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
    monitor = _Monitor(max(1, max_iter // 10), exact2000, floor2000)
    student = ConsistentDistiller(
        teacher, max_iter=max_iter, batch_size=BATCH, random_state=args.seed, callbacks=[monitor]
    ).fit()
    train_s = student.history_[-1]["elapsed"] - monitor.excluded
    curve = [(teacher_s + s, q) for s, q in monitor.points]
    return {
        "variant": "cdds",
        "params": {"teacher_iter": teacher_iter, "max_iter": max_iter},
        "max_iter": max_iter,
        "batch_size": BATCH,
        "train_seconds": teacher_s + train_s,
        "curve": curve,
        "eval": evaluate(student, energy, exact, exact_b, [1, 2, 4], log_z),
    }


def report(args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    root = Path(args.out)
    lines = [
        "| target | variant | train s | iters | k | W1/floor | reversed | ESS | abs dlogZ | k-hat |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    targets = sorted(p for p in root.iterdir() if p.is_dir())
    fig, axes = plt.subplots(1, len(targets), figsize=(5 * len(targets), 4), squeeze=False)
    for ax, folder in zip(axes[0], targets, strict=True):
        for path in sorted(folder.glob("*.json")):
            rec = json.loads(path.read_text())
            for k, row in rec["eval"].items():
                if k == "floor":
                    continue
                dz = "" if row["abs_dlogz"] is None else f"{row['abs_dlogz']:.3f}"
                lines.append(
                    f"| {folder.name} | {rec['variant']} | {rec['train_seconds']:.0f} | "
                    f"{rec['max_iter']} | {k} | {row['w1_over_floor']:.2f} | "
                    f"{100 * row['reversed']:.1f}% | {row['ess']:.3f} | {dz} | "
                    f"{row['khat']:.2f} |"
                )
            if rec["curve"]:
                s, q = zip(*rec["curve"], strict=True)
                ax.plot(s, q, marker="o", ms=3, label=rec["variant"])
        ax.set(title=folder.name, xlabel="training seconds (1 CPU thread)", ylabel="1-step W1 / floor")
        ax.set_yscale("log")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.legend(fontsize=8)
    (root / "table.md").write_text("\n".join(lines) + "\n")
    fig.savefig(root / "time_to_quality.png", dpi=110, bbox_inches="tight")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["run", "report"])
    parser.add_argument("--target", default="gmm9")
    parser.add_argument("--variant", default="paper", choices=[*VARIANTS, "cdds"])
    parser.add_argument("--seconds", type=float, default=240.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/one_step_study")
    args = parser.parse_args()
    run(args) if args.command == "run" else report(args)


if __name__ == "__main__":
    main()
