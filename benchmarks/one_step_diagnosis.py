"""Where a one-step miss comes from (issue 15): the jump, or the flow it is trained on.

    python benchmarks/one_step_diagnosis.py funnel MODEL.joblib
    python benchmarks/one_step_diagnosis.py mw52 MODEL.joblib

``MODEL.joblib`` is a fitted :class:`~skcds.SelfConsistentSampler` saved by
``one_step_study.py run --save``. On the funnel it prints the quantiles of ``x_0`` (the
funnel's scale coordinate, ``N(0, 9)``) of the 1-, 8- and 32-step maps and of the network's
own 32-step SDE: if the SDE misses the same range, the diffusion sampler does, and no jump
loss can fix it. On MW52 it follows the 2- and 4-step samplers jump by jump against the
network's own 32-step probability-flow ODE from the same prior draws (the flow every jump
is distilled onto), in the five double-well coordinates, and ends with the sd ratio of the
32-step ODE and SDE against exact samples.

    python benchmarks/one_step_diagnosis.py twostep MODEL.joblib --target gmm9

``twostep`` (any target) asks which part loses quality: W1 over the expected floor (mean of
3 sets of 6000) of the network's 32-step SDE and of its 32-step probability-flow ODE (the
flow every jump is distilled onto), of the 1- and 2-step samplers, of the second jump taken
from the flow's own midpoint, and of the flow run on from the first jump's midpoint, with the
sampling (EMA) weights that ``sample`` uses.

    python benchmarks/one_step_diagnosis.py polish MODEL.joblib --target gmm9 \
        --iterations 400 --learning-rate 1e-4

``polish`` asks whether the one-step map can get closer on its reverse KL alone: it fine-tunes
a copy of the sampling network on ``one_step_kl`` plus 100 times the monotonicity penalty
(256 prior draws per step, Adam, gradients clipped at 1) and prints the one-step W1 over the
floor (mean of 3 sets) four times on the way.
"""

from __future__ import annotations

import argparse
import copy
import sys
import warnings
from pathlib import Path

import joblib
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))  # the study's pickled callback
from one_step_study import N_EVAL, _Monitor, expected_floor  # noqa: E402, F401

from skcds._core.consistency import (  # noqa: E402
    fine_flow_states,
    first_jump,
    monotonicity_penalty,
    one_step_kl,
)
from skcds.bench import TARGETS  # noqa: E402
from skcds.metrics import wasserstein  # noqa: E402

QUANTILES = (0.01, 0.1, 0.5, 0.9, 0.99)


def funnel(sampler, exact) -> None:
    print("x0 quantiles", QUANTILES)
    print(f"  exact       {np.quantile(exact[:, 0], QUANTILES).round(2)}")
    for k, method in ((1, "ode"), (8, "ode"), (32, "ode"), (32, "sde")):
        x = sampler.sample(6000, n_steps=k, random_state=1, method=method)
        ratio = x[:, 0].std() / exact[:, 0].std()
        print(
            f"  {k:2d}-step {method} {np.quantile(x[:, 0], QUANTILES).round(2)} "
            f"sd ratio {ratio:.2f}"
        )


def _euler(sampler, x0, k):
    """States of the k-jump sampler from x0 (its sample(n_steps=k) path)."""
    args = (sampler.control_, sampler.reference_, sampler._dynamics_energy, sampler._grid(k))
    return list(fine_flow_states(*args, x0)[0])


