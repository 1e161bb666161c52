"""Training losses on importance log-weights ``log_w = log rho(x_T) - log_rnd`` (method.md
§1.3, §2.1). Every loss has the signature ``loss(log_w) -> (value, n_masked)``; samples whose
log-weight is non-finite or beyond ``1e8`` in magnitude are masked out (as the reference
code does) without any host–device synchronisation. New losses go in :data:`LOSSES`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import distributed

__all__ = [
    "LOSSES",
    "finite_rows",
    "floor_zero_density",
    "get_loss",
    "kl",
    "log_variance",
    "weighted_forward_kl",
    "zero_rows",
]

_LIMIT = 1e8
ZERO_DENSITY_MARGIN = 10.0  # nats below the batch's lowest finite log rho


def floor_zero_density(log_target: Tensor) -> Tensor:
    """``log rho`` of a training batch, where ``-inf`` (zero density: the model returned
    ``-inf``, or raised or returned NaN there, see :mod:`skcds.energies._guard`) becomes the
    batch's lowest finite value (over every rank) minus :data:`ZERO_DENSITY_MARGIN`.

    Masked out instead, as non-finite log-weights are, such samples leave the loss blind
    to where they landed: never penalised for going there, a sampler moved its mass into
    a region where the model raises (a 2-D Gaussian raising on 0.6% of its mass: raw
    mean 2.05 for 1.0). With the stand-in, the loss pushes the sampler away as from a point
    of very low density. Sampling weights keep the exact ``-inf``."""
    zero = log_target == -torch.inf
    finite = torch.where(torch.isfinite(log_target), log_target, torch.inf)
    floor = distributed.global_min(finite.min().detach()) - ZERO_DENSITY_MARGIN
    return torch.where(zero, floor, log_target)


def _mask(log_w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Finite, bounded entries: returns (zero-filled log_w, mask as float, count)."""
    keep = torch.isfinite(log_w) & (log_w.abs() < _LIMIT)
    filled = torch.where(keep, log_w, torch.zeros_like(log_w))
    return filled, keep.to(log_w.dtype), keep.sum()


def log_variance(log_w: Tensor, groups: int | None = None) -> tuple[Tensor, Tensor]:
    """Log-variance divergence ``Var[log_w]`` over the finite samples (DIS; shift-invariant,
    so the unknown ``log Z`` drops out). Unbiased sample variance. With ``groups``, the
    mean over consecutive groups of that many rows of each group's variance (a family of
    densities: each group shares one context ``c``, and only the variance within a context
    is free of ``log Z(c)``; across contexts the loss would bias ``q`` to flatten
    ``log Z(c)``). Groups never span ranks, so no collective is needed then."""
    if groups is not None:
        return _grouped_log_variance(log_w, groups)
    filled, keep, count = _mask(log_w)
    if distributed.is_active():
        return _global_log_variance(filled, keep, count), log_w.shape[0] - count
    n = count.clamp(min=2).to(log_w.dtype)
    mean = filled.sum() / n
    var = (keep * (filled - mean).square()).sum() / (n - 1)
    return var, log_w.shape[0] - count


def _grouped_log_variance(log_w: Tensor, groups: int) -> tuple[Tensor, Tensor]:
    filled, keep, count = _mask(log_w.reshape(-1, groups))
    n = keep.sum(-1).clamp(min=2)
    mean = filled.sum(-1, keepdim=True) / n[:, None]
    var = (keep * (filled - mean).square()).sum(-1) / (n - 1)
    return var.mean(), log_w.shape[0] - count


def _global_log_variance(filled: Tensor, keep: Tensor, count: Tensor) -> Tensor:
    """This rank's share of the variance over all ranks' samples, scaled so that the mean
    over the ranks (of values and of gradients) is the global variance and its gradient.
    The global mean is detached: the variance's derivative in it is zero."""
    n = distributed.global_sum(count).clamp(min=2).to(filled.dtype)
    mean = distributed.global_sum(filled.sum()) / n
    share = (keep * (filled - mean).square()).sum() / (n - 1)
    return distributed.active_size() * share


