"""Train every method on every target at a budget, evaluate it at its numbers of steps, and
write ``results.json``, ``table.md`` and the plots (the paper's Tables 1–2 side by side)."""

from __future__ import annotations

import json
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from .._estimators._base import EXACT_LOG_DET_MAX_DIM
from .._estimators._validation import resolve_device
from .._version import __version__
from .._warnings import weight_check
from ..exceptions import ConvergenceWarning
from ..metrics import estimate_log_normalizer, paper_sinkhorn, sinkhorn, wasserstein
from ._budgets import BUDGETS, Budget
from ._targets import TARGETS, BenchTarget

__all__ = ["METHODS", "run_benchmark"]

METHODS = ("pis", "dds", "dis", "cdds", "scds")
BASELINE_REFERENCE = {"pis": "brownian", "dds": "ou", "dis": "vp"}
CDDS_STEPS = (1, 2, 4, 8, 16)


def device_name(device: torch.device) -> str:
    """The accelerator's name, or the CPU with its thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or 'cpu'} ({torch.get_num_threads()} threads)"


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _check_names(given, known, what: str) -> list[str]:
    given = list(given)
    unknown = [g for g in given if g not in known]
    if unknown or not given:
        raise ValueError(f"'{what}' must be a non-empty subset of {list(known)}; got {given}.")
    return given


# ---------------------------------------------------------------- training
def _fit(method: str, energy, budget: Budget, n_steps: int, device, seed: int, loss: str, teacher):
    from .. import ConsistentDistiller, DiffusionSampler, SelfConsistentSampler

    common = {"device": device, "random_state": seed}
    if method == "cdds":
        return ConsistentDistiller(  # the paper's CDDS
            teacher,
            student="consistency",
            n_intervals=min(budget.n_intervals, n_steps),
            max_iter=budget.distill_iter,
            batch_size=budget.distill_batch_size,
            **common,
        ).fit(energy)
    common.update(n_steps=n_steps, max_iter=budget.max_iter, batch_size=budget.batch_size)
    if method == "scds":
        return SelfConsistentSampler(student="jump", **common).fit(energy)  # the paper's
    method_loss = "log_variance" if method == "dis" else loss
    return DiffusionSampler(reference=BASELINE_REFERENCE[method], loss=method_loss, **common).fit(
        energy
    )


def _steps(method: str, n_steps: int, n_intervals: int) -> list[int]:
    """The numbers of sampling steps each method is evaluated at."""
    if method in ("pis", "dds"):
        return [n_steps]
    if method == "dis":
        return [n_steps, 1]
    if method == "scds":
        return [2**j for j in range(n_steps.bit_length())]
    return [k for k in CDDS_STEPS if k <= min(n_intervals, n_steps)]


# ---------------------------------------------------------------- evaluation
def _draw(model, method: str, k: int, n: int, dim: int):
    """``(x, log_w or None, weights)``: ``weights`` is 'valid', 'folds' (the deterministic
    map is not injective, so its change-of-variables weights are invalid) or 'none'."""
    options = {"n_steps": k, "random_state": 1}
    with_weights = (
        method in BASELINE_REFERENCE
        or k == 1
        or (method == "scds" and dim <= EXACT_LOG_DET_MAX_DIM)
    )
    if not with_weights:
        return model.sample(n, **options), None, "none"
    with weight_check() as check:
        x, log_w = model.sample(n, return_log_weights=True, **options)
    return x, log_w, "valid" if check.valid else "folds"


def _sample_metrics(x, exact, device) -> dict:
    x, exact = (torch.as_tensor(a, device=device) for a in (x, exact))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        converged = sinkhorn(x, exact)
    return {
        "paper_sinkhorn": paper_sinkhorn(x, exact),
        "sinkhorn": converged,
        "sinkhorn_converged": not any(w.category is ConvergenceWarning for w in caught),
        "w1": wasserstein(x.cpu(), exact.cpu(), p=1),
    }


def _weight_metrics(log_w, log_z: float | None) -> dict:
    estimate = estimate_log_normalizer(np.asarray(log_w, dtype=np.float64))
    row = {
        "ess": estimate.ess,
        "log_z": estimate.log_z,
        "log_z_stderr": estimate.stderr,
        "elbo": estimate.elbo,
        "elbo_stderr": estimate.elbo_stderr,
    }
    if log_z is not None:
        row["abs_dlogz"] = abs(estimate.log_z - log_z)
    return row


def _sampling_seconds(model, k: int, n: int) -> float:
    model.sample(min(n, 1000), n_steps=k, random_state=0)  # warm-up (allocator, kernels)
    _synchronize(model.device_)
    start = time.perf_counter()
    model.sample(n, n_steps=k, random_state=0, return_tensor=True)
    _synchronize(model.device_)
    return time.perf_counter() - start


def _evaluate(model, method, k, target, energy, budget, exact, n_steps) -> tuple[dict, np.ndarray]:
    x, log_w, weights = _draw(model, method, k, budget.n_metric, energy.dim)
    paper_steps = target.n_steps if k == n_steps else k
    row = {
        "method": method,
        "steps": k,
        "nfe": k,  # network evaluations per sample (one per step for every method here)
        "weights": weights,
        "sample_seconds": _sampling_seconds(model, k, budget.n_timing),
        "paper": target.paper.get((method, paper_steps), {}),
        "paper_steps": paper_steps,
    }
    if exact is not None:
        row.update(_sample_metrics(x, exact, model.device_))
    if log_w is not None:
        log_z = energy.log_normalizer
        row.update(_weight_metrics(log_w, log_z if log_z is not None else target.reference_log_z))
    return row, x


def _floors(exact_a, exact_b, device) -> dict:
    metrics = _sample_metrics(exact_b, exact_a, device)
    metrics.pop("sinkhorn_converged")
    return metrics


# ---------------------------------------------------------------- one target
# what the sample plots draw (a scatter in 2-D, the first coordinate otherwise): the
# `.npz` keeps only these, so `--report-only` redraws the plots from a small file
_PLOTTED_COORDINATES = 2


def _run_target(target: BenchTarget, methods, budget: Budget, config: dict, out: Path) -> dict:
    energy = target.build(config["data_dir"])
    n_steps = budget.n_steps or target.n_steps
    device, seed = config["device"], config["seed"]
    exact_a = exact_b = None
    if target.exact_samples:
        g = torch.Generator().manual_seed(seed + 3)
        exact_a, exact_b = (energy.sample(budget.n_metric, g).numpy() for _ in range(2))
    result = {"title": target.title, "dim": energy.dim, "n_steps": n_steps, "rows": []}
    result["log_z"] = energy.log_normalizer
    result["reference_log_z"] = target.reference_log_z
    samples = {} if exact_a is None else {"exact": exact_a[:, :_PLOTTED_COORDINATES]}
    teacher = None
    for method in sorted(methods, key=["dis", "pis", "dds", "cdds", "scds"].index):
        if method == "cdds" and teacher is None:
            teacher = _fit("dis", energy, budget, n_steps, device, seed, config["loss"], None)
        model = _fit(method, energy, budget, n_steps, device, seed, config["loss"], teacher)
        if method == "dis":
            teacher = model
        train_seconds = model.history_[-1]["elapsed"]
        for k in _steps(method, n_steps, budget.n_intervals):
            row, x = _evaluate(model, method, k, target, energy, budget, exact_a, n_steps)
            row["train_seconds"] = train_seconds
            row["train_iterations"] = model.n_iter_
            if method == "cdds":
                row["teacher_train_seconds"] = teacher.history_[-1]["elapsed"]
            result["rows"].append(row)
            samples[f"{method}_{k}"] = x[:, :_PLOTTED_COORDINATES]
            print(_progress(target.name, row), flush=True)
    if exact_a is not None:
        result["floor"] = _floors(exact_a, exact_b, resolve_device(device))
    np.savez_compressed(out / f"samples_{target.name}.npz", **samples)
    return result


def _progress(name: str, row: dict) -> str:
    shown = ("paper_sinkhorn", "w1", "ess", "abs_dlogz", "elbo")
    parts = [f"{m}={row[m]:.4g}" for m in shown if m in row]
    return f"[{name}] {row['method']}@{row['steps']}: " + " ".join(parts)


# ---------------------------------------------------------------- entry point
def run_benchmark(
    targets=("gmm9", "mw54", "funnel", "mw52", "ionosphere", "lgcp"),
    methods=METHODS,
    *,
    budget: str = "smoke",
    device="auto",
    out="bench_results",
    data_dir=None,
    seed: int = 0,
    baseline_loss: str = "kl",
    plots: bool = True,
) -> dict:
    """Train every method on every target and write the comparison with the paper.

    Parameters
    ----------
    targets : sequence of str, default=all six
        Names from ``gmm9, mw54, funnel, mw52, ionosphere, lgcp``.
    methods : sequence of str, default=all five
        Names from ``pis, dds, dis, cdds, scds``. CDDS distils the DIS model of the same run
        (or a DIS fitted for it if ``'dis'`` is not listed).
    budget : {'smoke', 'cpu', 'paper'}, default='smoke'
        See :data:`skcds.bench.BUDGETS`: ``smoke`` checks the pipeline in minutes on 2 CPU
        cores, ``paper`` is the paper's budget, for a GPU.
    device : str or torch.device, default='auto'
        Passed to every estimator.
    out : str or path-like, default='bench_results'
        Output folder: ``results.json``, ``table.md``, ``samples_<target>.png``,
        ``steps_<target>.png`` and ``samples_<target>.npz`` (the first two coordinates of
        the samples, which the plots draw).
    data_dir : str or path-like, optional
        Folder (or file) with ``ionosphere.csv`` and ``pines.csv``; by default the folders of
        :mod:`skcds.datasets` are searched. A target whose data is missing is skipped with
        the reason, and the others run.
    seed : int, default=0
        Seeds every estimator and the exact samples.
    baseline_loss : {'kl', 'log_variance'}, default='kl'
        Loss of PIS and DDS (the paper says KL, the reference code uses log-variance); DIS,
        SCDS and CDDS's teacher always use log-variance.
    plots : bool, default=True
        Draw the plots.

    Returns
    -------
    dict
        The content of ``results.json``.
    """
    targets = _check_names(targets, TARGETS, "targets")
    methods = _check_names(methods, METHODS, "methods")
    if budget not in BUDGETS:
        raise ValueError(f"'budget' must be one of {sorted(BUDGETS)}; got {budget!r}.")
    if baseline_loss not in ("kl", "log_variance"):
        raise ValueError(
            f"'baseline_loss' must be one of ['kl', 'log_variance']; got {baseline_loss!r}."
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = {"device": device, "seed": seed, "loss": baseline_loss, "data_dir": data_dir}
    results = {
        "skcds_version": __version__,
        "torch_version": torch.__version__,
        "budget": budget,
        "methods": methods,
        "baseline_loss": baseline_loss,
        "seed": seed,
        "targets": {},
        "skipped": {},
    }
    start = time.perf_counter()
    for name in targets:
        spec = BUDGETS[budget].for_target(name)
        results["budgets"] = {**results.get("budgets", {}), name: _budget_dict(spec)}
        try:
            results["targets"][name] = _run_target(TARGETS[name], methods, spec, config, out)
        except FileNotFoundError as error:
            print(f"[{name}] skipped: {error}", flush=True)
            results["skipped"][name] = str(error)
        results["device"] = _resolved_device_name(device)
        results["wall_seconds"] = time.perf_counter() - start
        (out / "results.json").write_text(json.dumps(results, indent=2, default=_json_default))
    from ._report import write_report

    write_report(results, out, plots=plots)
    return results


def _budget_dict(budget: Budget) -> dict:
    return {k: v for k, v in vars(budget).items() if k != "overrides"}


def _resolved_device_name(device) -> str:
    return device_name(resolve_device(device))


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
