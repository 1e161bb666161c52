"""skcds: consistent diffusion samplers for unnormalized densities, as scikit-learn estimators."""

from ._version import __version__

__all__ = ["__version__"]
