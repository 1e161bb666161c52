"""Samples and log-weights of tiny fits, written by the code before the flow student:
``python tests/estimators/data/before_flow_student.py OUT.npz`` at commit c870b15, one
thread (that code has no ``student`` parameter: its samplers are the jump and the
consistency function)."""

import sys


def main(path: str) -> None:
    import numpy as np
    import torch

    from skcds import ConsistentDistiller, DiffusionSampler, SelfConsistentSampler
    from skcds.energies import GaussianMixture

    torch.set_num_threads(1)
    energy = GaussianMixture.grid()
    tiny = {"n_steps": 8, "max_iter": 6, "batch_size": 32, "random_state": 0, "dtype": "float64"}
    dis = DiffusionSampler(**tiny).fit(energy)
    scds = SelfConsistentSampler(**tiny).fit(energy)
    cdds = ConsistentDistiller(
        dis, n_intervals=4, max_iter=6, batch_size=32, random_state=0, dtype="float64"
    ).fit()
    out = {}
    for name, s, options in (
        ("dis", dis, {}),
        ("scds", scds, {}),
        ("scds_sde", scds, {"method": "sde", "n_steps": 8}),
        ("cdds", cdds, {}),
    ):
        x, w = s.sample(16, random_state=1, return_log_weights=True, **options)
        out[f"{name}_x"], out[f"{name}_log_w"] = x, w
    np.savez(path, **out)


if __name__ == "__main__":
    main(sys.argv[1])