def mw52(sampler, exact, wells: int = 5) -> None:
    g = torch.Generator().manual_seed(0)
    x0 = sampler.reference_.prior_sample(
        4000, exact.shape[1], generator=g, dtype=torch.float32, device=torch.device("cpu")
    )
    fine = _euler(sampler, x0, 32)
    for k in (2, 4):
        for j, x in enumerate(_euler(sampler, x0, k)[1:], 1):
            ref = fine[j * 32 // k]
            gap = (x - ref)[:, :wells].square().mean().sqrt()
            print(
                f"{k}-step, after jump {j}: wells sd {x[:, :wells].std(0).numpy().round(2)}, "
                f"32-step flow there {ref[:, :wells].std(0).numpy().round(2)}, rms gap {gap:.2f}"
            )
    for method in ("ode", "sde"):
        x = sampler.sample(6000, n_steps=32, random_state=1, method=method)
        ratio = x.std(0) / exact.std(0)
        print(
            f"32-step {method}: sd ratio wells {ratio[:wells].round(2)}, "
            f"Gaussian coordinates {ratio[wells:].min():.2f}-{ratio[wells:].max():.2f}"
        )


def twostep(sampler, exact, floor: float) -> None:
    n = sampler.n_steps
    args = (sampler._sampling_control, sampler.reference_, sampler._dynamics_energy)

    def flow(times, x):  # Euler jumps of the sampling network on ``times`` (no gradient)
        return fine_flow_states(*args, times, x)[0]

    one, two, fine = sampler._grid(1), sampler._grid(2), sampler._grid(n)
    rows: dict[str, list[float]] = {}
    for seed in (1, 2, 3):
        g = torch.Generator().manual_seed(seed)
        x0 = sampler._prior(N_EVAL, g)
        states = flow(fine, x0)
        _, middle, end = flow(two, x0)
        sde = sampler.sample(N_EVAL, n_steps=n, method="sde", random_state=seed)
        ends = {
            f"{n}-step SDE (the diffusion sampler)": torch.as_tensor(sde),
            f"{n}-step flow (its probability-flow ODE)": states[-1],
            "1-step sampler": flow(one, x0)[-1],
            "2-step sampler": end,
            "jump 2 from the flow's midpoint": flow(two[1:], states[n // 2])[-1],
            "flow from jump 1's midpoint": flow(fine[n // 2 :], middle)[-1],
        }
        for name, x in ends.items():
            rows.setdefault(name, []).append(wasserstein(x.numpy(), exact, p=1) / floor)
        gap = (middle - states[n // 2]).square().sum(-1).mean().sqrt()
        rows.setdefault("rms gap of jump 1 to the flow at T/2", []).append(float(gap))
    for name, values in rows.items():
        kind = "" if name.startswith("rms") else "W1/floor "
        print(f"{name:42s} {kind}{np.mean(values):.2f}")


def _one_step_quality(sampler, exact, floor: float) -> float:
    draws = (sampler.sample(N_EVAL, random_state=seed) for seed in (1, 2, 3))
    return float(np.mean([wasserstein(x, exact, p=1) / floor for x in draws]))


def polish(sampler, exact, floor: float, iterations: int, learning_rate: float) -> None:
    net = copy.deepcopy(sampler._sampling_control).requires_grad_(True)
    sampler._ema.module = net  # sample() now draws from the copy being tuned
    process, energy = sampler.reference_, sampler._dynamics_energy
    print(f"start: one-step W1/floor {_one_step_quality(sampler, exact, floor):.2f}")
    optimizer = torch.optim.Adam(net.parameters(), lr=learning_rate)
    g = torch.Generator().manual_seed(5)
    one = torch.tensor(process.terminal_time)
    for i in range(1, iterations + 1):
        x0 = sampler._prior(256, g)
        x1, jac = first_jump(net, process, energy, x0, one, energy._grad_log_prob(x0))
        kl = one_step_kl(process, energy, x0, x1, torch.linalg.slogdet(jac)[1])
        loss = kl + 100 * monotonicity_penalty(jac)[0]
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        if i % max(1, iterations // 4) == 0:
            quality = _one_step_quality(sampler, exact, floor)
            print(f"{i}: KL - log Z {float(kl):.3f}, one-step W1/floor {quality:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["funnel", "mw52", "twostep", "polish"])
    parser.add_argument("model")
    parser.add_argument("--target", default=None, help="twostep, polish: the model's target")
    parser.add_argument("--iterations", type=int, default=400, help="polish")
    parser.add_argument("--learning-rate", type=float, default=1e-4, help="polish")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    target = args.target or args.command
    energy = TARGETS[target].build(None)
    sampler = joblib.load(args.model)
    if args.command in ("twostep", "polish"):
        exact = energy.sample(N_EVAL, generator=torch.Generator().manual_seed(2)).numpy()
        floor = expected_floor(energy, N_EVAL)[0]
        if args.command == "twostep":
            twostep(sampler, exact, floor)
        else:
            polish(sampler, exact, floor, args.iterations, args.learning_rate)
        return
    exact = energy.sample(6000, generator=torch.Generator().manual_seed(2)).numpy()
    {"funnel": funnel, "mw52": mw52}[args.command](sampler, exact)


if __name__ == "__main__":
    main()
