"""Shared settings for the backbone tests.

One torch thread while these tests run: the CI / dev machine has 2 cores shared with
other jobs, where two OpenMP threads spin-wait against the other processes and make
every forward pass several times slower. Results do not depend on the thread count
beyond float summation order (the tests use tolerances where that matters).
"""

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
