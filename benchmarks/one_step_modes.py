"""Where a saved one-step sampler puts the mass of each double well (issue 15), and which jump
of a k-step sampler folds.

    python benchmarks/one_step_modes.py wells MODEL.joblib mw52 [k ...]
    python benchmarks/one_step_modes.py folds MODEL.joblib k
    python benchmarks/one_step_modes.py mixture MODEL.joblib gmm9 [k | ksde ...]
    python benchmarks/one_step_modes.py tails MODEL.joblib [n]

``wells``: per double-well coordinate, the fraction of 6000 draws above zero (0.5 for the
target), and the sd and centre of the positive mode over the target's. ``folds``: per jump of
the k-step sampler on 2000 prior draws, the fraction of negative Jacobian determinants and of
a negative smallest eigenvalue of ``(J + J^T) / 2``, with their medians. ``mixture`` (a
Gaussian mixture target): per component, on 60 000 draws given to their nearest mean, its
weight over the target's and the sd of its draws over the component's, and the fraction of
draws further than 3 component sds from every mean beside the target's own fraction
(``32sde``: the network's 32-step SDE instead of its 32-step map). ``tails``: how many of
``n`` (100 000) prior draws the 1-step map reverses (``det J <= 0``) or leaves not monotone
(smallest eigenvalue of ``(J + J^T) / 2`` at most 0), with the largest ``|x_i|`` of each
reversed draw (the prior is truncated at 3.89).
"""

import sys
import warnings

import joblib
import numpy as np
import one_step_study
import torch

import __main__
from skcds._core.consistency import first_jump, sampler_jump
from skcds.bench import TARGETS
from skcds.energies._gaussian_mixture import _broadcast_scales, _normalised_weights

__main__._Monitor = one_step_study._Monitor  # the study's callback, pickled with its models


def wells(model, target: str, steps) -> None:
    energy = TARGETS[target].build(None)
    exact = energy.sample(6000, generator=torch.Generator().manual_seed(2)).numpy()
    for k in steps:
        x = model.sample(6000, n_steps=k, random_state=1)
        cols = range(energy.n_double_wells)
        frac = [(x[:, j] > 0).mean() for j in cols]
        width = [x[x[:, j] > 0, j].std() / exact[exact[:, j] > 0, j].std() for j in cols]
        centre = [x[x[:, j] > 0, j].mean() / exact[exact[:, j] > 0, j].mean() for j in cols]
        print(
            f"k={k} mass above 0: {' '.join(f'{f:.2f}' for f in frac)} | positive mode's sd "
            f"ratio: {' '.join(f'{f:.2f}' for f in width)} | its centre ratio: "
            f"{' '.join(f'{f:.2f}' for f in centre)}"
        )


def _nearest_mean(x, means):
    """Index of each row's nearest mean and its distance to it."""
    distance = np.linalg.norm(x[:, None] - means[None], axis=-1)
    return distance.argmin(1), distance.min(1)


def _orientation(jac):
    """``det J`` and the smallest eigenvalue of ``(J + J^T) / 2`` of detached Jacobians."""
    jac = jac.detach()
    return torch.linalg.det(jac), torch.linalg.eigvalsh(0.5 * (jac + jac.transpose(-1, -2)))[:, 0]


def mixture(model, target: str, steps) -> None:
    energy = TARGETS[target].build(None)
    means = np.asarray(energy.means, dtype=float)
    scales = _broadcast_scales(energy.scales, *means.shape).mean(1)
    weights = _normalised_weights(energy.weights, len(means))
    exact = energy.sample(60_000, generator=torch.Generator().manual_seed(2)).numpy()
    far = (_nearest_mean(exact, means)[1] > 3 * scales.mean()).mean()
    for k in steps:
        method = "sde" if k.endswith("sde") else "ode"
        x = model.sample(60_000, n_steps=int(k.removesuffix("sde")), random_state=1, method=method)
        nearest, radius = _nearest_mean(x, means)
        share = np.bincount(nearest, minlength=len(means)) / len(x)
        sd = [(x[nearest == j] - means[j]).std(0).mean() / scales[j] for j in range(len(means))]
        print(
            f"k={k} weight ratio: {' '.join(f'{w:.2f}' for w in share / weights)} | sd ratio: "
            f"{' '.join(f'{v:.2f}' for v in sd)} | beyond 3 sd: "
            f"{(radius > 3 * scales.mean()).mean():.3f} (target {far:.3f})"
        )


def tails(model, n: int) -> None:
    g = torch.Generator().manual_seed(11)
    x0 = model._prior(n, g)
    one = torch.tensor(model.reference_.terminal_time)
    args = (model._sampling_control, model.reference_, model._dynamics_energy)
    chunks = [_orientation(first_jump(*args, chunk, one)[1]) for chunk in x0.split(5000)]
    det, smallest = (torch.cat(parts) for parts in zip(*chunks, strict=True))
    reversed_ = det <= 0
    largest = x0[reversed_].abs().amax(1).sort().values
    print(
        f"1-step map on {n} prior draws: det J <= 0 at {int(reversed_.sum())}, not monotone "
        f"at {int((smallest <= 0).sum())}; largest |x_i| of the reversed: "
        f"{' '.join(f'{v:.2f}' for v in largest.tolist())}"
    )


def folds(model, k: int) -> None:
    g = torch.Generator().manual_seed(5)
    dim, dtype = model.n_features_in_, torch.float32
    x0 = model.reference_.prior_sample(2000, dim, generator=g, dtype=dtype, device="cpu")
    length = model._grid(k)[1] - model._grid(k)[0]
    for j in range(k):
        _, jac = sampler_jump(model.control_, model.reference_, model.energy_, x0, length, j)
        det, lam = _orientation(jac)
        print(
            f"jump {j}: det < 0 {(det < 0).float().mean():.3f}, smallest eigenvalue < 0 "
            f"{(lam < 0).float().mean():.3f}, its median {lam.median():.3f}, median det "
            f"{det.median():.3g}"
        )


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    command, path, *rest = sys.argv[1:]
    sampler = joblib.load(path)
    if command == "wells":
        wells(sampler, rest[0], [int(k) for k in rest[1:]] or [1])
    elif command == "mixture":
        mixture(sampler, rest[0], rest[1:] or ["1"])
    elif command == "tails":
        tails(sampler, int(rest[0]) if rest else 100_000)
    else:
        folds(sampler, int(rest[0]))
