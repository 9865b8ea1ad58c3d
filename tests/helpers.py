"""Shared test helpers (import as `from tests.helpers import ...`)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn


@torch.no_grad()
def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm random running statistics and affine parameters.

    With default statistics (mean 0, var 1, weight 1, bias 0) a wrong fuse can still pass, so every fuse test uses
    this first.
    """
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            dt = m.running_mean.dtype
            m.running_mean.copy_((torch.randn(n, generator=g) * 0.5).to(dt))
            m.running_var.copy_((torch.rand(n, generator=g) * 1.5 + 0.5).to(dt))
            m.weight.copy_((torch.randn(n, generator=g) * 0.5 + 1.0).to(dt))
            m.bias.copy_((torch.randn(n, generator=g) * 0.3).to(dt))
    return model


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|."""
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One PyTorch thread for a test directory that imports this fixture into its conftest.

    The machine is shared, and an oversubscribed OpenMP pool at 2 threads is many times slower than 1 thread
    (timings are measured by ``benchmarks/``, never in tests).
    """
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def require_openvino() -> None:
    """Skip the calling test unless openvino imports (through ``repvit``, so the import sends no telemetry).

    ``pytest.importorskip("openvino")`` would import it directly, which sends OpenVINO's usage event.
    """
    from repvit.deploy.openvino_runtime import import_openvino

    try:
        import_openvino()
    except ImportError:
        pytest.skip("needs openvino: pip install 'repvit-pytorch[openvino]'")
