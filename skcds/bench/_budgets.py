"""Training and evaluation budgets of the benchmark harness: ``smoke``, ``cpu`` and ``paper``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

__all__ = ["BUDGETS", "Budget"]


@dataclass(frozen=True)
class Budget:
    """How long every method trains and how much is drawn to evaluate it.

    ``n_steps=None`` uses each target's paper grid (128, or 256 for Ionosphere and LGCP);
    ``overrides`` maps a target name to fields that differ for it.
    """

    name: str
    max_iter: int  # PIS, DDS, DIS and SCDS training iterations
    batch_size: int
    distill_iter: int  # CDDS distillation iterations
    distill_batch_size: int
    n_metric: int  # samples per metric (and per exact-sample set of the floors)
    n_timing: int  # samples of the sampling wall-clock measurement
    n_steps: int | None = None
    n_intervals: int = 17  # CDDS distillation intervals
    overrides: dict = field(default_factory=dict)

    def for_target(self, name: str) -> Budget:
        """This budget with the overrides of target ``name`` applied."""
        return dataclasses.replace(self, **self.overrides.get(name, {}), overrides={})


BUDGETS = {
    # checks the whole pipeline in minutes on 2 CPU cores: numbers mean nothing
    "smoke": Budget(
        "smoke",
        max_iter=30,
        batch_size=64,
        distill_iter=30,
        distill_batch_size=64,
        n_metric=300,
        n_timing=2000,
        n_steps=16,
        n_intervals=8,
    ),
    # what 2 CPU cores afford in about an hour per target (1/10 of the paper's iterations)
    "cpu": Budget(
        "cpu",
        max_iter=2000,
        batch_size=256,
        distill_iter=3000,
        distill_batch_size=256,
        n_metric=2000,
        n_timing=100_000,
        overrides={
            # a 1600-D score costs a 1600 x 1600 product per sample and step on 2 cores
            "lgcp": {"max_iter": 300, "batch_size": 32, "distill_iter": 300, "n_timing": 2000},
            "ionosphere": {"max_iter": 1000},
        },
    ),
    # method.md §2.3–§4: 20 000 x 512 (LGCP: 50 000 x 64), CDDS 150 000 x 512, 6000 samples
    "paper": Budget(
        "paper",
        max_iter=20_000,
        batch_size=512,
        distill_iter=150_000,
        distill_batch_size=512,
        n_metric=6000,
        n_timing=100_000,
        overrides={"lgcp": {"max_iter": 50_000, "batch_size": 64, "distill_batch_size": 64}},
    ),
}
