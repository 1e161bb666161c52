"""The README demo: train a SelfConsistentSampler on the 9-mode Gaussian mixture, report its
one-step and many-step metrics, plot one-step samples against the target and save the model."""

from __future__ import annotations

import time
from pathlib import Path

import joblib
import numpy as np
import torch

from ._estimators._self_consistent import SelfConsistentSampler
from ._warnings import weight_check
from .energies import GaussianMixture
from .metrics import mode_coverage, wasserstein

DEMO_BUDGET = {"n_steps": 32, "max_iter": 1500, "batch_size": 256}
_FEW_STEPS = 4  # the flow's draw and 3 independent Metropolis-Hastings steps


def _plot(energy, panels: dict, path: Path) -> None:
    """One scatter of samples over the target's contours per ``{title: samples}`` item."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(-8, 8, 200)
    xx, yy = np.meshgrid(grid, grid)
    points = torch.tensor(np.stack([xx.ravel(), yy.ravel()], 1), dtype=torch.float64)
    density = energy.to(torch.float64).log_prob(points).exp().reshape(xx.shape).numpy()
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 5), squeeze=False)
    for ax, (title, samples) in zip(axes[0], panels.items(), strict=True):
        ax.contour(xx, yy, density, levels=6, cmap="Greys", linewidths=0.6, alpha=0.6)
        ax.scatter(samples[:, 0], samples[:, 1], s=2, alpha=0.5, color="tab:blue", zorder=3)
        ax.set(title=title, xlim=(-8, 8), ylim=(-8, 8))
    fig.suptitle("SelfConsistentSampler on the 9-mode GMM (2000 samples each)")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _weight_metrics(sampler, k: int, label: str | None = None, **options) -> dict:
    """log Z, ELBO and ESS from the sampler's ``k``-step weights, or why they are invalid."""
    label = label or f"{k} step(s)"
    with weight_check(ignore_unreliable=True) as check:  # k-hat is printed below
        estimate = sampler.estimate_log_normalizer(10_000, n_steps=k, random_state=3, **options)
    if not check.valid:
        # a folding map has no valid change-of-variables density: print no numbers for it
        return {f"[{label}] log Z, ELBO, ESS": "not valid: the map folds, use more steps"}
    return {
        f"[{label}] log Z estimate (true 0)": estimate.log_z,
        f"[{label}] log Z standard error": estimate.stderr,
        f"[{label}] ELBO": estimate.elbo,
        f"[{label}] ESS": estimate.ess,
        f"[{label}] PSIS k-hat (reliable below 0.7)": estimate.khat,
    }


def _sample_metrics(label: str, samples, exact, energy) -> dict:
    covered = round(9 * mode_coverage(samples, np.asarray(energy.means)))
    return {
        f"[{label}] Wasserstein-1": wasserstein(samples, exact, p=1),
        f"[{label}] modes covered (of 9)": covered,
    }


def run_demo(
    out: str | Path = "skcds_demo_output",
    max_iter: int | None = None,
    verbose: int = 1,
    random_state: int = 0,
) -> dict:
    """Train, evaluate, plot and save; returns the metrics. See ``python -m skcds demo -h``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    energy = GaussianMixture.grid(n_per_axis=3, spacing=5.0, scale=0.3**0.5)
    budget = {**DEMO_BUDGET, **({"max_iter": max_iter} if max_iter else {})}
    sampler = SelfConsistentSampler(**budget, random_state=random_state, verbose=verbose)
    start = time.perf_counter()
    sampler.fit(energy)
    metrics = {"training seconds": time.perf_counter() - start, "iterations": sampler.n_iter_}
    g = torch.Generator().manual_seed(2)
    exact = energy.sample(2000, generator=g).numpy()
    # exact W1, the limit of the converged Sinkhorn cost; its floor is the mean W1 between
    # independent exact sets (one pair is not enough: it varies by +-15% with the mode counts)
    pairs = [(energy.sample(2000, generator=g).numpy() for _ in range(2)) for _ in range(4)]
    floor = float(np.mean([wasserstein(a, b, p=1) for a, b in pairs]))
    metrics["Wasserstein-1 floor (2000 samples)"] = floor
    n_sde = budget["n_steps"]
    runs = {  # label: (panel title, sampling options)
        "1 step": ("one step (the flow)", {"n_steps": 1}),
        f"{_FEW_STEPS} steps": (
            f"{_FEW_STEPS} steps (+ {_FEW_STEPS - 1} independent MH steps)",
            {"n_steps": _FEW_STEPS},
        ),
        f"{n_sde}-step SDE": (
            f"its diffusion sampler, {n_sde} SDE steps",
            {"n_steps": n_sde, "method": "sde"},
        ),
    }
    panels = {}
    for label, (title, options) in runs.items():
        samples = sampler.sample(2000, random_state=1, **options)
        metrics.update(_sample_metrics(label, samples, exact, energy))
        if options["n_steps"] == 1 or "method" in options:  # the ones with weights
            metrics.update(
                _weight_metrics(sampler, label=label, k=options.pop("n_steps"), **options)
            )
        panels[title] = samples
    _plot(energy, panels, out / "samples.png")
    joblib.dump(sampler, out / "sampler.joblib")
    for name, value in metrics.items():
        print(f"{name:>40}: {value:.4g}" if isinstance(value, float) else f"{name:>40}: {value}")
    print(f"wrote {out / 'samples.png'} and {out / 'sampler.joblib'}")
    return metrics
