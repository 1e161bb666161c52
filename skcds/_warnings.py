"""The one way skcds code asks whether a sampler's weights came out valid."""

from __future__ import annotations

import contextlib
import warnings
from types import SimpleNamespace

from .exceptions import InvalidWeightsWarning, UnreliableWeightsWarning


@contextlib.contextmanager
def weight_check(*, ignore_unreliable: bool = False):
    """Record the warnings of the block instead of showing them (as
    ``warnings.catch_warnings(record=True)``, with every :class:`InvalidWeightsWarning`
    kept) and yield an object whose ``valid`` says, once the block has ended, whether none
    was raised (no fold detected); ``caught`` holds the recorded warnings.
    ``ignore_unreliable`` drops :class:`UnreliableWeightsWarning`, for callers that report
    k-hat themselves."""
    check = SimpleNamespace(valid=True, caught=[])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InvalidWeightsWarning)
        if ignore_unreliable:
            warnings.simplefilter("ignore", UnreliableWeightsWarning)
        yield check
    check.caught = caught
    check.valid = not any(issubclass(w.category, InvalidWeightsWarning) for w in caught)
