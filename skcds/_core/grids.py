"""Uniform time grids ``t_k = k T / N`` and their power-of-two coarsenings (SCDS jumps)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["uniform_grid", "coarsen"]


def uniform_grid(n_steps: int, terminal_time: float, *, dtype=None, device=None) -> Tensor:
    """The ``n_steps + 1`` points ``k T / N`` for ``k = 0..N`` (computed in float64, then cast)."""
    grid = torch.linspace(0.0, terminal_time, n_steps + 1, dtype=torch.float64)
    return grid.to(dtype=dtype or torch.get_default_dtype(), device=device)


def coarsen(grid: Tensor, n_steps: int) -> Tensor:
    """Every ``(N / n_steps)``-th point of ``grid``: ``n_steps`` steps on the same span."""
    fine = grid.shape[0] - 1
    if n_steps < 1 or fine % n_steps:
        raise ValueError(f"'n_steps' must divide the training grid of {fine} steps; got {n_steps}.")
    return grid[:: fine // n_steps]
