"""Issue 27 inside the package: the flow student of ``ConsistentDistiller(student='flow')``
and ``SelfConsistentSampler(student='flow')`` at equal process time.

    OMP_NUM_THREADS=1 python benchmarks/flow_distiller_study.py --target gmm9 --seconds 150 \
        --seed 0 --out benchmarks/results/flow_distiller_study
    OMP_NUM_THREADS=1 python benchmarks/flow_distiller_study.py --estimator scds --target gmm9 \
        --seconds 150 --n-steps 32 --batch-size 256 --out benchmarks/results/flow_distiller_study
    python benchmarks/flow_distiller_study.py --report --out benchmarks/results/flow_distiller_study

``--estimator scds`` trains one ``SelfConsistentSampler(student='flow')`` for the whole
budget (the diffusion sampler and the flow together, on the same SDE paths) instead of a
teacher then a student.

The budget ``--seconds`` (process CPU time, one thread) is split between the teacher (a
``DiffusionSampler``, 32-step SDE, batch 256) and the flow student by ``--teacher-share``;
each phase's ``max_iter`` comes from a pilot's process time per iteration (its first 10
iterations left out), so the learning-rate decay and the EMA of the last iterations run as
a user's fit would (``max_time`` is wall-clock, which runs side by side stretch).

Evaluated on 6000 draws, as ``one_step_study.py`` and ``flow_peer.py``: W1 over the expected
floor at 1, 2, 4 and 8 steps (``n_steps=k``: the flow's draw and ``k - 1`` independent
Metropolis-Hastings steps), and the one-step exact weights' ESS, ``|delta log Z|``, ELBO and
sd ratios; on GMM9 each mode's share of the draws against its weight; on many-well targets
the number of the ``2^wells`` sign patterns visited. The teacher's own 32-step SDE figures
are recorded beside.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from one_step_study import N_EVAL, expected_floor

from skcds import ConsistentDistiller, DiffusionSampler, SelfConsistentSampler
from skcds.bench import TARGETS
from skcds.metrics import estimate_log_normalizer, wasserstein

STEPS = (1, 2, 4, 8)


def per_iteration_seconds(make, fit) -> float:
    """Process seconds per iteration of a 30-iteration pilot, after 10 of warm-up."""
    clock = []
    pilot = make(30)
    pilot.set_params(callbacks=[lambda est, record: clock.append(time.process_time())])
    fit(pilot)
    return (clock[-1] - clock[9]) / 20


def fit_for(make, fit, seconds: float):
    """``make(max_iter)`` fitted for about ``seconds`` of process time."""
    max_iter = max(20, int(seconds / per_iteration_seconds(make, fit)))
    start = time.process_time()
    model = fit(make(max_iter))
    return model, time.process_time() - start


def mode_figures(energy, x: np.ndarray) -> dict:
    """GMM: each mode's share of the draws (nearest mean) over its weight; many-well: the
    sign patterns (which side of each double well's barrier) visited."""
    if hasattr(energy, "_means"):
        means = energy._means.double()
        nearest = torch.cdist(torch.as_tensor(x, dtype=torch.float64), means).argmin(1)
        share = np.bincount(nearest.numpy(), minlength=len(means)) / len(x)
        weight = energy._log_weights.double().exp().numpy()
        return {"mode_share_over_weight": (share / weight).tolist()}
    if hasattr(energy, "_is_well"):
        wells = energy._is_well.numpy()
        barrier = 0.0  # the double well's barrier sits at the origin of its coordinate
        signs = (x[:, wells] > barrier).astype(int)
        patterns = {tuple(row) for row in signs}
        return {"patterns_visited": len(patterns), "patterns": 2 ** int(wells.sum())}
    return {}


def evaluate(sampler, energy, exact, floor, log_z, steps=STEPS, options=None) -> dict:
    options = options or {}
    record = {}
    x, log_w = sampler.sample(N_EVAL, random_state=1, return_log_weights=True, **options)
    estimate = estimate_log_normalizer(log_w.astype(np.float64))
    record.update(
        w1_over_floor=wasserstein(x, exact, p=1) / floor,
        ess=estimate.ess,
        elbo=estimate.elbo,
        khat=estimate.khat,
        abs_dlogz=abs(estimate.log_z - log_z) if log_z is not None else None,
        sd_ratio=(x.std(0) / exact.std(0)).tolist(),
        **mode_figures(energy, x),
    )
    record["w1_by_steps"] = {}
    for k in steps[1:]:
        xk = sampler.sample(N_EVAL, n_steps=k, random_state=1, **options)
        record["w1_by_steps"][k] = wasserstein(xk, exact, p=1) / floor
    return record


def run_scds(args, energy, exact, floor, log_z) -> dict:
    def make(max_iter):
        return SelfConsistentSampler(
            student="flow", n_steps=args.n_steps, batch_size=args.batch_size,
            kl_weight=args.reverse_kl, max_iter=max_iter, early_stopping=False,
            random_state=args.seed,
        )  # fmt: skip

    sampler, seconds = fit_for(make, lambda m: m.fit(energy), args.seconds)
    return {
        "estimator": "scds",
        "target": args.target,
        "seed": args.seed,
        "seconds": args.seconds,
        "n_steps": args.n_steps,
        "batch_size": args.batch_size,
        "reverse_kl": args.reverse_kl,
        "iterations": sampler.n_iter_,
        "process_seconds": seconds,
        "teacher_ess_mean": float(np.mean([r["teacher_ess"] for r in sampler.history_])),
        "expected_floor": floor,
        "eval": evaluate(sampler, energy, exact, floor, log_z),
        "sde_eval": evaluate(
            sampler,
            energy,
            exact,
            floor,
            log_z,
            steps=(args.n_steps,),
            options={"method": "sde", "n_steps": args.n_steps},
        ),  # fmt: skip
    }


def run(args) -> dict:
    torch.set_num_threads(1)
    energy = TARGETS[args.target].build(None)
    exact = energy.sample(N_EVAL, generator=torch.Generator().manual_seed(2)).numpy()
    floor, _ = expected_floor(energy, N_EVAL)
    log_z = getattr(energy, "log_normalizer", None)
    log_z = float(log_z) if log_z is not None else None
    if args.estimator == "scds":
        return run_scds(args, energy, exact, floor, log_z)
    teacher_seconds = args.seconds * args.teacher_share

    def make_teacher(max_iter):
        return DiffusionSampler(
            n_steps=32, batch_size=256, max_iter=max_iter, early_stopping=False,
            random_state=args.seed,
        )  # fmt: skip

    teacher, t_teacher = fit_for(make_teacher, lambda m: m.fit(energy), teacher_seconds)

    def make_student(max_iter):
        return ConsistentDistiller(
            teacher, student="flow", batch_size=args.batch_size, reverse_kl=args.reverse_kl,
            max_iter=max_iter, early_stopping=False, random_state=args.seed,
        )  # fmt: skip

    student, t_student = fit_for(make_student, lambda m: m.fit(), args.seconds - teacher_seconds)
    return {
        "target": args.target,
        "seed": args.seed,
        "seconds": args.seconds,
        "batch_size": args.batch_size,
        "reverse_kl": args.reverse_kl,
        "teacher_share": args.teacher_share,
        "teacher_iterations": teacher.n_iter_,
        "teacher_process_seconds": t_teacher,
        "student_iterations": student.n_iter_,
        "student_process_seconds": t_student,
        "teacher_ess_mean": float(np.mean([r["teacher_ess"] for r in student.history_])),
        "expected_floor": floor,
        "eval": evaluate(student, energy, exact, floor, log_z),
        "teacher_eval": evaluate(teacher, energy, exact, floor, log_z, steps=(32,)),
    }


def _name(args) -> str:
    parts = [f"{args.seconds:g}s", f"batch{args.batch_size}", f"seed{args.seed}"]
    if args.estimator == "scds":
        parts.insert(0, f"scds_n{args.n_steps}")
    if args.reverse_kl:
        parts.insert(1, f"rkl{args.reverse_kl:g}")
    if args.teacher_share != 0.5:
        parts.insert(1, f"share{args.teacher_share:g}")
    return "_".join(parts)


def report(out: Path) -> list[str]:
    header = (
        "| target | run | seconds (teacher + student) | W1/floor 1 step | 2 | 4 | 8 | ESS "
        "| abs dlog Z | modes | teacher's (scds: its own) SDE W1/floor (ESS) |"
    )
    lines = [header, "|" + "---|" * 11]
    for path in sorted(out.glob("*/*.json")):
        r = json.loads(path.read_text())
        e, t = r["eval"], r.get("teacher_eval", r.get("sde_eval"))
        if "mode_share_over_weight" in e:
            ratio = np.array(e["mode_share_over_weight"])
            spread = f"share/weight {ratio.min():.2f}-{ratio.max():.2f}"
            modes = f"{int((ratio > 0).sum())}/{len(ratio)}, {spread}"
        elif "patterns_visited" in e:
            modes = f"{e['patterns_visited']}/{e['patterns']}"
        else:
            modes = "-"
        dlogz = "-" if e["abs_dlogz"] is None else f"{e['abs_dlogz']:.3f}"
        by = [f"{e['w1_by_steps'][str(k)]:.2f}" for k in STEPS[1:]]
        if "process_seconds" in r:  # one SelfConsistentSampler
            seconds = f"{r['process_seconds']:.0f} (one fit)"
        else:
            seconds = f"{r['teacher_process_seconds']:.0f} + {r['student_process_seconds']:.0f}"
        cells = [r["target"], path.stem, seconds, f"{e['w1_over_floor']:.2f}", *by,
                 f"{e['ess']:.3f}", dlogz, modes,
                 f"{t['w1_over_floor']:.2f} ({t['ess']:.3f})"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", action="store_true", help="write table.md from --out")
    parser.add_argument("--target", choices=["gmm9", "mw54", "funnel", "mw52"])
    parser.add_argument("--estimator", choices=["cdds", "scds"], default="cdds")
    parser.add_argument("--n-steps", type=int, default=32, help="SDE steps (scds)")
    parser.add_argument("--seconds", type=float, default=150.0)
    parser.add_argument("--teacher-share", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--reverse-kl", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench_results/flow_distiller_study")
    args = parser.parse_args()
    out = Path(args.out)
    if args.report:
        table = report(out)
        (out / "table.md").write_text("\n".join(table) + "\n")
        print("\n".join(table))
        return
    if args.target is None:
        parser.error("--target is required (or --report)")
    record = run(args)
    path = out / args.target / f"{_name(args)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    print(json.dumps(record["eval"]))


if __name__ == "__main__":
    main()
