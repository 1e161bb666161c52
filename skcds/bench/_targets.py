"""The paper's benchmark targets and its published numbers (method.md §5, §7).

Every target is one :class:`BenchTarget`; the paper's Tables 1 and 2 are keyed by
``(method, number of steps)`` so that a row of ours finds the paper's number beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..datasets import load_ionosphere, load_pines
from ..energies import LGCP, Funnel, GaussianMixture, LogisticRegressionPosterior, ManyWell

__all__ = ["TARGETS", "BenchTarget"]


@dataclass(frozen=True)
class BenchTarget:
    """A benchmark target: how to build it and what the paper reports on it."""

    name: str
    title: str
    build: Callable  # build(data_dir) -> Energy
    n_steps: int  # the paper's N
    exact_samples: bool
    paper: dict = field(default_factory=dict)  # (method, steps) -> {metric: value}
    reference_log_z: float | None = None  # literature log Z where no exact value exists


def _table1(sinkhorn, ess, dlogz) -> dict:
    """One target's Table 1 columns: PIS, DDS, DIS at 128 steps, then DIS, CDDS, SCDS at 1."""
    columns = [("pis", 128), ("dds", 128), ("dis", 128), ("dis", 1), ("cdds", 1), ("scds", 1)]
    return {
        column: {"paper_sinkhorn": s, "ess": e, "abs_dlogz": d}
        for column, s, e, d in zip(columns, sinkhorn, ess, dlogz, strict=True)
    }


def _table2(elbos) -> dict:
    """One target's Table 2 ELBOs: PIS, DDS, DIS, SCDS at 256 steps, then DIS, CDDS, SCDS at 1."""
    columns = [
        ("pis", 256),
        ("dds", 256),
        ("dis", 256),
        ("scds", 256),
        ("dis", 1),
        ("cdds", 1),
        ("scds", 1),
    ]
    return {column: {"elbo": e} for column, e in zip(columns, elbos, strict=True)}


def _ionosphere(data_dir):
    X, y = load_ionosphere(data_dir)
    # the reference code's target is the likelihood alone (method.md §5): no prior term
    return LogisticRegressionPosterior(X, y, prior_scale=None)


def _lgcp(data_dir):
    return LGCP(load_pines(data_dir))


INF = float("inf")
TARGETS = {
    "gmm9": BenchTarget(
        "gmm9",
        "GMM, 9 modes (2-D)",
        lambda data_dir: GaussianMixture.grid(),
        128,
        True,
        _table1(
            [1.7946, 0.0898, 0.0203, 0.0559, 0.0313, 0.0478],
            [1e-5, 0.0065, 0.8054, 0.00057, 0.3395, 0.0504],
            [2.1806, 1.6819, 0.0899, 14.7669, 1.5717, 1.0743],
        ),
    ),
    "mw54": BenchTarget(
        "mw54",
        "Many-Well MW54 (5-D, 32 modes)",
        lambda data_dir: ManyWell.mw54(),
        128,
        True,
        _table1(
            [0.1377, 0.1366, 0.1230, 6.2804, 0.2815, 0.3913],
            [0.0664, 0.0051, 0.2677, 1.7e-5, 0.0442, 2.1e-5],
            [1.9974, 2.4154, 1.2056, 6766.2891, 1.0966, 11.2524],
        ),
    ),
    "funnel": BenchTarget(
        "funnel",
        "Funnel (10-D)",
        lambda data_dir: Funnel(),
        128,
        True,
        _table1(
            [6.0731, 5.8600, 5.1755, 10.5224, 8.8849, 5.4922],
            [1e-5, 0.0582, 0.1305, 4.9e-5, 5.1e-5, 0.00014],
            [0.4381, 0.5641, 0.6407, INF, 1.3316, 10.3557],
        ),
    ),
    "mw52": BenchTarget(
        "mw52",
        "Many-Well MW52 (50-D, 32 modes)",
        lambda data_dir: ManyWell.mw52(),
        128,
        True,
        _table1(
            [6.8035, 6.7830, 6.8808, 31.2532, 6.1764, 7.1110],
            [1e-5, 0.4412, 0.0028, 1e-5, 5.7e-5, 1e-5],
            [42.4502, 42.4245, 39.7814, 9116.0713, 63.7244, 87.7095],
        ),
    ),
    "ionosphere": BenchTarget(
        "ionosphere",
        "Ionosphere logistic regression (35-D, no prior)",
        _ionosphere,
        256,
        False,
        _table2([-39.3, -1510.3, -77.4, -73.7, -3252.7, -27.5, -567.3]),
    ),
    "lgcp": BenchTarget(
        "lgcp",
        "Log-Gaussian Cox process, Finnish pines (1600-D)",
        _lgcp,
        256,
        False,
        _table2([397.5, 314.8, 365.6, 103.9, -3.09e6, 1118.0, -4579.7]),
        reference_log_z=512.6,
    ),
}
