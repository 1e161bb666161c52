"""Benchmark harness: the paper's Tables 1–2 reproduced side by side, and a speed report.

From the command line::

    python -m skcds.bench --targets gmm9,mw54 --methods pis,dds,dis,cdds,scds \\
        --budget cpu --device auto --out bench_results
    python -m skcds.bench --mode speed --out bench_speed

or from Python with :func:`run_benchmark` and :func:`run_speed`. Budgets are in
:data:`BUDGETS`, targets and the paper's numbers in :data:`TARGETS`.
"""

from ._budgets import BUDGETS, Budget
from ._report import write_report
from ._run import METHODS, run_benchmark
from ._speed import run_speed, speed_table
from ._targets import TARGETS, BenchTarget

__all__ = [
    "BUDGETS",
    "METHODS",
    "TARGETS",
    "BenchTarget",
    "Budget",
    "run_benchmark",
    "run_speed",
    "speed_table",
    "write_report",
]
