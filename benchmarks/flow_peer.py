"""The peer a user would try instead of skcds: a normalizing flow (zuko's NSF or RealNVP)
trained by reverse KL on the energy alone, at a budget of process CPU seconds on one thread,
evaluated as ``one_step_study.py`` evaluates the samplers (issue 27, item 6).

    python benchmarks/flow_peer.py --target gmm9 --flow nsf --seconds 150 \
        --out benchmarks/results/flow_peer

Per run: W1 of 6000 draws against 6000 exact samples over the *expected* floor (the mean W1
of two exact sets, ``one_step_study.expected_floor``), the ESS, ``|delta log Z|`` and ELBO of
the flow's exact importance weights ``log rho - log q``, and the per-coordinate sd ratios.
The flow's base draws come from torch's global RNG (zuko samples there), seeded by
``--seed``: a benchmark script, not package code.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import zuko
from one_step_study import N_EVAL, expected_floor

from skcds.bench import TARGETS
from skcds.metrics import estimate_log_normalizer, wasserstein

FLOWS = {"nsf": zuko.flows.NSF, "realnvp": zuko.flows.RealNVP}
BATCH, LEARNING_RATE, HIDDEN, TRANSFORMS = 512, 1e-3, (128, 128), 4


def train(flow, energy, seconds: float) -> tuple[int, float]:
    """Reverse KL ``E_q[log q - log rho]`` by reparametrisation, Adam, until ``seconds`` of
    process time; returns the iterations and the seconds taken."""
    optimizer = torch.optim.Adam(flow.parameters(), lr=LEARNING_RATE)
    start, iterations = time.process_time(), 0
    while time.process_time() - start < seconds:
        x, log_q = flow().rsample_and_log_prob((BATCH,))
        log_rho = energy.log_prob(x)
        keep = torch.isfinite(log_rho) & torch.isfinite(log_q)
        loss = (log_q - log_rho)[keep].mean()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(flow.parameters(), 10.0)
        optimizer.step()
        iterations += 1
    return iterations, time.process_time() - start


def evaluate(flow, energy, exact: np.ndarray, floor: float, log_z) -> dict:
    with torch.no_grad():
        x, log_q = flow().rsample_and_log_prob((N_EVAL,))
        log_w = (energy.log_prob(x) - log_q).double().numpy()
    x = x.numpy()
    estimate = estimate_log_normalizer(log_w)
    w1 = wasserstein(x, exact, p=1)
    return {
        "w1": w1,
        "w1_over_floor": w1 / floor,
        "ess": estimate.ess,
        "abs_dlogz": abs(estimate.log_z - log_z) if log_z is not None else None,
        "elbo": estimate.elbo,
        "sd_ratio": (x.std(0) / exact.std(0)).tolist(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=["gmm9", "mw54", "funnel", "mw52"], required=True)
    parser.add_argument("--flow", choices=sorted(FLOWS), required=True)
    parser.add_argument("--seconds", type=float, default=150.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench_results/flow_peer")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    energy = TARGETS[args.target].build(None)
    exact = energy.sample(N_EVAL, generator=torch.Generator().manual_seed(2)).numpy()
    floor, floor_sd = expected_floor(energy, N_EVAL)
    log_z = getattr(energy, "log_normalizer", None)
    log_z = float(log_z) if log_z is not None else None
    flow = FLOWS[args.flow](
        features=energy.dim, transforms=TRANSFORMS, hidden_features=HIDDEN
    ).float()
    iterations, seconds = train(flow, energy, args.seconds)
    record = {
        "target": args.target,
        "flow": args.flow,
        "zuko": zuko.__version__,
        "seed": args.seed,
        "batch_size": BATCH,
        "transforms": TRANSFORMS,
        "hidden_features": list(HIDDEN),
        "iterations": iterations,
        "train_process_seconds": seconds,
        "expected_floor": floor,
        "expected_floor_sd": floor_sd,
        "eval": evaluate(flow, energy, exact, floor, log_z),
    }
    out = Path(args.out) / args.target
    out.mkdir(parents=True, exist_ok=True)
    name = f"{args.flow}_{math.floor(args.seconds)}s_seed{args.seed}"
    (out / f"{name}.json").write_text(json.dumps(record, indent=1))
    print(json.dumps({k: record[k] for k in ("target", "flow", "iterations")} | record["eval"]))


if __name__ == "__main__":
    main()
