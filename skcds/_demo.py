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
_MCMC_STEPS = 10
_IMH_STEPS = 2


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


def _weight_metrics(sampler, k: int) -> dict:
    """log Z, ELBO and ESS from the k-step change-of-variables weights, or why they are invalid."""
    with weight_check(ignore_unreliable=True) as check:  # k-hat is printed below
        estimate = sampler.estimate_log_normalizer(10_000, n_steps=k, random_state=3)
    if not check.valid:
        # a folding map has no valid change-of-variables density: print no numbers for it
        return {f"[{k} step(s)] log Z, ELBO, ESS": "not valid: the map folds, use more steps"}
    return {
        f"[{k} step(s)] log Z estimate (true 0)": estimate.log_z,
        f"[{k} step(s)] log Z standard error": estimate.stderr,
        f"[{k} step(s)] ELBO": estimate.elbo,
        f"[{k} step(s)] ESS": estimate.ess,
        f"[{k} step(s)] PSIS k-hat (reliable below 0.7)": estimate.khat,
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
    for k in (1, budget["n_steps"]):
        samples = sampler.sample(2000, n_steps=k, random_state=1)
        metrics[f"[{k} step(s)] Wasserstein-1"] = wasserstein(samples, exact, p=1)
        metrics[f"[{k} step(s)] modes covered (of 9)"] = round(
            9 * mode_coverage(samples, np.asarray(energy.means))
        )
        metrics.update(_weight_metrics(sampler, k))
        if k == 1:
            refined = sampler.sample(2000, n_steps=1, random_state=1, mcmc_steps=_MCMC_STEPS)
            name = f"[1 step + {_MCMC_STEPS} MALA moves] Wasserstein-1"
            metrics[name] = wasserstein(refined, exact, p=1)
            panels = {"one step": samples, f"one step + {_MCMC_STEPS} MALA moves": refined}
            if "[1 step(s)] ESS" in metrics:  # independent MH needs the valid weights
                corrected = sampler.sample(2000, n_steps=1, random_state=1, imh_steps=_IMH_STEPS)
                name = f"[1 step + {_IMH_STEPS} independent MH steps] Wasserstein-1"
                metrics[name] = wasserstein(corrected, exact, p=1)
                panels[f"one step + {_IMH_STEPS} independent MH steps"] = corrected
            _plot(energy, panels, out / "samples.png")
    joblib.dump(sampler, out / "sampler.joblib")
    for name, value in metrics.items():
        print(f"{name:>40}: {value:.4g}" if isinstance(value, float) else f"{name:>40}: {value}")
    print(f"wrote {out / 'samples.png'} and {out / 'sampler.joblib'}")
    return metrics
