"""Preconditioning: an affine change of variables, found before training, that brings a
target to the samplers' ``N(0, I)`` prior (a Laplace approximation at its mode).

The samplers start every trajectory at ``N(0, I)``; a posterior whose mass sits at
``beta = 26 +- 0.1`` is, to them, a needle far away, with scores of 1e6 at the start of every
path. Whitening by ``x = loc + A z`` (:class:`~skcds.energies.AffineTransformed`) changes only
the coordinates: samples are mapped back, log-weights and ``log Z`` are unchanged.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import optimize

from ..exceptions import EnergyError
from ._affine import AffineTransformed
from ._base import Energy
from ._guard import dynamics_view, is_model_failure, recording

__all__ = ["Preconditioning", "laplace_approximation", "precondition"]

MAX_DIM = 256  # 'auto' forms the d x d Hessian (d autograd passes) up to this dimension
_N_STARTS = 4  # L-BFGS starts besides the origin: two modes found means multimodal
_START_SD = 5.0  # the starts' spread: wider than the prior, to reach other modes
_N_CHECK = 256  # N(0, I) draws on which the whitened and the raw target are compared
# 'auto' leaves alone a target whose Laplace approximation is already near N(0, I): there
# is nothing to gain, and a multimodal target's Laplace fit sees one mode only (GMM9's
# centre component has sd 0.55 and lies at the origin; whitening would push the other
# eight modes out to 9 prior standard deviations)
_UNIT_LOC, _UNIT_SD = 3.0, (0.2, 5.0)


@dataclass(frozen=True)
class Preconditioning:
    """The change of variables a sampler trains in, and why it was chosen.

    Attributes
    ----------
    method : {'laplace', 'diagonal', 'none'}
        ``'laplace'``: ``x = loc + scale_tril @ z`` with ``loc`` the mode and
        ``scale_tril scale_tril^T`` the inverse Hessian of ``-log rho`` there;
        ``'diagonal'``: the same with the Hessian's diagonal only (its full form was not
        positive definite); ``'none'``: the sampler works in your coordinates.
    reason : str
        Why, in words (shown in warnings and in the sampler's ``repr`` of the choice).
    loc : ndarray of shape (dim,) or None
    scale_tril : ndarray of shape (dim, dim) or None
    """

    method: str
    reason: str
    loc: np.ndarray | None = None
    scale_tril: np.ndarray | None = None

    def apply(self, energy: Energy) -> Energy:
        """``energy`` in the preconditioned coordinates (itself for ``'none'``)."""
        if self.method == "none":
            return energy
        return AffineTransformed(energy, self.loc, self.scale_tril)

    def __repr__(self) -> str:
        return f"Preconditioning(method={self.method!r}, reason={self.reason!r})"


def _float64_log_prob(energy: Energy):
    """``log rho`` and its gradient in float64 on the energy's device, as numpy, for scipy,
    through the guarded view: ``-inf`` (and a zero gradient) where the model fails, so the
    optimiser backtracks instead of stopping the fit. The search's far points are skcds's
    own: their failures stay out of the fit's warning."""
    target = copy.deepcopy(energy).double()
    anchor = next((b for b in target.buffers()), None)
    device = anchor.device if anchor is not None else torch.device("cpu")
    guarded = dynamics_view(target)

    def value_and_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
        point = torch.as_tensor(x, dtype=torch.float64, device=device)[None]
        with torch.enable_grad(), recording(private=True):
            log_p = guarded._log_prob(point.requires_grad_(True))
            value = float(log_p[0].detach())
            if not math.isfinite(value):
                return -math.inf, np.zeros_like(x)
            # one pass where torch differentiates the model; its own score (e.g. finite
            # differences for a numpy log-density) otherwise
            if log_p.requires_grad:
                (grad,) = torch.autograd.grad(log_p.sum(), point)
            else:
                grad = guarded._grad_log_prob(point.detach())
        grad = grad[0].detach().cpu().numpy()
        return (value, grad) if np.isfinite(grad).all() else (-math.inf, np.zeros_like(x))

    return target, device, value_and_grad


def _find_mode(value_and_grad, start: np.ndarray) -> tuple[np.ndarray, float]:
    def objective(x):
        value, grad = value_and_grad(x)
        return (math.inf, grad) if value == -math.inf else (-value, -grad)

    result = optimize.minimize(
        objective, start, jac=True, method="L-BFGS-B", options={"maxiter": 2000}
    )
    return result.x, -float(result.fun)


def laplace_approximation(energy: Energy, start=None) -> Preconditioning:
    """The Laplace approximation of ``energy``: its mode (L-BFGS) and the Cholesky factor of
    the inverse Hessian of ``-log rho`` there.

    Parameters
    ----------
    energy : Energy
        A torch-differentiable target (its Hessian is formed: ``dim`` autograd passes).
    start : array-like of shape (dim,), optional
        Where L-BFGS starts; the origin by default.

    Returns
    -------
    Preconditioning
        ``method='laplace'``; ``'diagonal'`` when the Hessian is not positive definite but
        its diagonal is negative (a saddle or a ridge: per-coordinate scales only);
        ``'none'``, with the reason, when no finite mode or no curvature is found.

    Examples
    --------
    >>> import torch
    >>> from skcds.energies import from_log_prob, laplace_approximation
    >>> gauss = from_log_prob(lambda x: -0.5 * ((x - 30.0) / 0.01).square().sum(-1), dim=2)
    >>> fit = laplace_approximation(gauss)
    >>> fit.method, fit.loc.round(3).tolist(), fit.scale_tril.diagonal().round(5).tolist()
    ('laplace', [30.0, 30.0], [0.01, 0.01])
    """
    target, device, value_and_grad = _float64_log_prob(energy)
    start = np.zeros(energy.dim) if start is None else np.asarray(start, dtype=np.float64)
    mode, value = _find_mode(value_and_grad, start)
    return _laplace_at(target, device, mode, value)


def _laplace_at(target: Energy, device, mode: np.ndarray, value: float) -> Preconditioning:
    if not math.isfinite(value) or not np.isfinite(mode).all():
        return Preconditioning("none", "no finite mode was found (L-BFGS)")
    try:
        point = torch.as_tensor(mode, dtype=torch.float64, device=device)[None]
        hessian = -target._hessian_log_prob(point)[0].detach().cpu().numpy()
    except Exception as error:  # e.g. a numpy log-density: no Hessian
        if not (isinstance(error, EnergyError) or is_model_failure(error)):
            raise
        return Preconditioning("none", f"the Hessian at the mode is not available ({error})")
    hessian = (hessian + hessian.T) / 2
    if not np.isfinite(hessian).all():
        return Preconditioning("none", "the Hessian at the mode is not finite")
    try:
        covariance = np.linalg.inv(hessian)
        tril = np.linalg.cholesky((covariance + covariance.T) / 2)
        if np.isfinite(tril).all() and (np.diag(tril) > 0).all():
            return Preconditioning("laplace", "Laplace approximation at the mode", mode, tril)
    except np.linalg.LinAlgError:
        pass
    curvature = np.diag(hessian)
    if (curvature > 0).all():
        sd = 1.0 / np.sqrt(curvature)
        return Preconditioning(
            "diagonal", "the Hessian at the mode is not positive definite", mode, np.diag(sd)
        )
    return Preconditioning("none", "the log-density has no curvature at its mode")


def _has_hessian(target: Energy, device) -> bool:
    """Whether torch can form the Hessian of ``log rho`` (not for a numpy log-density with
    finite-difference gradients), tried at the origin before any search."""
    try:
        target._hessian_log_prob(torch.zeros(1, target.dim, dtype=torch.float64, device=device))
    except EnergyError as error:
        return "Hessian" not in str(error)  # a malformed output is raised again later
    except Exception as error:
        if is_model_failure(error):
            return True  # the origin may be outside the support: decided at the mode
        if isinstance(error, RuntimeError):
            return False  # torch cannot differentiate it (e.g. a detached log-density)
        raise
    return True


def _elbo(energy: Energy, z: torch.Tensor) -> float:
    """``E[log rho(z) - log N(z; 0, I)]`` over ``z`` (``-inf`` if the energy fails there)."""
    with torch.no_grad(), recording(private=True):
        log_rho = dynamics_view(energy, score=False)._log_prob(z)
    log_normal = -0.5 * z.square().sum(-1) - 0.5 * z.shape[1] * math.log(2 * math.pi)
    values = log_rho - log_normal
    return float(values.mean()) if bool(torch.isfinite(values).all()) else -math.inf


def _another_mode(value_and_grad, mode: np.ndarray, point: np.ndarray, tril) -> bool:
    """Whether L-BFGS's end ``point`` is a second mode: over one Laplace standard deviation
    from ``mode`` and stationary (a start that stopped short of the mode, e.g. on a steep
    flank where the optimiser's line search gave up, is not)."""
    if np.linalg.norm(np.linalg.solve(tril, point - mode)) <= 1.0:
        return False
    value, grad = value_and_grad(point)
    return math.isfinite(value) and np.linalg.norm(tril.T @ grad) < 0.1


def precondition(energy: Energy, method: str = "auto", seed: int = 0) -> Preconditioning:
    """Choose the change of variables a sampler trains in.

    Parameters
    ----------
    energy : Energy
        The target, in the user's coordinates.
    method : {'auto', 'laplace', 'none'}, default='auto'
        ``'laplace'``: :func:`laplace_approximation` from the origin. ``'auto'``: the same,
        from the origin and from 4 random starts ``N(0, 5^2 I)``, kept only if the target
        is unimodal to L-BFGS (every start reaches the same mode), not already near
        ``N(0, I)``
        (mode within 3 of the origin and every Laplace standard deviation in [0.2, 5]),
        and the whitened target is closer to ``N(0, I)`` than the raw one (a greater
        ``E[log rho - log N]`` on 256 standard normal draws); otherwise ``'none'``, with
        the reason. Dimensions above 256 get ``'none'`` (the Hessian would be too costly).
    seed : int, default=0
        Seeds the random starts and the check's draws.

    Returns
    -------
    Preconditioning
    """
    if method == "none":
        return Preconditioning("none", "precondition='none'")
    if method == "laplace":
        return laplace_approximation(energy)
    if energy.dim > MAX_DIM:
        return Preconditioning("none", f"dimension {energy.dim} > {MAX_DIM}: no Hessian formed")
    target, device, value_and_grad = _float64_log_prob(energy)
    if not _has_hessian(target, device):
        return Preconditioning("none", "the log-density has no torch Hessian")
    generator = np.random.default_rng(seed)
    spread = _START_SD * generator.standard_normal((_N_STARTS, energy.dim))
    starts = [np.zeros(energy.dim), *spread]
    found = [_find_mode(value_and_grad, start) for start in starts]
    best_mode, best_value = max(found, key=lambda mode_value: mode_value[1])
    fit = _laplace_at(target, device, best_mode, best_value)
    if fit.method == "none":
        return fit
    others = (point for point, value in found if math.isfinite(value))
    if any(_another_mode(value_and_grad, fit.loc, p, fit.scale_tril) for p in others):
        return Preconditioning("none", "L-BFGS found several modes: left in your coordinates")
    sd = np.sqrt((fit.scale_tril**2).sum(1))
    low, high = _UNIT_SD
    if np.abs(fit.loc).max() <= _UNIT_LOC and sd.min() >= low and sd.max() <= high:
        return Preconditioning("none", "the target is already near N(0, I)")
    z = torch.as_tensor(np.random.default_rng(seed + 1).standard_normal((_N_CHECK, energy.dim)))
    z = z.to(device)
    if _elbo(fit.apply(target), z) <= _elbo(target, z):
        return Preconditioning("none", "the Laplace approximation fits worse than N(0, I)")
    return fit
