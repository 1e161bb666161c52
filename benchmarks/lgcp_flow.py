"""One-step sampling with exact weights on the LGCP (40 x 40 pines field, d = 1600), issue 27.

    OMP_NUM_THREADS=1 python benchmarks/lgcp_flow.py --seconds 600 \
        --out benchmarks/results/lgcp_flow

Trains ``SelfConsistentSampler(student='flow')`` for about ``--seconds`` of process time on
one thread (``max_iter`` from a pilot's time per iteration), then reports the one-step
flow's exact importance weights (no Jacobian: the coupling flow's log-determinant comes with
each draw) on ``--n-eval`` draws: ELBO, log Z estimate, ESS, PSIS k-hat, and the same for
the network's own SDE (``method='sde'``), with the seconds each took to draw. The paper
reports ELBOs of 365.6 (DIS, 256 steps) and -4579.7 (SCDS, one step) and a reference
log Z of 512.6, at 50 000 iterations of batch 64 on a GPU.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from flow_distiller_study import fit_for

from skcds import SelfConsistentSampler
from skcds.bench import TARGETS
from skcds.metrics import estimate_log_normalizer


def weights(sampler, n: int, **options) -> dict:
    start = time.process_time()
    _, log_w = sampler.sample(n, random_state=1, return_log_weights=True, **options)
    seconds = time.process_time() - start
    estimate = estimate_log_normalizer(log_w.astype("float64"))
    return {
        "elbo": estimate.elbo,
        "log_z": estimate.log_z,
        "stderr": estimate.stderr,
        "ess": estimate.ess,
        "khat": estimate.khat,
        "draw_process_seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--n-steps", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--n-eval", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench_results/lgcp_flow")
    args = parser.parse_args()
    torch.set_num_threads(1)
    energy = TARGETS["lgcp"].build(None)

    def make(max_iter):
        return SelfConsistentSampler(
            student="flow", n_steps=args.n_steps, batch_size=args.batch_size, kl_weight=0.0,
            max_iter=max_iter, early_stopping=False, random_state=args.seed,
        )  # fmt: skip

    sampler, seconds = fit_for(make, lambda m: m.fit(energy), args.seconds)
    record = {
        "seconds": args.seconds,
        "n_steps": args.n_steps,
        "batch_size": args.batch_size,
        "iterations": sampler.n_iter_,
        "process_seconds": seconds,
        "one_step_flow": weights(sampler, args.n_eval),
        "sde": weights(sampler, args.n_eval, method="sde", n_steps=args.n_steps),
        "paper": {"dis_256_elbo": 365.6, "scds_one_step_elbo": -4579.7, "log_z": 512.6},
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"{args.seconds:g}s_batch{args.batch_size}_seed{args.seed}.json"
    (out / name).write_text(json.dumps(record, indent=1))
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
