"""pytest fixtures and hooks shared by all tests.

``make test`` runs the suite on two pytest-xdist workers, a test file to a worker (``--dist loadfile``: a module's
fixtures are built once). Each worker gets one PyTorch thread, and ``OMP_NUM_THREADS=1`` for the programs its tests
start: two workers on two cores, each with a pool of two threads, would oversubscribe the machine.
"""

import os

import pytest
import torch


def pytest_configure(config):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)
        os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
