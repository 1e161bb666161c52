"""skcds: consistent diffusion samplers for unnormalized densities, as scikit-learn estimators."""

from ._diagnostics import Diagnosis, StepDiagnosis, plot_training
from ._estimators._classifier import BayesianLogisticRegression
from ._estimators._diffusion import DiffusionSampler
from ._estimators._distiller import ConsistentDistiller
from ._estimators._self_consistent import SelfConsistentSampler
from ._mcmc import refine
from ._model_selection import SamplerSearch, search_sampler
from ._persistence import load, save
from ._version import __version__

__all__ = [
    "BayesianLogisticRegression",
    "ConsistentDistiller",
    "Diagnosis",
    "DiffusionSampler",
    "SamplerSearch",
    "SelfConsistentSampler",
    "StepDiagnosis",
    "__version__",
    "load",
    "plot_training",
    "refine",
    "save",
    "search_sampler",
]
