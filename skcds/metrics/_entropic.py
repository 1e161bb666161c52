r"""Entropic OT with small epsilon: L-BFGS on the semi-dual, restricted to the plan's support.

Glossary: ``S`` is the *scaled reduced cost* ``(M_ij - f_i - g_j) / epsilon >= 0`` of
:func:`skcds.metrics.sinkhorn`, with ``(f, g)`` exact Kantorovich potentials; ``h`` is the
column potential in units of epsilon; the plan is ``P_ij = exp(h_j - S_ij - l_i) / n`` with
row log-normalisers ``l_i = log sum_j exp(h_j - S_ij)``, so its rows sum to ``a_i = 1 / n``
exactly and the gradient of the semi-dual is the column violation ``P^T 1 - b``.

At epsilon = 1e-3 the plan is extremely sparse (about 20 of 6,000 entries per row carry
mass on two samples of one mixture), so the solver works on the entries within
``_WIDTH`` of each row's maximum of ``h_j - S_ij`` and checks the result on the full matrix.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from functools import partial
from typing import NamedTuple

import torch
from torch import Tensor

from .._core.threads import intra_op_threads

# exp(-80) ~ 1.8e-35 is a normal float32; torch.exp is ~20x slower on CPU for arguments that
# underflow, and terms below e^-80 times the largest one cannot change a float64 sum of fewer
# than 1e18 terms.
FLOOR = -80.0
_WIDTH = 100.0  # support: entries within e^-100 of their row's largest
_DENSE = 0.25  # above this fraction of entries in the support, dense passes are faster
_ROUNDS = 5  # support updates before giving up
_CHUNK = 50  # L-BFGS iterations between two marginal checks
_HISTORY = 20  # L-BFGS memory; 100 was no faster in iterations and slower per iteration
_STALL = 1e-14  # a chunk that lowers the loss by less (relatively) has hit round-off

Objective = Callable[[Tensor], tuple[Tensor, Tensor, Tensor]]


def row_blocks(matrix: Tensor) -> Iterator[slice]:
    """Slices of rows holding about 2**20 entries (measured fastest on CPU); 2**25 on GPUs,
    which prefer few large launches."""
    entries = 2**25 if matrix.is_cuda else 2**20
    step = max(1, entries // matrix.shape[1])
    for start in range(0, matrix.shape[0], step):
        yield slice(start, start + step)


# --------------------------------------------------------------------------- objectives
def _loss(log_norm: Tensor, h: Tensor, m: int) -> Tensor:
    """Negative semi-dual (Cuturi and Peyre, 2018) in units of epsilon, times ``m``: the factor
    makes the gradient a relative error, as L-BFGS drops curvature pairs with ``y.s < 1e-10``."""
    n = log_norm.shape[0]
    return m * (log_norm.mean() - h.mean() + math.log(n) + 1.0)


def dense_semi_dual(scaled: Tensor, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Loss, gradient ``m P^T 1 - 1`` and row log-normalisers, by blocks of rows."""
    n, m = scaled.shape
    log_norm, column = scaled.new_empty(n), scaled.new_zeros(m)
    for rows in row_blocks(scaled):
        z = h - scaled[rows]
        top = z.amax(dim=1, keepdim=True)
        weights = z.sub_(top).clamp_(min=FLOOR).exp_()
        total = weights.sum(dim=1, keepdim=True)
        log_norm[rows] = (total.log() + top).squeeze(1)
        column += weights.div_(total).sum(dim=0)
    return _loss(log_norm, h, m), column * (m / n) - 1.0, log_norm


class Support(NamedTuple):
    """The entries of ``S`` that can carry mass, in coordinate form."""

    scaled: Tensor  # (nnz,) values S_ij
    rows: Tensor  # (nnz,) row indices i
    cols: Tensor  # (nnz,) column indices j
    shape: tuple[int, int]


def support(scaled: Tensor, h: Tensor) -> Support:
    """Entries within ``_WIDTH`` of their row's maximum of ``h_j - S_ij``."""
    parts = []
    for rows in row_blocks(scaled):
        z = h - scaled[rows]
        i, j = (z >= z.amax(dim=1, keepdim=True) - _WIDTH).nonzero(as_tuple=True)
        parts.append((scaled[rows][i, j], i + rows.start, j))
    values, i, j = (torch.cat(column) for column in zip(*parts, strict=True))
    return Support(values, i, j, tuple(scaled.shape))


