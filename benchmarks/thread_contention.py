"""Training speed on a shared CPU: iterations per second of a fit alone and beside one or
two busy loops (another process on one core, or on every core of a 2-core machine), with
torch's thread pool (``n_threads=None``, one thread per core) and with ``n_threads='auto'``
(one thread for small networks), at the default network and batch and at larger batches
(issue 26).

    python benchmarks/thread_contention.py --out benchmarks/results/thread_contention

Wall-clock seconds (what a user waits), not process time: the point is what another
process does to a fit. Each fit trains for at most ``--seconds`` (``max_time``) on a 6-D
Gaussian with the default ``DiffusionSampler`` (128 steps, width 64, Langevin control).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from skcds import DiffusionSampler
from skcds.energies import from_log_prob

BUSY_LOOP = "while True: pass"


def gaussian(x: torch.Tensor) -> torch.Tensor:
    return -0.5 * ((x - 1.0) / 0.7).square().sum(-1)


def iterations_per_second(batch_size: int, n_threads, seconds: float) -> tuple[float, int]:
    """Iterations per second of a fit, and torch's threads during its training."""
    threads = []
    sampler = DiffusionSampler(
        batch_size=batch_size,
        max_iter=10_000,
        max_time=seconds,
        early_stopping=False,
        n_threads=n_threads,
        random_state=0,
        device="cpu",
        callbacks=[lambda est, record: threads.append(torch.get_num_threads())],
    )
    sampler.fit(from_log_prob(gaussian, dim=6))
    return sampler.n_iter_ / sampler.history_[-1]["elapsed"], threads[0]


def measure(batch_size: int, n_threads, busy: int, seconds: float) -> dict:
    loops = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(busy)]
    try:
        time.sleep(0.5 if busy else 0.0)  # the loops are running before the fit starts
        rate, threads = iterations_per_second(batch_size, n_threads, seconds)
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()
    return {
        "batch_size": batch_size,
        "n_threads": "torch" if n_threads is None else n_threads,
        "threads_used": threads,
        "busy_loops": busy,
        "it_per_s": rate,
    }


def table(rows: list[dict], loops: list[int]) -> list[str]:
    """One line per batch and thread setting: it/s alone and beside each number of busy
    loops, with the slowdown against alone."""
    busy = [n for n in loops if n]
    header = ["batch", "n_threads", "threads used", "alone (it/s)"]
    header += [f"{n} busy loop(s): it/s (slowdown)" for n in busy]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for batch, threads in sorted({(r["batch_size"], str(r["n_threads"])) for r in rows}):
        rate = {
            r["busy_loops"]: r
            for r in rows
            if (r["batch_size"], str(r["n_threads"])) == (batch, threads)
        }
        alone = rate[0]["it_per_s"]
        cells = [str(batch), threads, str(rate[0]["threads_used"]), f"{alone:.2f}"]
        cells += [f"{rate[n]['it_per_s']:.2f} ({alone / rate[n]['it_per_s']:.1f}x)" for n in busy]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench_results/thread_contention")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--batches", default="512,2048,8192")
    parser.add_argument("--busy-loops", default="0,1,2", help="0 is the fit alone")
    args = parser.parse_args()
    loops = [int(n) for n in args.busy_loops.split(",")]
    rows = []
    for batch in map(int, args.batches.split(",")):
        for n_threads in (None, "auto", 1):
            if n_threads == 1 and batch == 512:
                continue  # 'auto' is one thread there
            for busy in loops:
                rows.append(measure(batch, n_threads, busy, args.seconds))
                print(json.dumps(rows[-1]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    (out / "table.md").write_text("\n".join(table(rows, loops)) + "\n")
    print("\n".join(table(rows, loops)))


if __name__ == "__main__":
    main()
