"""SelfConsistentSampler (SCDS): quality against the number of sampling steps (the paper's
Figure 3), valid weights at every step count, and one-step vs N-step sampling time.

    python benchmarks/scds_steps.py train --target gmm9 --max-iter 3000 --out DIR
    python benchmarks/scds_steps.py report DIR [--markdown DIR/table.md --plot DIR/steps.png]

``train`` fits one sampler and writes ``DIR/<name>.npz``: for every ``k`` dividing the grid,
6000 samples of the ``k``-step ODE sampler with their exact change-of-variables log-weights,
plus two independent sets of 6000 exact target samples; and ``DIR/<name>.json`` with the
training time and the wall-clock time of 100 000 samples at ``k = 1`` and ``k = N``.
``report`` computes the exact W1 (POT; the epsilon -> 0 limit of the converged Sinkhorn), ESS,
|Δlog Z| (importance sampling) and the ELBO gap at every ``k``, the converged (epsilon = 1e-3)
and paper-definition Sinkhorn costs at ``k = 1`` and ``k = N`` (minutes each on a CPU), and the
floors: each metric between two independent exact sample sets.
"""

from __future__ import annotations

import argparse
import json
import re
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import torch

from skcds import SelfConsistentSampler
from skcds.bench import TARGETS as BENCH_TARGETS
from skcds.bench._run import device_name as _device_name
from skcds.exceptions import InvalidWeightsWarning

TARGETS = {  # the benchmark harness's targets with exact samples
    name: partial(BENCH_TARGETS[name].build, None) for name in ("gmm9", "mw54", "funnel", "mw52")
}


def paper_one_step(method: str, target: str) -> tuple[float, float, float]:
    """The paper's one-step (Sinkhorn, ESS, |Δlog Z|) of ``method`` (method.md §7 Table 1)."""
    numbers = BENCH_TARGETS[target].paper[(method, 1)]
    return numbers["paper_sinkhorn"], numbers["ess"], numbers["abs_dlogz"]


