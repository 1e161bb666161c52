"""Data parallelism on ``torch.distributed``: the few collective operations the samplers
need, and the sharding of random draws that makes a W-process run equal the 1-process one.

Every rank holds the same generator state (the same seed) and draws the random numbers of
the whole global batch, then keeps its own rows. Random numbers are cheap next to network
and energy evaluations, and this way a W-process run with ``batch_size / W`` trajectories
per rank sees exactly the noise of a 1-process run with ``batch_size``: the two differ only
by the order of floating-point sums in the all-reduce. Draws shared by the whole batch (a
jump length, a distillation interval) are the same on every rank by construction.

Sharding is active only inside a sampler's training loop and sampling (:func:`sharding`);
every rank must then make the same calls, as with ``DistributedDataParallel``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "active_size",
    "all_gather_rows",
    "any_rank",
    "average_gradients",
    "broadcast_int",
    "global_mean",
    "global_sum",
    "is_active",
    "rank",
    "shard",
    "sharding",
    "world_size",
]

_state = {"active": False}


def world_size() -> int:
    """Processes in the default group (1 without one)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank in the default group (0 without one)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_active() -> bool:
    """Whether a sampler is training or sampling data-parallel right now."""
    return _state["active"]


@contextlib.contextmanager
def sharding(enabled: bool):
    """Within the block, :func:`shard` splits draws and the collectives reduce, if
    ``enabled`` and there is more than one process."""
    previous = _state["active"]
    _state["active"] = bool(enabled) and world_size() > 1
    try:
        yield
    finally:
        _state["active"] = previous


def active_size() -> int:
    """``W`` while sharding is active, else 1: the factor between a rank's share and the
    global batch."""
    return world_size() if is_active() else 1


def shard(draw: Callable[[int], Tensor], n: int, axis: int = 0) -> Tensor:
    """``draw(n)`` on one process; with W active processes, this rank's ``n`` rows of
    ``draw(W * n)`` along ``axis``."""
    if not is_active():
        return draw(n)
    return draw(n * world_size()).narrow(axis, rank() * n, n)


def global_sum(value: Tensor) -> Tensor:
    """The sum of a detached tensor over the ranks (itself when not active)."""
    if not is_active():
        return value
    total = value.detach().clone()
    dist.all_reduce(total)
    return total


def global_min(value: Tensor) -> Tensor:
    """The minimum of a detached tensor over the ranks (itself when not active)."""
    if not is_active():
        return value
    low = value.detach().clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    return low


def global_mean(value: Tensor) -> Tensor:
    """The mean of a detached tensor over the ranks (itself when not active)."""
    return global_sum(value) / active_size()


def average_gradients(params: list[Tensor], loss_finite: bool) -> bool:
    """Average the gradients over the ranks in one all-reduce; returns whether the loss was
    finite on every rank (a rank with a non-finite loss contributes no gradient, and then
    every rank skips the update, so the weights stay equal)."""
    if not is_active():
        return loss_finite
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads] + [grads[0].new_tensor([float(loss_finite)])])
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for p, g in zip(params, grads, strict=True):
        p.grad = flat[offset : offset + g.numel()].view_as(g)
        offset += g.numel()
    return bool(flat[-1] == 1.0)


def all_gather_rows(x: Tensor) -> Tensor:
    """Rows of every rank, concatenated in rank order (every rank gets all of them)."""
    if not is_active():
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def any_rank(flag: bool, device=None) -> bool:
    """Whether ``flag`` is true on any rank (itself when not active): a decision every rank
    must take together, such as stopping at a Ctrl-C that reached only some of them.
    ``device``: where the collective runs (a CUDA device for NCCL)."""
    if not is_active():
        return flag
    return bool(global_sum(torch.tensor([float(flag)], device=device)) > 0)


def broadcast_int(value: int) -> int:
    """Rank 0's ``value`` on every rank (``value`` itself without a group)."""
    if world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return int(box[0])
