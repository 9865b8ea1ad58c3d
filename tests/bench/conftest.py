"""One PyTorch thread in these tests: the machine is shared, and an oversubscribed OpenMP pool at 2 threads is many
times slower than 1 thread (timings are measured by ``benchmarks/``, never here)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
