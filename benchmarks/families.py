"""Issue 28: one sampler for a family of densities against one fit per member, at equal
process time per fit (one thread).

    OMP_NUM_THREADS=1 python benchmarks/families.py amortized --seconds 450 \
        --out benchmarks/results/families
    OMP_NUM_THREADS=1 python benchmarks/families.py single --beta 0.33 --seconds 150 \
        --out benchmarks/results/families
    OMP_NUM_THREADS=1 python benchmarks/families.py regression --seconds 150 \
        --out benchmarks/results/families
    python benchmarks/families.py report --out benchmarks/results/families

``amortized`` fits one ``SelfConsistentSampler`` (defaults, ``early_stopping=False``) on the
tempered MW54, ``TemperedManyWell.mw54(beta=(0.3, 1))``, for ``--seconds`` of process time
(``max_iter`` from a pilot, as in ``flow_distiller_study.py``), then evaluates it at the ten
inverse temperatures ``BETAS`` (none of them special to training: the fit draws beta
uniformly): W1 over the expected floor of one-step and 8-step draws (6000, against 6000
exact draws of that member) and ``|delta log Z(beta)|`` of the one-step weights (its
``log_normalizer_curve``, 6000 draws per beta). It also times sampling at a new context.
``--eval-betas 1 --tag _curriculum`` evaluates at beta = 1 only: the family as a
curriculum for MW54 itself (``single --beta 1`` beside it).
``single`` fits the same sampler on one member, ``family.at(beta)``, and evaluates it alike.
``regression`` fits the amortized sampler on ``BayesianLinearRegression()`` (5 weights, 20
points, log prior scale in ``[log 0.1, log 10]``) and compares, at five held-out scales, the
posterior mean and sd of the one-step draws (raw and importance-weighted) with the exact
Gaussian posterior, in units of the exact posterior sd, and ``log Z(c)`` with the exact
evidence.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from flow_distiller_study import fit_for
from one_step_study import N_EVAL, expected_floor

from skcds import SelfConsistentSampler
from skcds.energies import BayesianLinearRegression, TemperedManyWell
from skcds.metrics import wasserstein

BETAS = tuple(np.round(np.linspace(0.33, 0.97, 10), 4))
HELD_OUT_SCALES = (0.15, 0.4, 1.3, 3.0, 7.0)  # prior sds s; contexts c = log s
STEPS = (1, 8)


def make(max_iter: int, seed: int) -> SelfConsistentSampler:
    return SelfConsistentSampler(max_iter=max_iter, early_stopping=False, random_state=seed)


def evaluate_member(sampler, member, context=None) -> dict:
    """W1 over the expected floor at 1 and 8 steps, and the one-step weights' figures."""
    exact = member.sample(N_EVAL, generator=torch.Generator().manual_seed(2)).numpy()
    floor, _ = expected_floor(member, N_EVAL)
    options = {} if context is None else {"context": context}
    record = {"expected_floor": floor}
    for k in STEPS:
        x = sampler.sample(N_EVAL, n_steps=k, random_state=1, **options)
        record[f"w1_over_floor_{k}"] = wasserstein(x, exact, p=1) / floor
    estimate = sampler.estimate_log_normalizer(N_EVAL, random_state=1, **options)
    record.update(
        ess=estimate.ess,
        khat=estimate.khat,
        abs_dlogz=abs(estimate.log_z - member.log_normalizer),
    )
    return record


def sampling_cost(sampler, context) -> dict:
    """Process seconds for 10^5 one-step draws at a new context (with and without weights)."""
    timings = {}
    for weighted in (False, True):
        start = time.process_time()
        sampler.sample(100_000, context=context, random_state=0, return_log_weights=weighted)
        timings["with_weights" if weighted else "draws"] = time.process_time() - start
    return {"seconds_per_1e5": timings}


def run_amortized(args) -> dict:
    family = TemperedManyWell.mw54(beta=(0.3, 1.0))
    sampler, seconds = fit_for(lambda m: make(m, args.seed), lambda m: m.fit(family), args.seconds)
    betas = BETAS if args.eval_betas is None else tuple(args.eval_betas)
    by_beta = {str(b): evaluate_member(sampler, family.at(b), context=b) for b in betas}
    return {
        "kind": "amortized",
        "seed": args.seed,
        "seconds": args.seconds,
        "process_seconds": seconds,
        "iterations": sampler.n_iter_,
        "by_beta": by_beta,
        "cost": sampling_cost(sampler, context=0.61),
    }


def run_single(args) -> dict:
    member = TemperedManyWell.mw54(beta=(0.3, 1.0)).at(args.beta)  # 1.0: MW54 itself
    sampler, seconds = fit_for(lambda m: make(m, args.seed), lambda m: m.fit(member), args.seconds)
    return {
        "kind": "single",
        "beta": args.beta,
        "seed": args.seed,
        "seconds": args.seconds,
        "process_seconds": seconds,
        "iterations": sampler.n_iter_,
        "eval": evaluate_member(sampler, member),
    }


