"""Issue 27, the Funnel miss: ways to let the flow student find the funnel's neck, which
the diffusion sampler it learns from misses (its SDE: ESS 0.03), at equal process time.

    OMP_NUM_THREADS=1 python benchmarks/flow_funnel_study.py --variant late_rkl \
        --target funnel --seconds 150 --out benchmarks/results/flow_funnel_study
    python benchmarks/flow_funnel_study.py --report --out benchmarks/results/flow_funnel_study

Variants of the flow's loss in ``SelfConsistentSampler(student='flow')`` (the diffusion
sampler's loss unchanged); ``t`` is the iteration over ``max_iter``:

- ``default``: the weighted forward KL on the SDE's draws (the shipped default);
- ``late_rkl``: plus the flow's reverse KL (weight 1) from ``t = 0.5`` on, once the forward
  KL has given the flow the modes;
- ``ramp_rkl``: plus the reverse KL with weight ``t`` (0 to 1);
- ``self_is``: plus the weighted forward KL on the flow's own draws (exact weights
  ``rho / q``, detached), from ``t = 0.5``: the flow's coverage of the neck then counts.

Evaluation as in ``flow_distiller_study.py`` (6000 draws, W1 over the expected floor).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from flow_distiller_study import evaluate, fit_for
from one_step_study import N_EVAL, expected_floor

from skcds import SelfConsistentSampler
from skcds._core.losses import kl, weighted_forward_kl
from skcds.bench import TARGETS

VARIANTS = ("default", "late_rkl", "ramp_rkl", "self_is")


class StudySampler(SelfConsistentSampler):
    """``SelfConsistentSampler(student='flow')`` with the flow loss of ``variant``."""

    variant = "default"

    def _training_steps(self, iteration: int):
        self._progress = iteration / max(1, self.max_iter)
        yield from super()._training_steps(iteration)

    def _flow_loss(self, flow, x, log_w, reverse_kl, generator):
        loss, logs, n_masked = super()._flow_loss(flow, x, log_w, 0.0, generator)
        t, d = self._progress, self.n_features_in_
        weight = {"late_rkl": float(t >= 0.5), "ramp_rkl": t, "self_is": float(t >= 0.5)}
        weight = weight.get(self.variant, 0.0)
        if not weight:
            return loss, logs, n_masked
        y, log_q = flow(self._flow_noise(x.shape[0], generator))
        log_rho = self._dynamics_energy._log_prob(y)
        if self.variant == "self_is":
            y, log_w_self = y.detach(), (log_rho - log_q).detach()
            extra, _ = weighted_forward_kl(flow.log_prob(y), log_w_self)
        else:
            extra, _ = kl(log_rho - log_q)
        return loss + weight * extra / d, logs, n_masked


def run(args) -> dict:
    torch.set_num_threads(1)
    energy = TARGETS[args.target].build(None)
    exact = energy.sample(N_EVAL, generator=torch.Generator().manual_seed(2)).numpy()
    floor, _ = expected_floor(energy, N_EVAL)
    log_z = getattr(energy, "log_normalizer", None)
    log_z = float(log_z) if log_z is not None else None

    def make(max_iter):
        model = StudySampler(
            student="flow", n_steps=32, batch_size=256, max_iter=max_iter,
            early_stopping=False, random_state=args.seed,
        )  # fmt: skip
        model.variant = args.variant
        return model

    sampler, seconds = fit_for(make, lambda m: m.fit(energy), args.seconds)
    return {
        "target": args.target,
        "variant": args.variant,
        "seed": args.seed,
        "seconds": args.seconds,
        "iterations": sampler.n_iter_,
        "process_seconds": seconds,
        "expected_floor": floor,
        "eval": evaluate(sampler, energy, exact, floor, log_z),
    }


def report(out: Path) -> list[str]:
    lines = [
        "| target | variant | seed | process s | iterations | W1/floor 1 step | 2 | 4 | 8 "
        "| ESS | abs dlog Z |",
        "|" + "---|" * 11,
    ]
    for path in sorted(out.glob("*/*.json")):
        r = json.loads(path.read_text())
        e = r["eval"]
        by = [f"{e['w1_by_steps'][k]:.2f}" for k in ("2", "4", "8")]
        dlogz = "-" if e["abs_dlogz"] is None else f"{e['abs_dlogz']:.3f}"
        cells = [r["target"], r["variant"], str(r["seed"]), f"{r['process_seconds']:.0f}",
                 str(r["iterations"]), f"{e['w1_over_floor']:.2f}", *by, f"{e['ess']:.3f}",
                 dlogz]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", action="store_true", help="write table.md from --out")
    parser.add_argument("--variant", choices=VARIANTS, default="default")
    parser.add_argument("--target", choices=["gmm9", "mw54", "funnel", "mw52"], default="funnel")
    parser.add_argument("--seconds", type=float, default=150.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench_results/flow_funnel_study")
    args = parser.parse_args()
    out = Path(args.out)
    if args.report:
        table = report(out)
        (out / "table.md").write_text("\n".join(table) + "\n")
        print("\n".join(table))
        return
    record = run(args)
    path = out / args.target / f"{args.variant}_{args.seconds:g}s_seed{args.seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    print(json.dumps({k: v for k, v in record["eval"].items() if k != "sd_ratio"}))


if __name__ == "__main__":
    main()
