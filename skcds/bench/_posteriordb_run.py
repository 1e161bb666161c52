"""``python -m skcds.bench --mode posteriordb``: the samplers on real posteriors, against
Stan's reference draws (:mod:`skcds.bench._posteriordb`).

Per posterior, method and number of sampling steps: the largest standardised error of a
posterior mean ``|mean - ref_mean| / ref_sd`` and the range of the sd ratios, of the raw
samples, of the importance-weighted ones and of the draws after ``IMH_STEPS`` steps of
independent Metropolis–Hastings on those weights (both where the weights are valid), the ESS,
PSIS k-hat, fit seconds, and network evaluations per sample.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .._warnings import weight_check
from ..metrics import estimate_log_normalizer, pareto_khat
from ._posteriordb import POSTERIORS, load_posterior

__all__ = ["PDB_BUDGETS", "PDB_METHODS", "run_posteriordb"]

PDB_METHODS = ("scds", "dis")
IMH_STEPS = 2  # sample(n, imh_steps=2): unweighted draws corrected by the valid weights
_STEPS = {"scds": (1, 2, 4, 8, 32), "dis": (32,)}


@dataclass(frozen=True)
class PosteriorBudget:
    """Training iterations, batch and the training grid; samples per evaluation."""

    max_iter: int | dict  # or method -> iterations
    batch_size: int
    n_steps: int
    n_samples: int


PDB_BUDGETS = {
    "smoke": PosteriorBudget(max_iter=20, batch_size=64, n_steps=8, n_samples=500),
    # at most 5 minutes of training per posterior and method, one CPU thread each, two fits
    # side by side on 2 cores (SCDS costs about twice DIS per iteration: its jump terms)
    "cpu": PosteriorBudget(
        max_iter={"scds": 1200, "dis": 2000}, batch_size=256, n_steps=32, n_samples=6000
    ),
    # the longer run measured first (SCDS took 457-502 s there)
    "cpu_long": PosteriorBudget(max_iter=2500, batch_size=256, n_steps=32, n_samples=6000),
}


def _iterations(budget: PosteriorBudget, method: str) -> int:
    return budget.max_iter[method] if isinstance(budget.max_iter, dict) else budget.max_iter


def _fit(method: str, energy, budget: PosteriorBudget, seed: int, precondition: str):
    from .. import DiffusionSampler, SelfConsistentSampler

    cls = SelfConsistentSampler if method == "scds" else DiffusionSampler
    sampler = cls(
        n_steps=budget.n_steps,
        max_iter=_iterations(budget, method),
        batch_size=budget.batch_size,
        precondition=precondition,
        random_state=seed,
    )
    start = time.perf_counter()
    sampler.fit(energy)
    return sampler, time.perf_counter() - start


def _moments(x: np.ndarray, log_w: np.ndarray | None = None):
    w = np.full(len(x), 1.0 / len(x))
    if log_w is not None:
        w = np.exp(log_w - log_w.max())
        w /= w.sum()
    mean = w @ x
    return mean, np.sqrt(w @ (x - mean) ** 2)


def _errors(x, ref_mean, ref_sd, log_w=None) -> dict:
    mean, sd = _moments(x, log_w)
    z, ratio = (mean - ref_mean) / ref_sd, sd / ref_sd
    return {
        "max_z": float(np.max(np.abs(z))),
        "sd_ratio_min": float(ratio.min()),
        "sd_ratio_max": float(ratio.max()),
        "z": z.tolist(),  # per parameter, in the posterior's unconstrained coordinates
        "sd_ratio": ratio.tolist(),
    }


def evaluate(sampler, reference: np.ndarray, n_steps: int, n_samples: int, seed: int) -> dict:
    """Raw and importance-weighted moment errors against ``reference`` draws (unconstrained
    coordinates), ESS, k-hat and whether the weights are valid (no fold detected)."""
    ref_mean, ref_sd = reference.mean(0), reference.std(0)
    with weight_check() as check:
        x, log_w = sampler.sample(
            n_samples, n_steps=n_steps, random_state=seed, return_log_weights=True
        )
    valid = check.valid
    x, log_w = np.asarray(x, np.float64), np.asarray(log_w, np.float64)
    finite = np.isfinite(log_w) & np.isfinite(x).all(1)
    row = {"n_steps": n_steps, "valid_weights": valid, "n_nonfinite": int((~finite).sum())}
    row.update({f"raw_{k}": v for k, v in _errors(x[finite], ref_mean, ref_sd).items()})
    if valid and finite.sum() > 1:
        weighted = _errors(x[finite], ref_mean, ref_sd, log_w[finite])
        row.update({f"is_{k}": v for k, v in weighted.items()})
        row["ess"] = estimate_log_normalizer(log_w[finite]).ess
        row["khat"] = pareto_khat(log_w[finite])
        with weight_check():  # the fold check was made above
            corrected = sampler.sample(
                n_samples, n_steps=n_steps, random_state=seed, imh_steps=IMH_STEPS
            )
        corrected = np.asarray(corrected, np.float64)
        corrected = corrected[np.isfinite(corrected).all(1)]
        row.update({f"imh_{k}": v for k, v in _errors(corrected, ref_mean, ref_sd).items()})
    return row


@contextlib.contextmanager
def _validating_distributions():
    """torch.distributions' argument validation on, as users run their models (torch's
    default, except under ``python -O``), whatever the caller's setting, restored after:
    a value rounded onto a support's edge raises, and the samplers must cope (issue 26)."""
    distribution = torch.distributions.Distribution
    previous = distribution._validate_args
    distribution.set_default_validate_args(True)
    try:
        yield
    finally:
        distribution.set_default_validate_args(previous)


