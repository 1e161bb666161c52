"""Throughput against the number of processes W (gloo, one thread each): training
iterations per second at a fixed global batch, and samples per second.

    python benchmarks/distributed_scaling.py OUT.json [--workers 1,2] [--batch-size 512]

Every configuration runs under :func:`skcds.distributed.launch` (W = 1 too, so that the
process start-up is the same); the clock is read on rank 0 around ``fit`` (after a warm-up
fit of 3 iterations) and around ``sample``. Efficiency = speed-up / W.
"""

import argparse
import json
import time
import warnings

import torch

from skcds import DiffusionSampler, SelfConsistentSampler
from skcds.distributed import launch
from skcds.energies import ManyWell

CONFIG = {"n_steps": 32, "batch_size": 512, "random_state": 0}


def measure(method: str, iterations: int, n_samples: int, batch_size: int) -> dict:
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    cls = SelfConsistentSampler if method == "scds" else DiffusionSampler
    energy = ManyWell.mw52()  # 50-D: the score costs something, as in real use
    config = {**CONFIG, "batch_size": batch_size}
    cls(**config, max_iter=3).fit(energy)  # warm-up: allocations, first calls
    sampler = cls(**config, max_iter=iterations)
    start = time.perf_counter()
    sampler.fit(energy)
    train = time.perf_counter() - start
    start = time.perf_counter()
    sampler.sample(n_samples, n_steps=32 if method == "dis" else 1, random_state=0)
    sample = time.perf_counter() - start
    return {"iterations_per_s": iterations / train, "samples_per_s": n_samples / sample}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--methods", default="dis,scds")
    args = parser.parse_args()
    rows = []
    for method in args.methods.split(","):
        for w in (int(v) for v in args.workers.split(",")):
            result = launch(measure, w, method, args.iterations, args.samples, args.batch_size)[0]
            rows.append({"method": method, "workers": w, **result})
            base = next(r for r in rows if r["method"] == method and r["workers"] == 1)
            speedup = rows[-1]["iterations_per_s"] / base["iterations_per_s"]
            rows[-1].update(training_speedup=speedup, training_efficiency=speedup / w)
            rows[-1]["sampling_speedup"] = rows[-1]["samples_per_s"] / base["samples_per_s"]
            print(json.dumps(rows[-1]))
    with open(args.out, "w") as handle:
        json.dump(
            {"config": {**CONFIG, "batch_size": args.batch_size}, "target": "mw52", "rows": rows},
            handle,
            indent=1,
        )


if __name__ == "__main__":
    main()