def run_regression(args) -> dict:
    family = BayesianLinearRegression()
    sampler, seconds = fit_for(lambda m: make(m, args.seed), lambda m: m.fit(family), args.seconds)
    by_scale = {}
    for s in HELD_OUT_SCALES:
        c = math.log(s)
        mean, cov = family.posterior_at(c)
        sd = np.sqrt(np.diag(cov))
        x, log_w = sampler.sample(N_EVAL, context=c, random_state=1, return_log_weights=True)
        w = np.exp(log_w - log_w.max())
        w /= w.sum()
        weighted_mean = w @ x
        weighted_sd = np.sqrt(w @ (x - weighted_mean) ** 2)
        estimate = sampler.estimate_log_normalizer(N_EVAL, context=c, random_state=1)
        by_scale[str(s)] = {
            "max_mean_error_in_sd": float(np.max(np.abs(x.mean(0) - mean) / sd)),
            "max_sd_error_in_sd": float(np.max(np.abs(x.std(0) - sd) / sd)),
            "weighted_max_mean_error_in_sd": float(np.max(np.abs(weighted_mean - mean) / sd)),
            "weighted_max_sd_error_in_sd": float(np.max(np.abs(weighted_sd - sd) / sd)),
            "abs_dlogz": abs(estimate.log_z - family.log_normalizer_at(c)),
            "ess": estimate.ess,
            "khat": estimate.khat,
        }
    return {
        "kind": "regression",
        "seed": args.seed,
        "seconds": args.seconds,
        "process_seconds": seconds,
        "iterations": sampler.n_iter_,
        "by_scale": by_scale,
    }


def report(out: Path) -> list[str]:
    runs = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    amortized = [r for r in runs if r["kind"] == "amortized" and len(r["by_beta"]) == len(BETAS)]
    single = {r["beta"]: r for r in runs if r["kind"] == "single" and r["beta"] in BETAS}
    lines = [
        "Tempered MW54 (one thread, process seconds; W1 over the expected floor, 6000 draws)",
        "",
        "| beta | amortized 1 step | 8 steps | abs dlog Z | ESS | separate fit 1 step "
        "| 8 steps | abs dlog Z | ESS | amortized / separate (1 step) |",
        "|" + "---|" * 10,
    ]
    for r in amortized:
        for beta in BETAS:
            a, s = r["by_beta"][str(beta)], single.get(beta, {}).get("eval")
            cells = [f"{beta:g}", *_member_cells(a)]
            if s is None:
                cells += ["-"] * 5
            else:
                ratio = a["w1_over_floor_1"] / s["w1_over_floor_1"]
                cells += [*_member_cells(s), f"{ratio:.2f}"]
            lines.append("| " + " | ".join(cells) + " |")
        seconds = sum(s["process_seconds"] for s in single.values())
        lines += [
            "",
            f"Amortized fit: {r['process_seconds']:.0f} s ({r['iterations']} iterations); "
            f"{len(single)} separate fits: {seconds:.0f} s in all. Sampling at a new context: "
            f"{_cost(r['cost'])}.",
        ]
    lines += _curriculum(runs)
    for r in (r for r in runs if r["kind"] == "regression"):
        lines += [
            "",
            f"Bayesian linear regression, amortized over log prior scale "
            f"({r['process_seconds']:.0f} s, {r['iterations']} iterations); errors in exact "
            "posterior sds, max over the 5 weights",
            "",
            "| prior sd | mean error | sd error | weighted mean error | weighted sd error "
            "| abs dlog Z | ESS |",
            "|" + "---|" * 7,
        ]
        for s, e in r["by_scale"].items():
            cells = [s] + [
                f"{e[k]:.3f}"
                for k in (
                    "max_mean_error_in_sd",
                    "max_sd_error_in_sd",
                    "weighted_max_mean_error_in_sd",
                    "weighted_max_sd_error_in_sd",
                    "abs_dlogz",
                    "ess",
                )
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _curriculum(runs: list) -> list[str]:
    """MW54 itself (beta = 1) from a fit on the tempered family and from its own fit."""
    family = {r["seed"]: r for r in runs if r["kind"] == "amortized" and "1.0" in r["by_beta"]}
    alone = {r["seed"]: r for r in runs if r["kind"] == "single" and r["beta"] == 1.0}
    if not family:
        return []
    lines = [
        "",
        "MW54 itself (beta = 1): the tempered family as a curriculum against MW54 alone "
        "(same sampler, about 450 s each)",
        "",
        "| seed | fit | process s | 1 step | 8 steps | abs dlog Z | ESS |",
        "|" + "---|" * 7,
    ]
    for seed in sorted(family):
        for name, r, e in (
            ("family beta in [0.3, 1]", family[seed], family[seed]["by_beta"]["1.0"]),
            ("MW54 alone", alone.get(seed), (alone.get(seed) or {}).get("eval")),
        ):
            if e is not None:
                cells = [str(seed), name, f"{r['process_seconds']:.0f}", *_member_cells(e)]
                lines.append("| " + " | ".join(cells) + " |")
    return lines


def _member_cells(e: dict) -> list[str]:
    return [
        f"{e['w1_over_floor_1']:.2f}",
        f"{e['w1_over_floor_8']:.2f}",
        f"{e['abs_dlogz']:.3f}",
        f"{e['ess']:.2f}",
    ]


def _cost(cost: dict) -> str:
    t = cost["seconds_per_1e5"]
    return f"{t['draws']:.1f} s per 10^5 draws ({t['with_weights']:.1f} s with weights)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["amortized", "single", "regression", "report"])
    parser.add_argument("--beta", type=float, help="the member of a 'single' fit")
    parser.add_argument("--seconds", type=float, default=150.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--eval-betas", type=float, nargs="+", help="amortized: evaluate at these betas only"
    )
    parser.add_argument("--tag", default="", help="suffix of the result's file name")
    parser.add_argument("--out", default="bench_results/families")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.part == "report":
        table = report(out)
        (out / "table.md").write_text("\n".join(table) + "\n")
        print("\n".join(table))
        return
    torch.set_num_threads(1)
    run = {"amortized": run_amortized, "single": run_single, "regression": run_regression}
    record = run[args.part](args)
    name = args.part if args.part != "single" else f"single_beta{args.beta:g}"
    path = out / f"{name}_{args.seconds:g}s_seed{args.seed}{args.tag}.json"
    path.write_text(json.dumps(record, indent=1))
    print(json.dumps(record)[:2000])


if __name__ == "__main__":
    main()
