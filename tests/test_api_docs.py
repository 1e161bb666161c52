"""Every public class and function has an entry in the API reference (docs/api.rst)."""

import re
from pathlib import Path

import pytest

import skcds
import skcds.bench
import skcds.callbacks
import skcds.datasets
import skcds.distributed
import skcds.energies
import skcds.exceptions
import skcds.metrics

API = Path(__file__).parents[1] / "docs" / "api.rst"
MODULES = [
    skcds,
    skcds.callbacks,
    skcds.energies,
    skcds.metrics,
    skcds.datasets,
    skcds.distributed,
    skcds.exceptions,
    skcds.bench,
]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_every_public_callable_is_in_the_api_reference(module):
    listed = set(re.findall(r"^   (\w+)$", API.read_text(), re.MULTILINE))
    public = [name for name in module.__all__ if callable(getattr(module, name))]
    assert [name for name in public if name not in listed] == []
