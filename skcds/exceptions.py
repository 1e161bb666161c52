"""Exceptions and warnings raised by skcds.

The hierarchy extends scikit-learn's: :class:`NotFittedError` is re-exported so that
``except sklearn.exceptions.NotFittedError`` keeps working.
"""

from sklearn.exceptions import ConvergenceWarning, NotFittedError

__all__ = [
    "ConvergenceWarning",
    "EnergyError",
    "ImproperDensityWarning",
    "IncompatibleModelError",
    "InvalidWeightsWarning",
    "ModelFailureWarning",
    "NonFiniteWarning",
    "NotFittedError",
    "SkcdsError",
    "UnreliableWeightsWarning",
]


class SkcdsError(Exception):
    """Base class of every error raised by skcds."""


class EnergyError(SkcdsError, ValueError):
    """An energy returned output of the wrong shape, dtype or with non-finite values."""


class IncompatibleModelError(SkcdsError, ValueError):
    """A persisted model was written by an incompatible skcds version or is not a skcds file."""


class NonFiniteWarning(UserWarning):
    """Training met non-finite losses or gradients and skipped the affected updates."""


class ModelFailureWarning(UserWarning):
    """The user's model raised (``ValueError``, ``RuntimeError``, ``ArithmeticError``) or
    returned NaN or ``+inf`` at some points: skcds gave them zero density and used the rest
    of each batch unchanged. Issued once per call of ``fit``, ``sample`` and the like."""


class ImproperDensityWarning(UserWarning):
    """The energy does not decay far from the origin, so its density may not be normalizable
    (``Z`` infinite): a sampler cannot converge to it."""


class InvalidWeightsWarning(UserWarning):
    """Importance log-weights were returned that are not valid for the sampler run.

    A deterministic ``k``-step sampler's change-of-variables density is exact only if its map
    is injective. An injective map has one orientation everywhere, so a Jacobian determinant
    that is positive at some samples and negative at others proves the map folds: those
    weights omit the other preimages, the ELBO can exceed ``log Z`` and the importance
    estimate of ``Z`` is biased.
    """


class UnreliableWeightsWarning(UserWarning):
    """Valid importance weights whose tail is too heavy for their estimates to be trusted:
    the PSIS Pareto shape ``khat`` exceeds ``min(1 - 1/log10(n), 0.7)`` (Vehtari et al.,
    2024), so ``log Z`` and weighted means can be far off whatever their standard errors say.
    """
