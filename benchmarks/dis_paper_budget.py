"""DiffusionSampler (DIS) at the paper's budget: quality on GMM9 and MW54, and training speed.

Three sub-commands, so that training can run on a GPU machine without POT and the metrics on
any machine afterwards:

    python benchmarks/dis_paper_budget.py train --target gmm9 --max-iter 20000 --out DIR
    python benchmarks/dis_paper_budget.py speed --iters 300 --out DIR
    python benchmarks/dis_paper_budget.py report DIR [DIR ...]

``train`` writes ``DIR/<target>.npz`` (6000 model samples, two independent sets of 6000 exact
samples, 100 000 SDE log-weights) and ``DIR/<target>.json`` (timings); ``report`` computes
the paper-definition Sinkhorn and the exact W1 (the limit of the converged Sinkhorn) with
their floors, ESS and |Δlog Z|.
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from skcds import DiffusionSampler
from skcds.bench import TARGETS as BENCH_TARGETS
from skcds.bench._run import device_name as _device_name

TARGETS = {name: partial(BENCH_TARGETS[name].build, None) for name in ("gmm9", "mw54")}
PAPER = {name: BENCH_TARGETS[name].paper[("dis", 128)] for name in TARGETS}  # Table 1
N_METRIC, N_WEIGHTS = 6000, 100_000


def _abort_if_diverging(sampler, record) -> None:
    """Stop a long run early, rather than spend its budget, if updates keep being skipped."""
    skipped = sum(r["skipped"] for r in sampler.history_[-100:])
    if record["iteration"] >= 100 and skipped > 50:
        raise RuntimeError(f"{skipped} of the last 100 updates skipped at {record}")


def train(args) -> None:
    energy = TARGETS[args.target]()
    sampler = DiffusionSampler(
        max_iter=args.max_iter,
        batch_size=args.batch_size,
        n_steps=args.n_steps,
        random_state=args.seed,
        verbose=1,
        callbacks=[_abort_if_diverging],
    )
    sampler.fit(energy)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sync = torch.cuda.synchronize if sampler.device_.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    model, _ = sampler.sample(N_METRIC, random_state=1, return_log_weights=True)
    sync()
    sample_seconds = time.perf_counter() - start
    _, log_w = sampler.sample(N_WEIGHTS, random_state=2, return_log_weights=True)
    g = torch.Generator(device=sampler.device_).manual_seed(3)
    exact = [
        energy.to(sampler.device_).sample(N_METRIC, generator=g).cpu().numpy() for _ in range(2)
    ]
    np.savez(
        out / f"{args.target}.npz",
        model=model,
        exact_a=exact[0],
        exact_b=exact[1],
        log_w=log_w,
        log_z=energy.log_normalizer,
    )
    history = sampler.history_
    info = {
        "target": args.target,
        "max_iter": args.max_iter,
        "batch_size": args.batch_size,
        "n_steps": args.n_steps,
        "device": _device_name(sampler.device_),
        "train_seconds": history[-1]["elapsed"],
        "seconds_per_iter": history[-1]["elapsed"] / len(history),
        "sample_6000_seconds": sample_seconds,
        "n_skipped": sum(r["skipped"] for r in history),
        "final_loss": history[-1]["loss"],
    }
    (out / f"{args.target}.json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info, indent=2))


def _seconds_per_iteration(execution: str, device: str, iters: int, warmup: int) -> float:
    energy = TARGETS["gmm9"]()
    stamps = []
    sampler = DiffusionSampler(
        max_iter=warmup + iters,
        execution=execution,
        device=device,
        random_state=0,
        callbacks=[lambda est, rec: stamps.append(time.perf_counter())],
    )
    sampler.fit(energy)
    return (stamps[-1] - stamps[warmup - 1]) / iters


def speed(args) -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    modes = ["eager", "cuda_graph"] if device == "cuda" else ["eager"]
    rows = {m: _seconds_per_iteration(m, device, args.iters, args.warmup) for m in modes}
    result = {
        "device": _device_name(torch.device(device)),
        "iters": args.iters,
        "seconds_per_iter": rows,
    }
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"speed_{device}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


def _metrics(data) -> dict:
    from skcds.metrics import estimate_log_normalizer, paper_sinkhorn, wasserstein

    model, a, b = data["model"], data["exact_a"], data["exact_b"]
    estimate = estimate_log_normalizer(data["log_w"])
    log_z = float(data["log_z"])
    return {
        "paper_sinkhorn": paper_sinkhorn(model, a),
        "paper_sinkhorn_floor": paper_sinkhorn(b, a),
        # exact W1 (POT's network simplex, seconds): the epsilon -> 0 limit of the converged
        # Sinkhorn cost, which itself takes over 15 minutes at 6000 samples on 2 CPU cores
        "w1": wasserstein(model, a, p=1),
        "w1_floor": wasserstein(b, a, p=1),
        "ess": estimate.ess,
        "abs_dlogz": abs(estimate.log_z - log_z),
        "abs_dlogz_elbo": abs(estimate.elbo - log_z),
        "log_z_stderr": estimate.stderr,
    }


def report(args) -> None:
    lines = ["| target | metric | paper DIS@128 | skcds DIS@128 | floor |", "|---|---|---|---|---|"]
    for folder in args.dirs:
        for path in sorted(Path(folder).glob("*.npz")):
            target = path.stem
            m = _metrics(np.load(path))
            info = json.loads(path.with_suffix(".json").read_text())
            paper = PAPER[target]
            lines += [
                f"| {target} | paper Sinkhorn | {paper['paper_sinkhorn']} | "
                f"{m['paper_sinkhorn']:.4f} | {m['paper_sinkhorn_floor']:.4f} |",
                f"| {target} | exact W1 (converged OT) | – | {m['w1']:.4f} | {m['w1_floor']:.4f} |",
                f"| {target} | ESS (n=1e5) | {paper['ess']} | {m['ess']:.4f} | 1 |",
                f"| {target} | IS abs Δlog Z (n=1e5) | {paper['abs_dlogz']} | "
                f"{m['abs_dlogz']:.4f} ± {m['log_z_stderr']:.4f} | 0 |",
                f"| {target} | ELBO abs Δlog Z | – | {m['abs_dlogz_elbo']:.4f} | 0 |",
                f"| {target} | training ({info['max_iter']} it, {info['device']}) | – | "
                f"{info['train_seconds']:.0f} s ({1e3 * info['seconds_per_iter']:.1f} ms/it) | – |",
            ]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train")
    p.add_argument("--target", choices=sorted(TARGETS), default="gmm9")
    p.add_argument("--max-iter", type=int, default=20_000)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--n-steps", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results")
    p.set_defaults(func=train)
    p = sub.add_parser("speed")
    p.add_argument("--iters", type=int, default=100)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--out", default="benchmarks/results")
    p.set_defaults(func=speed)
    p = sub.add_parser("report")
    p.add_argument("dirs", nargs="+")
    p.add_argument("--markdown")
    p.set_defaults(func=report)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
