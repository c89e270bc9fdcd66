"""Fixtures shared by several test folders."""

import pytest


@pytest.fixture(scope="session")
def backbone():
    """The real EfficientNet-Lite0 on the CPU, run with one intra-op thread.

    One thread because the test machine is shared: two spinning OpenMP threads against other
    processes made each forward+backward several times slower.
    """
    import torch

    from backbones import load_backbone

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield load_backbone("efficientnet_lite0", device="cpu")
    finally:
        torch.set_num_threads(threads)
