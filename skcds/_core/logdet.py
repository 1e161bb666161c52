"""Stochastic Lanczos quadrature (SLQ) for ``log |det J|`` of a batch of Jacobians known only
through products, for dimensions where forming ``J`` and its determinant is too costly.

``log |det J| = tr log(J^T J) / 2``. For a Rademacher probe ``z``, ``z^T log(B) z`` with
``B = J^T J`` is approximated by ``m``-point Gauss quadrature from ``m`` Lanczos steps on ``B``
started at ``z / |z|`` (Ubaru, Chen and Saad, 2017): ``|z|^2 sum_i tau_i^2 log theta_i`` with
the Ritz values ``theta_i`` and the first components ``tau_i`` of the eigenvectors of the
Lanczos tridiagonal matrix. Averaging over probes estimates the trace (Hutchinson).

Bias and variance: quadrature is exact for polynomials of degree ``2m - 1``, so the
per-probe error decays geometrically in ``m`` at a rate set by the condition number of ``B``;
it vanishes when ``m >= d`` (full re-orthogonalisation keeps the Krylov basis exact). The probe
average is unbiased for the quadrature value, with variance ``O(|log B|_F^2 / n_probes)``.
Estimated log-densities are therefore noisy, and ``exp`` of a noisy log-weight is biased
upward (Jensen): ELBOs stay unbiased up to the quadrature error, importance-sampling
estimates of ``Z`` do not.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from . import distributed

__all__ = ["jacobian_log_abs_det", "map_log_abs_det", "slq_log_abs_det"]

_TINY = 1e-30


def _lanczos(gram: Callable[[Tensor], Tensor], start: Tensor, n_iter: int):
    """Batched Lanczos on ``gram`` from unit rows ``start``: ``(alpha, beta)`` of shape
    ``(n, m)`` and ``(n, m - 1)``, with full re-orthogonalisation."""
    basis, alphas, betas = [start], [], []
    q = start
    for i in range(n_iter):
        w = gram(q)
        alpha = (w * q).sum(-1)
        stacked = torch.stack(basis, 1)  # (n, i + 1, d)
        w = w - torch.einsum("nkd,nk->nd", stacked, torch.einsum("nkd,nd->nk", stacked, w))
        alphas.append(alpha)
        if i + 1 == n_iter:
            break
        beta = w.norm(dim=-1).clamp(min=_TINY)
        betas.append(beta)
        q = w / beta[:, None]
        basis.append(q)
    return torch.stack(alphas, 1), torch.stack(betas, 1) if betas else start[:, :0]


def slq_log_abs_det(
    jvp: Callable[[Tensor], Tensor],
    vjp: Callable[[Tensor], Tensor],
    shape: tuple[int, int],
    *,
    n_probes: int = 8,
    n_iter: int = 30,
    generator: torch.Generator | None = None,
    dtype=None,
    device=None,
) -> Tensor:
    """Estimate ``log |det J_i|`` for a batch of ``n`` Jacobians ``J_i`` of size ``d x d``.

    Parameters
    ----------
    jvp, vjp : callable
        ``v -> J v`` and ``u -> J^T u`` for rows of shape ``(n, d)``, one Jacobian per row.
    shape : (n, d)
        Batch size and dimension.
    n_probes : int, default=8
        Rademacher probes per Jacobian.
    n_iter : int, default=30
        Lanczos steps per probe (capped at ``d``, where the quadrature is exact).
    generator : torch.Generator, optional
        Source of the probes.

    Returns
    -------
    Tensor of shape (n,)
    """
    n, d = shape
    m = min(n_iter, d)
    total = torch.zeros(n, dtype=dtype, device=device)
    for _ in range(n_probes):
        signs = distributed.shard(
            lambda m: torch.randint(0, 2, (m, d), generator=generator, device=device), n
        )
        z = signs.to(dtype) * 2 - 1
        alpha, beta = _lanczos(lambda v: vjp(jvp(v)), z / d**0.5, m)
        tridiagonal = (
            torch.diag_embed(alpha) + torch.diag_embed(beta, 1) + torch.diag_embed(beta, -1)
        )
        theta, vectors = torch.linalg.eigh(tridiagonal)
        quadrature = (vectors[:, 0, :].square() * theta.clamp(min=_TINY).log()).sum(-1)
        total = total + d * quadrature
    return 0.5 * total / n_probes


def jacobian_log_abs_det(jac: Tensor) -> tuple[Tensor, float]:
    """``(log |det J_i|, reversed)`` for a batch of Jacobians of shape ``(n, d, d)``.

    ``reversed`` is the fraction of the batch whose determinant has the minority sign: an
    injective map has one orientation everywhere, so a nonzero value proves that the map
    folds and that a change-of-variables density built from it is not valid.
    """
    sign, value = torch.linalg.slogdet(jac)
    negative = float((sign < 0).double().mean())
    return value, min(negative, 1.0 - negative)


def map_log_abs_det(
    fn: Callable[[Tensor], Tensor],
    x: Tensor,
    *,
    log_det: str = "exact",
    generator: torch.Generator | None = None,
) -> tuple[Tensor, float]:
    """``(log |det d fn / dx|, reversed)`` at each row of ``x`` for a row-wise map ``fn``.

    Parameters
    ----------
    fn : callable
        Maps ``(n, d)`` to ``(n, d)``, each output row depending on its input row only, and is
        composable with :mod:`torch.func`.
    x : Tensor of shape (n, d)
        Points.
    log_det : {'exact', 'stochastic'}, default='exact'
        Batched Jacobians and :func:`jacobian_log_abs_det` (with the fold check), or
        :func:`slq_log_abs_det` from products (``reversed`` is then 0: it sees ``|det J|``
        only).
    generator : torch.Generator, optional
        Source of the probes of ``'stochastic'``.

    Returns
    -------
    value : Tensor of shape (n,)
    reversed : float
    """
    if log_det == "exact":
        jac = torch.func.vmap(torch.func.jacrev(lambda row: fn(row[None])[0]))(x)
        return jacobian_log_abs_det(jac)
    _, pullback = torch.func.vjp(fn, x)
    transpose = lambda u: pullback(u)[0]  # noqa: E731  u -> J^T u, linear in u
    # J v as the vjp of the linear map u -> J^T u (double-vjp: torch.func.jvp's decompositions
    # go through the deprecated torch.jit.script)
    _, pull_transpose = torch.func.vjp(transpose, torch.zeros_like(x))
    value = slq_log_abs_det(
        lambda v: pull_transpose(v)[0],
        transpose,
        tuple(x.shape),
        generator=generator,
        dtype=x.dtype,
        device=x.device,
    )
    return value.detach(), 0.0
