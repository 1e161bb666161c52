"""Sampling cost of the one-step flow against the one-step jump (issue 27).

    OMP_NUM_THREADS=1 python benchmarks/flow_sampling_cost.py \
        --out benchmarks/results/flow_sampling_cost

Process CPU seconds on one thread for ``--n`` one-step draws, without and with log-weights,
of ``SelfConsistentSampler(student='flow')`` (a coupling-NSF pass; weights: its log-density
from the same pass plus one energy evaluation) and ``student='jump'`` (one control
evaluation; weights: the jump's exact Jacobian determinant, a ``d x d`` Jacobian per draw,
plus the energy). Training is 2 iterations: the cost of a pass does not depend on the
weights' values. Sampled in chunks of 65 536 as ``sample`` does; the median of 3 repeats.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from skcds import SelfConsistentSampler
from skcds.bench import TARGETS


def seconds(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--targets", nargs="+", default=["gmm9", "mw54", "funnel", "mw52"])
    parser.add_argument("--out", default="bench_results/flow_sampling_cost")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for target in args.targets:
        energy = TARGETS[target].build(None)
        for student in ("flow", "jump"):
            sampler = SelfConsistentSampler(
                student=student, n_steps=32, max_iter=2, batch_size=64, random_state=0
            ).fit(energy)
            n_weighted = args.n if student == "flow" or energy.dim <= 10 else args.n // 100
            row = {
                "target": target,
                "dim": energy.dim,
                "student": student,
                "n": args.n,
                "seconds": seconds(lambda s=sampler: s.sample(args.n, random_state=0)),
                "n_weighted": n_weighted,
                "seconds_with_weights": seconds(
                    lambda s=sampler, m=n_weighted: s.sample(
                        m, random_state=0, return_log_weights=True
                    ),
                    repeats=1,
                ),
            }
            print(json.dumps(row))
            rows.append(row)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cost.json").write_text(json.dumps(rows, indent=1))
    lines = [
        "| target (d) | student | s per 10^6 draws | s per 10^6 with weights |",
        "|---|---|---|---|",
    ]
    for r in rows:
        scale = 1e6 / r["n_weighted"]
        weighted = f"{r['seconds_with_weights'] * scale:.1f}"
        if r["n_weighted"] != r["n"]:
            weighted += f" (from {r['n_weighted']} draws)"
        per = r["seconds"] * 1e6 / r["n"]
        lines.append(f"| {r['target']} ({r['dim']}) | {r['student']} | {per:.2f} | {weighted} |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
