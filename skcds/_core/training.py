"""Training utilities shared by every sampler (method.md §2.3): Adam, the step learning-rate
decay, gradient-norm clipping, the clip schedule of the control, EMA weights for sampling,
and the skipping of non-finite updates."""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

from . import distributed

__all__ = [
    "EMA",
    "apply_clip_schedule",
    "flat_parameters",
    "make_optimizer",
    "make_scheduler",
    "optimizer_step",
]


def make_optimizer(params, learning_rate: float, weight_decay: float = 1e-7):
    """Adam as in the reference code; the fused kernel on CUDA. ``params``: tensors, or
    parameter groups (dicts, as torch's optimisers take them)."""
    params = list(params)
    fused = any(p.is_cuda for p in flat_parameters(params))
    return torch.optim.Adam(params, lr=learning_rate, weight_decay=weight_decay, fused=fused)


def flat_parameters(params) -> list[Tensor]:
    """The tensors of ``params``: tensors, or parameter groups (dicts)."""
    flat = []
    for entry in params:
        flat.extend(entry["params"] if isinstance(entry, dict) else [entry])
    return flat


def make_scheduler(optimizer, max_iter: int, final_factor: float = 0.02, step_size: int = 100):
    """StepLR every ``step_size`` iterations so that the rate ends ``final_factor`` lower."""
    gamma = final_factor ** (step_size / max(max_iter, 1))
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)


def apply_clip_schedule(control: nn.Module, iteration: int, initial: float = 10.0) -> None:
    """Clip values 10 -> 50 -> 250 at iterations 200 and 400 (the reference MultiStepParams);
    written in place so captured graphs see the change."""
    value = initial * 5 ** ((iteration >= 200) + (iteration >= 400))
    for name in ("clip_model", "clip_score"):
        buffer = getattr(control, name, None)
        if buffer is not None:
            buffer.fill_(value)


def optimizer_step(loss: Tensor, params, optimizer, scheduler=None, max_norm: float = 1.0):
    """Backward, clip and step, unless the loss or the gradient norm is non-finite.

    Data-parallel (:mod:`skcds._core.distributed`), the gradients are averaged over the
    ranks before clipping, and a non-finite loss on any rank skips the step on all.

    Returns ``(grad_norm, skipped)``; a skipped step leaves parameters, optimiser state and
    the learning-rate schedule untouched. ``scheduler=None`` leaves the schedule to the
    caller (samplers that take several optimiser steps per iteration advance it once).
    """
    optimizer.zero_grad(set_to_none=True)
    finite = bool(torch.isfinite(loss))
    if finite:
        loss.backward()
    finite = distributed.average_gradients(list(params), finite)  # no-op on one process
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    skipped = not math.isfinite(grad_norm) or not finite
    if not skipped:
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    return grad_norm, skipped


class EMA:
    """Exponential moving average of a module's parameters, for sampling.

    Decay warms up as ``min(cap, 1 - (1 + e)^-0.9)`` over the ``e`` updates made; buffers
    (e.g. the control's clip values) are copied, not averaged. A hand-written class because
    ``torch.optim.swa_utils.AveragedModel`` averages buffers along with parameters.
    """

    def __init__(self, module: nn.Module, cap: float = 0.9999) -> None:
        self.module = copy.deepcopy(module).requires_grad_(False)
        self.cap, self.n_updates = cap, 0

    def update(self, module: nn.Module) -> None:
        decay = min(self.cap, 1.0 - (1.0 + self.n_updates) ** -0.9)
        with torch.no_grad():
            averaged = list(self.module.parameters())
            torch._foreach_lerp_(averaged, list(module.parameters()), 1.0 - decay)
            for mine, theirs in zip(self.module.buffers(), module.buffers(), strict=True):
                mine.copy_(theirs)
        self.n_updates += 1
