"""Draws of the unconditional samplers saved by the code before samplers of a family of
densities (issue 28; commit 250e062), for the test that they are bitwise unchanged.

    PYTHONPATH=<checkout of 250e062> python tests/estimators/data/before_contexts.py
"""

from pathlib import Path

import numpy as np

from skcds import ConsistentDistiller, DiffusionSampler, SelfConsistentSampler
from skcds.energies import GaussianMixture

TINY = {"n_steps": 8, "max_iter": 6, "batch_size": 32, "random_state": 0, "dtype": "float64"}
MONITORED = {"early_stopping": True, "monitor_every": 2}


def draws() -> dict:
    energy = GaussianMixture.grid()
    dis = DiffusionSampler(**TINY, **MONITORED).fit(energy)
    scds = SelfConsistentSampler(**TINY, **MONITORED).fit(energy)
    cdds = ConsistentDistiller(dis, max_iter=6, batch_size=32, random_state=0, dtype="float64")
    cdds.fit()
    out = {}
    for name, sampler, kwargs in (
        ("dis", dis, {"return_log_weights": True}),
        ("dis_imh_mcmc", dis, {"imh_steps": 1, "mcmc_steps": 2}),
        ("scds", scds, {"return_log_weights": True}),
        ("scds_2", scds, {"n_steps": 2}),
        ("scds_sde", scds, {"method": "sde", "n_steps": 8, "return_log_weights": True}),
        ("cdds", cdds, {"return_log_weights": True}),
    ):
        result = sampler.sample(16, random_state=1, **kwargs)
        x, log_w = result if isinstance(result, tuple) else (result, None)
        out[f"{name}_x"] = x
        if log_w is not None:
            out[f"{name}_log_w"] = log_w
    for name, sampler in (("dis", dis), ("scds", scds), ("cdds", cdds)):
        out[f"{name}_score"] = np.array(sampler.score(n_samples=64))
    return out


if __name__ == "__main__":
    np.savez(Path(__file__).with_suffix(".npz"), **draws())
