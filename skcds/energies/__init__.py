"""Target densities ``rho(x) = exp(-E(x))``; ``log_prob(x) = -E(x)``."""

from ._base import Energy, from_energy, from_log_prob

__all__ = ["Energy", "from_energy", "from_log_prob"]
