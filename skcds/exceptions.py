"""Exceptions and warnings raised by skcds.

The hierarchy extends scikit-learn's: :class:`NotFittedError` is re-exported so that
``except sklearn.exceptions.NotFittedError`` keeps working.
"""

from sklearn.exceptions import ConvergenceWarning, NotFittedError

__all__ = [
    "ConvergenceWarning",
    "EnergyError",
    "IncompatibleModelError",
    "NonFiniteWarning",
    "NotFittedError",
    "SkcdsError",
]


class SkcdsError(Exception):
    """Base class of every error raised by skcds."""


class EnergyError(SkcdsError, ValueError):
    """An energy returned output of the wrong shape, dtype or with non-finite values."""


class IncompatibleModelError(SkcdsError, ValueError):
    """A persisted model was written by an incompatible skcds version or is not a skcds file."""


class NonFiniteWarning(UserWarning):
    """Training met non-finite losses or gradients and skipped the affected updates."""