def sparse_semi_dual(support: Support, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`dense_semi_dual` with the entries outside the support set to zero mass."""
    (n, m), rows = support.shape, support.rows
    z = h[support.cols] - support.scaled
    top = z.new_full((n,), -math.inf).scatter_reduce_(0, rows, z, "amax")
    weights = (z - top[rows]).clamp_(min=FLOOR).exp_()
    total = z.new_zeros(n).index_add_(0, rows, weights)
    log_norm = total.log() + top
    column = z.new_zeros(m).index_add_(0, support.cols, weights.div_(total[rows]))
    return _loss(log_norm, h, m), column * (m / n) - 1.0, log_norm


def _restricted(scaled: Tensor, h: Tensor) -> Objective:
    """The semi-dual on the support at ``h``, or on the full matrix when that is denser."""
    restricted = support(scaled, h)
    if restricted.rows.numel() > _DENSE * scaled.numel():
        return partial(dense_semi_dual, scaled)
    return partial(sparse_semi_dual, restricted)


# --------------------------------------------------------------------------- solver
def _evaluate(objective: Objective, h: Tensor) -> tuple[float, float]:
    """The loss at ``h`` and the L1 column violation ``|P^T 1 - b|_1`` of its plan."""
    loss, grad, _ = objective(h)
    return float(loss), float(grad.abs().sum()) / h.shape[0]


def _lbfgs(
    objective: Objective, h0: Tensor, max_iter: int, tol: float
) -> tuple[Tensor, int, float]:
    """L-BFGS from ``h0`` until the marginal error is at most ``tol``, ``max_iter`` iterations
    ran, or the loss stalls at round-off; returns the ``h`` with the smallest error seen, the
    iterations run and that error."""
    h = h0.clone().requires_grad_()
    optimizer = torch.optim.LBFGS(
        [h],
        history_size=_HISTORY,
        tolerance_grad=0.0,
        tolerance_change=0.0,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        loss, h.grad, _ = objective(h.detach())
        return loss

    def iterations() -> int:
        return optimizer.state[h].get("n_iter", 0)

    loss, best_error = _evaluate(objective, h.detach())
    best = h.detach().clone()
    while best_error > tol and iterations() < max_iter:
        optimizer.param_groups[0]["max_iter"] = min(_CHUNK, max_iter - iterations())
        optimizer.step(closure)
        # the line search may end off its last evaluation: measure where it stopped
        previous, (loss, error) = loss, _evaluate(objective, h.detach())
        if error < best_error:
            best, best_error = h.detach().clone(), error
        if previous - loss <= _STALL * abs(loss):
            break
    return best, iterations(), best_error


def solve_semi_dual(scaled: Tensor, max_iter: int, tol: float) -> tuple[Tensor, int, float]:
    """Rounds of L-BFGS on the support's semi-dual from ``h = 0``, each checked on the full
    matrix; returns ``h``, the L-BFGS iterations and the full L1 marginal error."""
    h, n_iter, error = scaled.new_zeros(scaled.shape[1]), 0, math.inf
    # one intra-op thread on CPU: torch.optim.LBFGS takes dozens of float64 dot products per
    # iteration, and with two threads each took 8 ms instead of 4 us (2-core VM, MKL)
    with intra_op_threads(1 if scaled.device.type == "cpu" else None):
        for _ in range(_ROUNDS):
            h, used, _ = _lbfgs(_restricted(scaled, h), h, max_iter - n_iter, tol)
            n_iter += used
            _, error = _evaluate(partial(dense_semi_dual, scaled), h)
            if error <= tol or n_iter >= max_iter:
                break
    return h, n_iter, error


def plan_cost(scaled: Tensor, cost: Tensor, h: Tensor) -> float:
    """``sum_ij P_ij M_ij`` for the plan of ``h`` (a dense pass; entries below ``e^FLOOR``
    relative to their row's largest are counted at ``e^FLOOR``, which no sum can see)."""
    _, _, log_norm = dense_semi_dual(scaled, h)
    total = 0.0
    for rows in row_blocks(scaled):
        plan = (h - scaled[rows] - log_norm[rows, None]).clamp_(min=FLOOR).exp_()
        total += float((plan * cost[rows]).sum())
    return total / scaled.shape[0]
