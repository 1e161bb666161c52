"""torch's intra-op threads while skcds trains on a CPU.

The samplers' networks are small (a batch of 512 rows through layers of width 64), and
for work this small torch's thread pool gains little on a free machine but loses much on a
busy one: its threads wait for each other at every operation, so one thread descheduled by
another process stalls them all. Measured on a 2-core machine (``benchmarks/
thread_contention.py``, results in ``benchmarks/results/thread_contention/``): see there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["SMALL_WORK", "fit_threads", "intra_op_threads"]

# rows x width of one layer's matrix product below which 'auto' trains on one thread
SMALL_WORK = 2**18


def fit_threads(
    n_threads, device: torch.device, rows: int, network: torch.nn.Module, dim: int
) -> int | None:
    """The intra-op threads a fit uses: ``n_threads`` if an int, none set (torch's own)
    for ``None`` or off the CPU, and for ``'auto'`` one thread when one layer's work,
    ``rows`` times the widest layer of ``network`` (or ``dim``), is below
    :data:`SMALL_WORK`, else torch's own."""
    if n_threads is None or device.type != "cpu":
        return None
    if n_threads == "auto":
        widths = (p.shape[0] for p in network.parameters() if p.ndim == 2)
        return 1 if rows * max(dim, *widths) < SMALL_WORK else None
    return int(n_threads)


@contextlib.contextmanager
def intra_op_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` within the block (unchanged for ``None``),
    restored after, whatever happens inside."""
    previous = torch.get_num_threads()
    if n is None or n == previous:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
