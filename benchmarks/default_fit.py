"""How long does ``SelfConsistentSampler().fit(energy)`` take with its defaults (early
stopping on), and how good is the sampler it returns? One thread.

    python benchmarks/default_fit.py gmm9 OUT.json [--max-time SECONDS]
"""

import argparse
import json
import time
import warnings

import torch

from skcds import SelfConsistentSampler
from skcds.energies import GaussianMixture, ManyWell
from skcds.metrics import wasserstein

TARGETS = {"gmm9": GaussianMixture.grid, "mw54": ManyWell.mw54}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("target", choices=sorted(TARGETS))
    parser.add_argument("out")
    parser.add_argument("--max-time", type=float, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    energy = TARGETS[args.target]()
    sampler = SelfConsistentSampler(random_state=0, max_time=args.max_time)
    start = time.perf_counter()
    sampler.fit(energy)
    seconds = time.perf_counter() - start
    exact = energy.sample(2000, torch.Generator().manual_seed(1)).numpy()
    floor = wasserstein(exact, energy.sample(2000, torch.Generator().manual_seed(2)).numpy())
    row = {
        "target": args.target,
        "fit_seconds": seconds,
        "n_iter": sampler.n_iter_,
        "stop_reason": sampler.stop_reason_,
        "monitored": [
            (r["iteration"], r["elbo"], r["ess"]) for r in sampler.history_ if "elbo" in r
        ],
        "w1_floor_2000": floor,
    }
    for k in (1, 8, 128):
        x, log_w = sampler.sample(2000, n_steps=k, random_state=3, return_log_weights=True)
        est = sampler.estimate_log_normalizer(6000, n_steps=k, random_state=4)
        row[f"w1_{k}"] = wasserstein(exact, x)
        row[f"ess_{k}"], row[f"khat_{k}"] = est.ess, est.khat
    print(json.dumps(row))
    with open(args.out, "w") as handle:
        json.dump(row, handle, indent=1)


if __name__ == "__main__":
    main()