def kl(log_w: Tensor, groups: int | None = None) -> tuple[Tensor, Tensor]:
    """Reverse KL divergence up to ``log Z``: ``-E[log_w]`` (PIS/DDS); needs a rollout that is
    differentiable end to end (reparametrisation). ``groups`` is ignored: ``log Z(c)`` is a
    constant of the parameters, row by row."""
    filled, keep, count = _mask(log_w)
    # data-parallel: this rank's share of the mean over all ranks' finite samples, times W
    n = distributed.global_sum(count).clamp(min=1).to(log_w.dtype)
    return -distributed.active_size() * filled.sum() / n, log_w.shape[0] - count


def weighted_forward_kl(
    log_q: Tensor, log_w: Tensor, groups: int | None = None
) -> tuple[Tensor, Tensor]:
    """Weighted maximum likelihood ``-sum_i w_i log q(x_i)`` of a density model ``q`` on
    draws ``x_i`` of a proposal with importance log-weights ``log_w`` (``log rho - log
    proposal``, detached): the weights are self-normalised over the finite samples of the
    batch (of every rank), so the loss estimates ``KL(rho / Z || q)`` up to a constant
    whatever the proposal, and its minimiser is ``rho / Z``, not the proposal's law.

    ``log_q`` must be finite where ``log_w`` is (rows masked there get zero weight). With
    ``groups``, the weights are self-normalised within consecutive groups of that many rows
    (one context each, for a family: normalised across contexts, a context would weigh as
    its ``Z(c)``) and the loss is the mean over the groups.
    """
    if groups is not None:
        return _grouped_forward_kl(log_q, log_w, groups)
    filled, keep, count = _mask(log_w.detach())
    log_w = torch.where(keep.bool(), filled, -torch.inf)
    top = -distributed.global_min(-log_w.max())  # the global max, for a stable softmax
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    unnormalised = torch.exp(log_w - top)
    mass = distributed.global_sum(unnormalised.sum())
    w = unnormalised / mass.clamp(min=torch.finfo(mass.dtype).tiny)
    log_q = torch.where(keep.bool(), log_q, torch.zeros_like(log_q))
    # data-parallel: this rank's share of the global sum, times W (gradients are averaged)
    return -distributed.active_size() * (w * log_q).sum(), log_w.shape[0] - count


def _grouped_forward_kl(log_q: Tensor, log_w: Tensor, groups: int) -> tuple[Tensor, Tensor]:
    filled, keep, count = _mask(log_w.detach().reshape(-1, groups))
    w = torch.softmax(torch.where(keep.bool(), filled, -torch.inf), -1)
    w = torch.nan_to_num(w)  # a group with no finite weight: all NaN, weighs nothing
    log_q = torch.where(keep.bool(), log_q.reshape(-1, groups), torch.zeros_like(filled))
    return -(w * log_q).sum(-1).mean(), log_w.shape[0] - count


def finite_rows(*tensors: Tensor) -> Tensor:
    """``(n,)`` mask of the rows finite in every ``(n, d)`` tensor."""
    keep = torch.isfinite(tensors[0]).all(-1)
    for tensor in tensors[1:]:
        keep = keep & torch.isfinite(tensor).all(-1)
    return keep


def zero_rows(x: Tensor, keep: Tensor) -> Tensor:
    """``x`` with the rows outside ``keep`` set to zero. A masked row must still meet the
    network with finite inputs: its loss term gets a zero gradient, but ``0 * nan = nan``
    would poison every parameter's gradient and skip the whole update."""
    return torch.where(keep[:, None], x, torch.zeros_like(x))


LOSSES = {"log_variance": log_variance, "kl": kl}


def get_loss(name: str):
    """The loss registered under ``name`` in :data:`LOSSES`."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"'loss' must be one of {sorted(LOSSES)}; got {name!r}.") from None
