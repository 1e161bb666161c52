"""Speed report: training iterations per second of each estimator and samples per second of
1-step and N-step sampling, eager against every optimised execution the device has."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import torch

from .._estimators._validation import resolve_device
from .._version import __version__
from ._run import _sampling_seconds, device_name
from ._targets import TARGETS

__all__ = ["run_speed"]


def _executions(device: torch.device) -> list[str]:
    """Eager everywhere; CUDA graphs of the training rollout on a GPU."""
    return ["eager", "cuda_graph"] if device.type == "cuda" else ["eager"]


def _seconds_per_iteration(model, warmup: int) -> float:
    """Median wall-clock of the iterations after ``warmup`` (from ``history_``)."""
    elapsed = [row["elapsed"] for row in model.history_]
    steps = [b - a for a, b in zip(elapsed[warmup:-1], elapsed[warmup + 1 :], strict=True)]
    return statistics.median(steps)


def _samples_per_second(model, n_steps: int, n_samples: int) -> float:
    """Best of three timings for one-step sampling (milliseconds, noisy), one otherwise."""
    repeats = 3 if n_steps == 1 else 1
    return n_samples / min(_sampling_seconds(model, n_steps, n_samples) for _ in range(repeats))


def run_speed(
    target: str = "gmm9",
    *,
    n_steps: int = 128,
    batch_size: int = 512,
    n_iter: int = 30,
    warmup: int = 5,
    n_samples: int = 100_000,
    n_samples_one_step: int = 1_000_000,
    device="auto",
    out=None,
    seed: int = 0,
) -> dict:
    """Measure training and sampling speed of DIS, SCDS and CDDS on one target.

    Training: the median seconds per iteration over ``n_iter`` iterations (after
    ``warmup``) at ``n_steps`` and ``batch_size``, for every execution mode of the device
    (``'eager'``; also ``'cuda_graph'`` on CUDA, where the whole training rollout is one
    graph launch). CDDS has one mode: its teacher integration is eager. Sampling: the
    wall-clock time (best of three at one step), as samples per second, for one-step
    sampling (SCDS and CDDS, ``n_samples_one_step`` samples, one network call per chunk of
    65 536) and
    ``n_steps``-step sampling (DIS's SDE and SCDS's ODE, ``n_samples``); samples stay on the
    device (no copy to numpy).

    Parameters
    ----------
    target : str, default='gmm9'
        A benchmark target name (see :func:`skcds.bench.run_benchmark`).
    n_steps, batch_size : int, default=128, 512
        Grid and batch of the training iterations.
    n_iter, warmup : int, default=30, 5
        Timed and untimed iterations.
    n_samples, n_samples_one_step : int, default=100_000, 1_000_000
        Samples per timing of ``n_steps``-step and one-step sampling.
    device : str or torch.device, default='auto'
    out : str or path-like, optional
        Folder for ``speed.json`` and ``speed.md``.
    seed : int, default=0

    Returns
    -------
    dict
        ``device``, ``training`` (``{estimator: {execution: seconds per iteration}}``) and
        ``sampling`` (``{f"{estimator}@{steps}": samples per second}``).
    """
    from .. import ConsistentDistiller, DiffusionSampler, SelfConsistentSampler

    resolved = resolve_device(device)
    energy = TARGETS[target].build(None)
    common = {"n_steps": n_steps, "batch_size": batch_size, "device": resolved}
    iters = {"max_iter": warmup + n_iter, "random_state": seed}
    training, models = {}, {}
    for name, cls in (("dis", DiffusionSampler), ("scds", SelfConsistentSampler)):
        training[name] = {}
        for execution in _executions(resolved):
            model = cls(**common, **iters, execution=execution).fit(energy)
            training[name][execution] = _seconds_per_iteration(model, warmup)
            models[name] = model
    intervals = min(17, n_steps)  # the reference's 17 distillation intervals where N allows
    cdds = ConsistentDistiller(
        models["dis"], n_intervals=intervals, batch_size=batch_size, device=resolved, **iters
    ).fit(energy)
    training["cdds"] = {"eager": _seconds_per_iteration(cdds, warmup)}
    sampling = {
        "cdds@1": _samples_per_second(cdds, 1, n_samples_one_step),
        "scds@1": _samples_per_second(models["scds"], 1, n_samples_one_step),
        f"scds@{n_steps}": _samples_per_second(models["scds"], n_steps, n_samples),
        f"dis@{n_steps}": _samples_per_second(models["dis"], n_steps, n_samples),
    }
    result = {
        "skcds_version": __version__,
        "torch_version": torch.__version__,
        "device": device_name(resolved),
        "target": target,
        "n_steps": n_steps,
        "batch_size": batch_size,
        "n_samples": n_samples,
        "n_samples_one_step": n_samples_one_step,
        "training": training,
        "sampling": sampling,
    }
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "speed.json").write_text(json.dumps(result, indent=2))
        (out / "speed.md").write_text("\n".join(speed_table(result)) + "\n")
    return result


def speed_table(result: dict) -> list[str]:
    """Markdown lines of a :func:`run_speed` result."""
    n = result["n_steps"]
    lines = [
        f"Speed on {result['device']} ({result['target']}, N = {n}, batch "
        f"{result['batch_size']}; skcds {result['skcds_version']}, torch "
        f"{result['torch_version']})",
        "",
        "| estimator | execution | ms per training iteration |",
        "|---|---|---|",
    ]
    for name, modes in result["training"].items():
        for execution, seconds in modes.items():
            lines.append(f"| {name.upper()} | {execution} | {1000 * seconds:.1f} |")
    lines += [
        "",
        "| sampler | steps | samples per second | time for 100 000 |",
        "|---|---|---|---|",
    ]
    for key, rate in result["sampling"].items():
        name, steps = key.split("@")
        lines.append(f"| {name.upper()} | {steps} | {rate:,.0f} | {1e5 / rate:.3g} s |")
    one, many = result["sampling"].get("scds@1"), result["sampling"].get(f"scds@{n}")
    if one and many:
        lines += ["", f"SCDS one-step vs {n}-step sampling: {one / many:.0f}x faster."]
    return lines
