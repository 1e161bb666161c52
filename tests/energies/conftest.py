"""Fixtures for the energy tests."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="package")
def single_torch_thread():
    """Run the energy tests on one intra-op thread, then restore the previous setting.

    Their tensors are tiny: on a busy 2-core machine, waking a second BLAS thread for a
    5 x 40 matmul measured ~10 ms instead of ~4 us, which tripled this folder's run time.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
