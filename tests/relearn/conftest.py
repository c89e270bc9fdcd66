"""Torch settings for the relearn tests.

One torch thread: the test machine is shared, and two spinning OpenMP threads against other
processes made 500 small SGD steps 30 times slower (0.6 s against 18 s). And torch's one-off
initialisation of its first optimiser step (about 2 s here) is paid once per session, before
the tests, instead of inside whichever test trains first.
"""

import pytest


@pytest.fixture(scope="session", autouse=True)
def torch_warm(one_torch_thread):
    import torch

    net = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(torch.zeros(1, 2)).sum().backward()
    opt.step()


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
