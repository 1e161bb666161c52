"""skcds: consistent diffusion samplers for unnormalized densities, as scikit-learn estimators."""

from ._estimators._diffusion import DiffusionSampler
from ._version import __version__

__all__ = ["DiffusionSampler", "__version__"]
