"""First measurement of issue 27's design: a one-step student that is invertible by
construction (a zuko normalizing flow, exact log-density in the same pass) trained on the
law of a diffusion sampler's SDE, not on its probability-flow ODE.

    python benchmarks/flow_student_study.py --target gmm9 --teacher-seconds 75 \
        --student-seconds 75 --mix 1.0 --out benchmarks/results/flow_student_study
    python benchmarks/flow_student_study.py --report --out benchmarks/results/flow_student_study \
        --peers benchmarks/results/flow_peer

Phase 1 fits a ``DiffusionSampler`` (``--n-steps`` SDE steps, batch 256) for
``--teacher-seconds`` of training. Phase 2 trains the flow for ``--student-seconds`` of
process time: each iteration draws a fresh batch from the teacher's SDE with its exact path
log-weights, and minimises the **weighted forward KL** ``-sum_i w_i log q(x_i)`` with
self-normalised weights ``w_i`` (so its target is rho, not the teacher's law) plus ``--mix``
times the **reverse KL** ``E_q[log q - log rho]`` on the flow's own draws (what gave the
reverse-KL flow the funnel's neck). No stored dataset. The flow works on the teacher's
draws standardised by their mean and sd (a fixed affine map, in the log-density).

Evaluated as ``flow_peer.py`` and ``one_step_study.py``: W1 of 6000 one-step draws over the
expected floor, ESS, ``|delta log Z|``, ELBO and sd ratios of the flow's exact weights; the
teacher's own 32-step SDE figures beside them. Times are process CPU seconds on one thread.
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
from flow_peer import evaluate
from one_step_study import N_EVAL, expected_floor

from skcds import DiffusionSampler
from skcds.bench import TARGETS
from skcds.metrics import estimate_log_normalizer, wasserstein

BATCH, LEARNING_RATE, HIDDEN, TRANSFORMS = 512, 1e-3, (128, 128), 4


class Standardised(torch.nn.Module):
    """``q(x) = q_z((x - loc) / scale) / prod(scale)`` for a zuko flow ``q_z``; ``()``
    returns the distribution, as zuko's flows do."""

    def __init__(self, flow, loc: torch.Tensor, scale: torch.Tensor) -> None:
        super().__init__()
        self.flow = flow
        self.register_buffer("loc", loc)
        self.register_buffer("scale", scale)

    def __call__(self):
        return self

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.loc) / self.scale
        return self.flow().log_prob(z) - self.scale.log().sum()

    def rsample_and_log_prob(self, shape) -> tuple[torch.Tensor, torch.Tensor]:
        z, log_q = self.flow().rsample_and_log_prob(shape)
        return self.loc + self.scale * z, log_q - self.scale.log().sum()


def fit_teacher(energy, n_steps: int, seconds: float, seed: int):
    """A DiffusionSampler trained for about ``seconds`` of process time: ``max_iter`` from
    a pilot's process time per iteration, its first 10 iterations left out (``max_time``
    is wall-clock, which runs side by side would stretch)."""

    def make(max_iter):
        return DiffusionSampler(
            n_steps=n_steps,
            batch_size=256,
            max_iter=max_iter,
            early_stopping=False,
            random_state=seed,
        )

    clock = []
    pilot = make(30)
    pilot.set_params(callbacks=[lambda est, record: clock.append(time.process_time())])
    pilot.fit(energy)
    per_iteration = (clock[-1] - clock[9]) / 20  # after 10 iterations of warm-up
    start = time.process_time()
    teacher = make(max(20, int(seconds / per_iteration))).fit(energy)
    return teacher, time.process_time() - start


def teacher_draws(teacher, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, log_w = teacher.sample(n, random_state=seed, return_log_weights=True)
    return torch.as_tensor(x), torch.as_tensor(log_w, dtype=torch.float32)


def train_student(student, teacher, energy, seconds: float, mix: float) -> dict:
    optimizer = torch.optim.Adam(student.flow.parameters(), lr=LEARNING_RATE)
    start, iterations, ess = time.process_time(), 0, []
    while time.process_time() - start < seconds:
        x, log_w = teacher_draws(teacher, BATCH, seed=1000 + iterations)
        keep = torch.isfinite(log_w)
        w = torch.softmax(log_w[keep], 0)
        ess.append(float(1.0 / (w.square().sum() * keep.sum())))
        loss = -(w * student.log_prob(x[keep])).sum()
        if mix > 0:
            y, log_q = student.rsample_and_log_prob((BATCH,))
            log_rho = energy.log_prob(y)
            ok = torch.isfinite(log_rho) & torch.isfinite(log_q)
            loss = loss + mix * (log_q - log_rho)[ok].mean()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.flow.parameters(), 10.0)
        optimizer.step()
        iterations += 1
    return {
        "iterations": iterations,
        "seconds": time.process_time() - start,
        "teacher_batch_ess_mean": float(np.mean(ess)),
    }


