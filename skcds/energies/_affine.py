"""An energy seen through an affine change of variables (e.g. a Laplace whitening)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from torch import Tensor

from ._base import Energy
from ._utils import as_float64_array, to_buffer

__all__ = ["AffineTransformed"]


class AffineTransformed(Energy):
    r"""The density of ``z`` when ``x = loc + scale_tril @ z`` has density ``base``.

    .. math::

        \log \rho_z(z) = \log \rho(\mathrm{loc} + A z) + \log |\det A|,

    so :math:`\log Z` is unchanged. With ``loc`` a mode and ``A A^T`` the inverse Hessian
    there (a Laplace approximation), a unimodal target becomes close to ``N(0, I)``: the
    prior of the diffusion samplers, which then have little left to learn.

    Parameters
    ----------
    base : Energy
        The target in ``x``.
    loc : array-like of shape (dim,)
    scale_tril : array-like of shape (dim, dim)
        Lower-triangular with a positive diagonal.

    Examples
    --------
    >>> import torch
    >>> from skcds.energies import AffineTransformed, from_log_prob
    >>> gauss = from_log_prob(lambda x: -0.5 * ((x - 3.0) / 2.0).square().sum(-1), dim=1)
    >>> z = AffineTransformed(gauss, loc=[3.0], scale_tril=[[2.0]])
    >>> z.log_prob(torch.tensor([[0.0], [1.0]]))  # N(0, 1) up to log 2
    tensor([0.6931, 0.1931])
    """

    def __init__(self, base: Energy, loc: ArrayLike, scale_tril: ArrayLike) -> None:
        super().__init__()
        self.base, self.dim = base, base.dim
        loc = as_float64_array(loc, "loc", 1)
        tril = as_float64_array(scale_tril, "scale_tril", 2)
        if loc.shape != (self.dim,) or tril.shape != (self.dim, self.dim):
            raise ValueError(
                f"'loc' must have shape ({self.dim},) and 'scale_tril' ({self.dim}, {self.dim}) "
                f"for a {self.dim}-dimensional energy; got {loc.shape} and {tril.shape}."
            )
        diagonal = np.diag(tril)
        if not np.allclose(tril, np.tril(tril)) or not (diagonal > 0).all():
            raise ValueError("'scale_tril' must be lower-triangular with a positive diagonal.")
        self.register_buffer("_loc", to_buffer(loc))
        self.register_buffer("_tril", to_buffer(tril))
        self._log_det = float(np.log(diagonal).sum())

    def _affine(self, z: Tensor) -> Tensor:
        return self._loc.to(z) + z @ self._tril.to(z).T

    def transform(self, z: Tensor) -> Tensor:
        """``base.transform(loc + scale_tril @ z)`` for a batch ``z`` of shape ``(n, dim)``:
        the point in ``base``'s coordinates (and on to its model's, if ``base`` is itself a
        change of variables)."""
        return self.base.transform(self._affine(z))

    def _log_prob(self, z: Tensor) -> Tensor:
        return self.base._log_prob(self._affine(z)) + self._log_det

    def _grad_log_prob(self, z: Tensor) -> Tensor:
        return self.base._grad_log_prob(self._affine(z)) @ self._tril.to(z)

    def _hessian_log_prob(self, z: Tensor) -> Tensor:
        a = self._tril.to(z)
        return a.T @ self.base._hessian_log_prob(self._affine(z)) @ a

    def extra_repr(self) -> str:
        return f"dim={self.dim}, base={type(self.base).__name__}"