def run_posteriordb(
    names=None,
    methods=PDB_METHODS,
    *,
    budget: str = "smoke",
    out="bench_results/posteriordb",
    path=None,
    seed: int = 0,
    precondition: str = "auto",
) -> list[dict]:
    """Fit every method on every posterior and evaluate it at its numbers of steps.

    Parameters
    ----------
    names : list of str, optional
        Posteriors (keys of ``POSTERIORS``); all four by default.
    methods : sequence of {'scds', 'dis'}
    budget : {'smoke', 'cpu', 'cpu_long'}, default='smoke'
    out : path-like
        Folder for ``results.json`` and ``table.md`` (rewritten after every fit).
    path : path-like, optional
        posteriordb's ``posterior_database`` folder (see ``find_posteriordb``).
    seed : int, default=0
    precondition : {'auto', 'laplace', 'none'}, default='auto'
        The samplers' ``precondition``.

    Returns
    -------
    list of dict
        One row per posterior, method and number of steps.
    """
    names = list(POSTERIORS) if names is None else list(names)
    settings = PDB_BUDGETS[budget]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with _validating_distributions():
        return _run_all(names, methods, settings, out, path, seed, precondition)


def _run_all(names, methods, settings, out, path, seed, precondition) -> list[dict]:
    rows = []
    for name in names:
        posterior = load_posterior(name, path)
        for method in methods:
            sampler, seconds = _fit(method, posterior.energy, settings, seed, precondition)
            steps = [k for k in _STEPS[method] if method == "dis" or k <= settings.n_steps]
            if getattr(sampler, "student", None) == "flow":
                steps = [1]  # k > 1 adds Metropolis-Hastings steps (no weights): imh_ columns
            for k in steps:
                row = evaluate(
                    sampler, posterior.reference_unconstrained, k, settings.n_samples, seed + 1
                )
                rows.append(
                    {
                        "posterior": name,
                        "method": method,
                        "fit_seconds": seconds,
                        "max_iter": _iterations(settings, method),
                        "preconditioning": sampler.preconditioning_.method,
                        "nfe_per_sample": k,
                        "param_names": posterior.param_names,
                        **row,
                    }
                )
            (out / "results.json").write_text(json.dumps(rows, indent=1))
            (out / "table.md").write_text("\n".join(posteriordb_table(rows)) + "\n")
            (out / "table.csv").write_text("\n".join(posteriordb_table(rows, csv=True)) + "\n")
    return rows


_COLUMNS = [
    ("posterior", "{}"),
    ("method", "{}"),
    ("preconditioning", "{}"),
    ("n_steps", "{}"),
    ("fit_seconds", "{:.0f}"),
    ("raw_max_z", "{:.3f}"),
    ("raw_sd_ratio_min", "{:.2f}"),
    ("raw_sd_ratio_max", "{:.2f}"),
    ("valid_weights", "{}"),
    ("is_max_z", "{:.3f}"),
    ("is_sd_ratio_min", "{:.2f}"),
    ("is_sd_ratio_max", "{:.2f}"),
    ("imh_max_z", "{:.3f}"),
    ("imh_sd_ratio_min", "{:.2f}"),
    ("imh_sd_ratio_max", "{:.2f}"),
    ("ess", "{:.3f}"),
    ("khat", "{:.2f}"),
]


def posteriordb_table(rows: list[dict], csv: bool = False) -> list[str]:
    """The rows as a Markdown table, or CSV lines (``-`` where a value does not apply)."""
    header = [name for name, _ in _COLUMNS]
    cells = [[fmt.format(row[k]) if k in row else "-" for k, fmt in _COLUMNS] for row in rows]
    if csv:
        return [",".join(line) for line in [header, *cells]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(line) + " |" for line in cells]