PAPER_SCDS_1 = {name: paper_one_step("scds", name) for name in TARGETS}
N_METRIC, N_TIMING = 6000, 100_000


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def train(args) -> None:
    torch.set_num_threads(args.threads)
    energy = TARGETS[args.target]()
    sampler = SelfConsistentSampler(
        n_steps=args.n_steps,
        max_iter=args.max_iter,
        batch_size=args.batch_size,
        update=args.update,
        random_state=args.seed,
    )
    sampler.fit(energy)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = args.name or args.target
    steps = [2**j for j in range(args.n_steps.bit_length())]
    arrays = {"steps": np.array(steps), "log_z": energy.log_normalizer}
    weight_seconds, folding = {}, {}
    for k in steps:
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", InvalidWeightsWarning)
            x, log_w = sampler.sample(
                args.n_metric, n_steps=k, random_state=1, return_log_weights=True
            )
        weight_seconds[k] = time.perf_counter() - start
        folding[k] = [str(w.message) for w in caught if w.category is InvalidWeightsWarning]
        arrays[f"x_{k}"], arrays[f"log_w_{k}"] = x, log_w
    g = torch.Generator().manual_seed(3)
    exact = (energy.sample(args.n_metric, g).numpy() for _ in range(2))
    arrays["exact_a"], arrays["exact_b"] = exact
    np.savez(out / f"{name}.npz", **arrays)
    history = sampler.history_
    info = {
        "target": args.target,
        "update": args.update,
        "max_iter": args.max_iter,
        "batch_size": args.batch_size,
        "n_steps": args.n_steps,
        "device": _device_name(sampler.device_),
        "train_seconds": history[-1]["elapsed"],
        "seconds_per_iter": history[-1]["elapsed"] / len(history),
        "sample_100k_seconds": {
            k: _timed(lambda k=k: sampler.sample(N_TIMING, n_steps=k, random_state=0))
            for k in (1, args.n_steps)
        },
        "sample_6000_with_weights_seconds": weight_seconds,
        "folding_warnings": folding,
        "n_skipped": sum(r["skipped"] for r in history),
        "final_loss": history[-1]["loss"],
        "final_consistency_loss": history[-1]["consistency_loss"],
    }
    (out / f"{name}.json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info, indent=2))


def _metrics(data, k: int, transport: bool) -> dict:
    """Weights and exact W1 at every ``k``; the (slow) Sinkhorn costs only if ``transport``."""
    from skcds.metrics import estimate_log_normalizer, paper_sinkhorn, sinkhorn, wasserstein

    x, a = data[f"x_{k}"], data["exact_a"]
    estimate = estimate_log_normalizer(data[f"log_w_{k}"])
    log_z = float(data["log_z"])
    row = {
        "w1": wasserstein(x, a, p=1),
        "ess": estimate.ess,
        "abs_dlogz": abs(estimate.log_z - log_z),
        "log_z_stderr": estimate.stderr,
        "elbo_gap": log_z - estimate.elbo,
        "elbo_stderr": estimate.elbo_stderr,
    }
    if transport:
        start = time.perf_counter()
        row["sinkhorn"] = sinkhorn(x, a)
        row["paper_sinkhorn"] = paper_sinkhorn(x, a)
        row["sinkhorn_seconds"] = time.perf_counter() - start
    print(k, json.dumps(row), flush=True)
    return row


def report(args) -> None:
    from skcds.metrics import paper_sinkhorn, sinkhorn, wasserstein

    results = {}
    for folder in args.dirs:
        for path in sorted(Path(folder).glob("*.npz")):
            cache = path.with_suffix(".metrics.json")
            if cache.exists():  # metrics take minutes: computed once per run
                results[path.stem] = json.loads(cache.read_text())
                continue
            data = np.load(path)
            info = json.loads(path.with_suffix(".json").read_text())
            a, b = data["exact_a"], data["exact_b"]
            last = int(data["steps"][-1])
            results[path.stem] = {
                "info": info,
                "steps": {int(k): _metrics(data, int(k), k in (1, last)) for k in data["steps"]},
                "floor": {
                    "w1": wasserstein(b, a, p=1),
                    "sinkhorn": sinkhorn(b, a),
                    "paper_sinkhorn": paper_sinkhorn(b, a),
                },
            }
            cache.write_text(json.dumps(results[path.stem], indent=2))
            print(path.stem, json.dumps(results[path.stem]["steps"][1]), flush=True)
    for res in results.values():
        res["steps"] = {int(k): m for k, m in res["steps"].items()}
    lines = _table(results)
    print("\n".join(lines))
    if args.markdown:
        Path(args.markdown).write_text("\n".join(lines) + "\n")
        Path(args.markdown).with_suffix(".json").write_text(json.dumps(results, indent=2))
    if args.plot:
        _plot(results, args.plot)


def _fold_summary(messages: list[str]) -> str:
    """'no', or 'yes' with the largest reversed-orientation fraction the warning names."""
    if not messages:
        return "no"
    found = re.search(r"up to ([0-9.e+-]+%)", messages[0])
    return f"yes ({found.group(1)} reversed): weights invalid" if found else "yes: weights invalid"


def _table(results) -> list[str]:
    lines = [
        "| run | k | exact W1 (floor) | converged Sinkhorn (floor) "
        "| paper Sinkhorn (floor; paper SCDS@1) | ESS | IS abs Δlog Z | ELBO gap | map folds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, res in results.items():
        floor, target = res["floor"], res["info"]["target"]
        folds = res["info"]["folding_warnings"]
        for k, m in res["steps"].items():
            converged = paper = "–"
            if "sinkhorn" in m:
                converged = f"{m['sinkhorn']:.4f} ({floor['sinkhorn']:.4f})"
                paper = (
                    f"{m['paper_sinkhorn']:.4f} ({floor['paper_sinkhorn']:.4f}; "
                    f"{PAPER_SCDS_1[target][0] if k == 1 else '–'})"
                )
            lines.append(
                f"| {name} | {k} | {m['w1']:.4f} ({floor['w1']:.4f}) | {converged} | {paper} | "
                f"{m['ess']:.3g} | {m['abs_dlogz']:.3f} ± {m['log_z_stderr']:.3f} | "
                f"{m['elbo_gap']:.3f} ± {m['elbo_stderr']:.3f} | "
                f"{_fold_summary(folds[str(k)])} |"
            )
        info = res["info"]
        timing = info["sample_100k_seconds"]
        lines.append(
            f"| {name} | train | {info['max_iter']} it × {info['batch_size']}, N = "
            f"{info['n_steps']}, update={info['update']}: {info['train_seconds']:.0f} s on "
            f"{info['device']} | 100 000 samples: {timing['1']:.2f} s at k = 1, "
            f"{timing[str(info['n_steps'])]:.2f} s at k = {info['n_steps']} | | | | | | |"
        )
    return lines


def _plot(results, path) -> None:
    """Exact W1 and ELBO gap against k, one panel per target; open markers: the map folds,
    so that k's weights (and its ELBO) are not valid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = sorted({res["info"]["target"] for res in results.values()}, key=list(TARGETS).index)
    fig, axes = plt.subplots(2, len(targets), figsize=(3.4 * len(targets), 6), squeeze=False)
    for column, target in enumerate(targets):
        top, bottom = axes[0, column], axes[1, column]
        for name, res in results.items():
            if res["info"]["target"] != target:
                continue
            ks = sorted(res["steps"])
            folds = [bool(res["info"]["folding_warnings"][str(k)]) for k in ks]
            for ax, key in ((top, "w1"), (bottom, "elbo_gap")):
                values = [res["steps"][k][key] for k in ks]
                (line,) = ax.plot(ks, values, "-", label=name.removeprefix(f"{target}_"))
                valid = [(k, y) for k, y, f in zip(ks, values, folds, strict=True) if not f]
                folded = [(k, y) for k, y, f in zip(ks, values, folds, strict=True) if f]
                for points, face in ((valid, line.get_color()), (folded, "white")):
                    if points:
                        ax.plot(*zip(*points, strict=True), "o", color=line.get_color(), mfc=face)
            top.axhline(res["floor"]["w1"], color="grey", ls=":", lw=1)
        top.set(xscale="log", yscale="log", title=target)
        # a folding map's "gap" can be negative; log scale leaves such points out, on purpose
        bottom.set(xscale="log", yscale="log", xlabel="sampling steps k")
        for ax in (top, bottom):
            ax.set_xticks(ks, [str(k) for k in ks], fontsize=7)
        top.legend(fontsize=7)
    axes[0, 0].set_ylabel("exact W1 (dotted: floor)")
    axes[1, 0].set_ylabel("log Z - ELBO")
    fig.suptitle(
        "SelfConsistentSampler: quality against sampling steps\n"
        "(open markers: the k-step map folds, so its weights are invalid)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train")
    p.add_argument("--target", choices=sorted(TARGETS), default="gmm9")
    p.add_argument("--update", choices=["alternate", "sum"], default="alternate")
    p.add_argument("--max-iter", type=int, default=20_000)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--n-steps", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--n-metric", type=int, default=N_METRIC)
    p.add_argument("--name")
    p.add_argument("--out", default="benchmarks/results/scds")
    p.set_defaults(func=train)
    p = sub.add_parser("report")
    p.add_argument("dirs", nargs="+")
    p.add_argument("--markdown")
    p.add_argument("--plot")
    p.set_defaults(func=report)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
