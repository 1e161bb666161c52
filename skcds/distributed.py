"""Data-parallel training and sampling on ``torch.distributed``.

A sampler fitted in a process that belongs to an initialized default process group of
``W > 1`` processes trains data-parallel over it: each rank rolls out ``batch_size / W``
trajectories (``batch_size`` is the global batch), the gradients are averaged in one
all-reduce per optimiser step, and every rank holds the same weights. Every rank draws the
random numbers of the whole global batch and keeps its rows, so a W-process run equals the
1-process run with the same ``batch_size`` and ``random_state`` up to the order of
floating-point sums. ``sample``, ``estimate_log_normalizer`` and ``score`` are sharded too:
each rank draws its share and every rank gets all draws (log-weights gathered, so ``log Z``
is a log-sum-exp over all of them, not an average of per-rank estimates). Only rank 0 shows
a progress bar and writes checkpoints. Like ``DistributedDataParallel``, ``fit`` and
``sample`` are collective: every rank must call them, with the same arguments.

Two ways to start the processes:

* ``torchrun --nproc-per-node W script.py``, the script calling
  ``torch.distributed.init_process_group("gloo")`` (``"nccl"`` on GPUs) before ``fit``;
* from Python, :func:`launch` (``torch.multiprocessing`` processes with a gloo group).
"""

from __future__ import annotations

import datetime
import os
import queue as queue_module
import socket
from collections.abc import Callable

import torch.distributed as dist
import torch.multiprocessing as mp

from ._core.distributed import rank, world_size

__all__ = ["launch", "rank", "world_size"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _worker(index, fn, args, nprocs, backend, timeout, port, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group(
        backend, rank=index, world_size=nprocs, timeout=datetime.timedelta(seconds=timeout)
    )
    try:
        results.put((index, fn(*args)))
    finally:
        dist.destroy_process_group()


def launch(fn: Callable, nprocs: int, *args, backend: str = "gloo", timeout: float = 300.0) -> list:
    """Run ``fn(*args)`` on ``nprocs`` new processes that form a ``torch.distributed``
    group, and return their results in rank order.

    Parameters
    ----------
    fn : callable
        A module-level function (it is pickled into the new processes); inside it,
        :func:`rank` and :func:`world_size` tell the process where it is, and a sampler's
        ``fit`` and ``sample`` run data-parallel. Its return value must pickle.
    nprocs : int
        Number of processes ``W``.
    *args
        Passed to ``fn``.
    backend : str, default='gloo'
        The process group's backend (``'nccl'`` for one GPU per process).
    timeout : float, default=300.0
        Seconds a collective operation waits for the other ranks before it raises: a rank
        stuck or dead does not hang the others for ever.

    Returns
    -------
    list
        ``fn``'s return value on each rank.

    Raises
    ------
    torch.multiprocessing.ProcessRaisedException
        If ``fn`` raises on any rank (with that rank's traceback); the other processes
        are terminated.

    Examples
    --------
    >>> from skcds.distributed import launch, world_size
    >>> launch(world_size, 2)  # doctest: +SKIP
    [2, 2]
    """
    if not isinstance(nprocs, int) or isinstance(nprocs, bool) or nprocs < 1:
        raise ValueError(f"'nprocs' must be an int >= 1; got {nprocs!r}.")
    results = mp.get_context("spawn").SimpleQueue()
    worker_args = (fn, args, nprocs, backend, timeout, _free_port(), results)
    context = mp.start_processes(
        _worker, args=worker_args, nprocs=nprocs, join=False, start_method="spawn"
    )
    gathered = {}
    while not context.join(timeout=0.05):  # raises when a process fails
        gathered.update(_drain(results))
    gathered.update(_drain(results))
    return [gathered[i] for i in range(nprocs)]


def _drain(results) -> dict:
    out = {}
    try:
        while not results.empty():
            index, value = results.get()
            out[index] = value
    except queue_module.Empty:  # pragma: no cover - SimpleQueue.empty raced
        pass
    return out
