"""Target densities ``rho(x) = exp(-E(x))``; ``log_prob(x) = -E(x)``.

Built-in targets (definitions in ``method.md`` §5): :class:`GaussianMixture` (the 9-mode grid
and the 40-mode GMM), :class:`Funnel`, :class:`ManyWell` (MW54, MW52), :class:`FabManyWell`
(the 32-D ManyWell), :class:`LGCP` and :class:`LogisticRegressionPosterior`; families over a
context: :class:`TemperedManyWell` (ManyWell over its inverse temperature) and
:class:`BayesianLinearRegression` (a linear regression's posterior over its log prior scale),
both with exact ``log Z(c)`` and samples. A user's own
density is wrapped with :func:`from_log_prob` or :func:`from_energy`, a model with
constrained parameters (positive, interval, simplex, :data:`ordered`) with
:class:`Constrained`;
:class:`AffineTransformed` whitens a target by an affine change of variables;
:func:`laplace_approximation` and :func:`precondition` find one (the samplers'
``precondition`` parameter).
"""

from ._affine import AffineTransformed
from ._base import Energy, from_energy, from_log_prob
from ._conditional import Box, ConditionalEnergy, ContextDomain, ContextSampler, FiniteSet
from ._constrained import Constrained, ordered
from ._families import BayesianLinearRegression, TemperedManyWell
from ._funnel import Funnel
from ._gaussian_mixture import GaussianMixture
from ._lgcp import LGCP
from ._logistic import LogisticRegressionPosterior
from ._many_well import FabManyWell, ManyWell
from ._precondition import Preconditioning, laplace_approximation, precondition

__all__ = [
    "LGCP",
    "AffineTransformed",
    "BayesianLinearRegression",
    "Box",
    "ConditionalEnergy",
    "Constrained",
    "ContextDomain",
    "ContextSampler",
    "Energy",
    "FabManyWell",
    "FiniteSet",
    "Funnel",
    "GaussianMixture",
    "LogisticRegressionPosterior",
    "ManyWell",
    "Preconditioning",
    "TemperedManyWell",
    "from_energy",
    "from_log_prob",
    "laplace_approximation",
    "ordered",
    "precondition",
]