def teacher_figures(teacher, energy, exact, floor, log_z) -> dict:
    x, log_w = teacher.sample(N_EVAL, random_state=1, return_log_weights=True)
    estimate = estimate_log_normalizer(log_w.astype(np.float64))
    w1 = wasserstein(x, exact, p=1)
    return {
        "w1_over_floor": w1 / floor,
        "ess": estimate.ess,
        "abs_dlogz": abs(estimate.log_z - log_z) if log_z is not None else None,
        "sd_ratio": (x.std(0) / exact.std(0)).tolist(),
    }


def _cells(values: dict) -> list[str]:
    dlogz = values.get("abs_dlogz")
    return [
        f"{values['w1_over_floor']:.2f}",
        f"{values['ess']:.3f}",
        "-" if dlogz is None else f"{dlogz:.3f}",
        f"{min(values['sd_ratio']):.2f}-{max(values['sd_ratio']):.2f}",
    ]


def report(students: Path, peers: Path) -> list[str]:
    """One line per run: the student, its teacher (32-step SDE) and the reverse-KL flows,
    W1 over the expected floor, ESS, |delta log Z| and the range of sd ratios."""
    header = "| target | sampler | seconds | W1 / floor | ESS | abs dlog Z | sd ratios |"
    lines = [header, "|---|---|---|---|---|---|---|"]
    for path in sorted(students.glob("*/*.json")):
        r = json.loads(path.read_text())
        seconds = r["teacher_process_seconds"] + r["student"]["seconds"]
        kind = "coupling" if r.get("passes") else "autoregressive"
        name = f"flow student ({kind}), reverse-KL mix {r['mix']:g}, seed {r['seed']}"
        lines.append("| " + " | ".join([r["target"], name, f"{seconds:.0f}"] + _cells(r["eval"])))
        teacher = f"its teacher, DIS {r['n_steps']}-step SDE"
        cells = [r["target"], teacher, f"{r['teacher_process_seconds']:.0f}"]
        lines.append("| " + " | ".join(cells + _cells(r["teacher_eval"])))
    for path in sorted(peers.glob("*/*.json")):
        r = json.loads(path.read_text())
        cells = [r["target"], f"zuko {r['flow']}, reverse KL", f"{r['train_process_seconds']:.0f}"]
        lines.append("| " + " | ".join(cells + _cells(r["eval"])))
    return [line if line.endswith("|") else line + " |" for line in lines]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", action="store_true", help="write table.md from --out")
    parser.add_argument("--peers", default="benchmarks/results/flow_peer")
    parser.add_argument("--target", choices=["gmm9", "mw54", "funnel", "mw52"])
    parser.add_argument("--teacher-seconds", type=float, default=75.0)
    parser.add_argument("--student-seconds", type=float, default=75.0)
    parser.add_argument("--n-steps", type=int, default=32)
    parser.add_argument("--mix", type=float, default=1.0, help="weight of the reverse KL")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--passes", type=int, default=None, help="2: coupling NSF (one pass to sample)"
    )
    parser.add_argument("--out", default="bench_results/flow_student_study")
    args = parser.parse_args()
    if args.report:
        table = report(Path(args.out), Path(args.peers))
        (Path(args.out) / "table.md").write_text("\n".join(table) + "\n")
        print("\n".join(table))
        return
    if args.target is None:
        parser.error("--target is required (or --report)")
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)  # zuko draws the flow's base samples there
    energy = TARGETS[args.target].build(None)
    exact = energy.sample(N_EVAL, generator=torch.Generator().manual_seed(2)).numpy()
    floor, _ = expected_floor(energy, N_EVAL)
    log_z = getattr(energy, "log_normalizer", None)
    log_z = float(log_z) if log_z is not None else None

    teacher, teacher_seconds = fit_teacher(energy, args.n_steps, args.teacher_seconds, args.seed)
    x0, _ = teacher_draws(teacher, 4096, seed=999)
    flow = zuko.flows.NSF(
        features=energy.dim, transforms=TRANSFORMS, hidden_features=HIDDEN, passes=args.passes
    )
    student = Standardised(flow, x0.mean(0), x0.std(0))
    training = train_student(student, teacher, energy, args.student_seconds, args.mix)
    record = {
        "target": args.target,
        "seed": args.seed,
        "mix": args.mix,
        "n_steps": args.n_steps,
        "passes": args.passes,
        "teacher_iterations": teacher.n_iter_,
        "teacher_process_seconds": teacher_seconds,
        "student": training,
        "expected_floor": floor,
        "teacher_eval": teacher_figures(teacher, energy, exact, floor, log_z),
        "eval": evaluate(student, energy, exact, floor, log_z),
    }
    out = Path(args.out) / args.target
    out.mkdir(parents=True, exist_ok=True)
    total = math.floor(args.teacher_seconds + args.student_seconds)
    coupling = "" if args.passes is None else f"_passes{args.passes}"
    name = f"mix{args.mix:g}{coupling}_{total}s_seed{args.seed}"
    (out / f"{name}.json").write_text(json.dumps(record, indent=1))
    print(json.dumps({"target": args.target, "mix": args.mix} | record["eval"]))
    print("teacher", json.dumps(record["teacher_eval"]), json.dumps(training))


if __name__ == "__main__":
    main()
