"""Would a better change of variables fix the one-step sampler's raw bias on eight schools?

``precondition='auto'`` leaves eight_schools_noncentered in its own coordinates (its Laplace
fit, at a mode far from the mean in ``log tau``, is worse than N(0, I)). This study trains
``SelfConsistentSampler`` at the posteriordb ``cpu`` budget (1200 x 256, N = 32) under:

* ``none``: the model's coordinates (what 'auto' picks);
* ``laplace``: the Laplace whitening, forced;
* ``moments``: an oracle, the whitening by the mean and covariance of Stan's reference draws
  (the best a pilot-run covariance could do);

and reports the raw one-step errors per coordinate against the reference draws.

    python benchmarks/eight_schools_precondition.py VARIANT OUT.json   # one thread
"""

import json
import sys
import time

import numpy as np
import torch

from skcds import SelfConsistentSampler
from skcds.bench._posteriordb import load_posterior
from skcds.bench._posteriordb_run import evaluate
from skcds.energies import AffineTransformed


def main(variant: str, out: str) -> None:
    torch.set_num_threads(1)
    posterior = load_posterior("eight_schools")
    reference = posterior.reference_unconstrained
    energy, precondition = posterior.energy, variant
    if variant == "moments":
        tril = np.linalg.cholesky(np.cov(reference.T))
        energy, precondition = AffineTransformed(energy, reference.mean(0), tril), "none"
    sampler = SelfConsistentSampler(
        n_steps=32, max_iter=1200, batch_size=256, precondition=precondition, random_state=0
    )
    start = time.perf_counter()
    sampler.fit(energy)
    seconds = time.perf_counter() - start
    rows = []
    for k in (1, 8):
        row = evaluate(sampler, reference, k, 6000, seed=1)
        rows.append({"variant": variant, "fit_seconds": seconds, **row})
        print(variant, k, f"raw max z {row['raw_max_z']:.3f}", np.round(row["raw_z"], 2))
    print(posterior.param_names)
    with open(out, "w") as handle:
        json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
