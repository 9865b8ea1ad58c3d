"""This machine's FP32 compute bound: the sgemm rate ``torch.mm`` reaches, and the latency it implies for a model.

The bound for a model is ``2 * MACs / sgemm FLOP/s``: the time the model's arithmetic would take if every
multiply-add ran at large-matrix-multiply speed. Real convolutional networks (depthwise layers, small tensors,
memory traffic) rarely get near it; ``measured / bound`` says how far off a runtime is.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["sgemm_callable", "sgemm_flops", "bound_ms"]


def sgemm_callable(n: int = 1024) -> tuple[Callable[[], torch.Tensor], float]:
    """A zero-argument callable running one ``n x n @ n x n`` float32 ``torch.mm`` and its FLOP count (2 n^3).

    Time it together with the models (``interleaved_latency``) so it sees the same machine load and thread count.
    """
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g)
    b = torch.randn(n, n, generator=g)
    out = torch.empty(n, n)

    def run() -> torch.Tensor:
        return torch.mm(a, b, out=out)

    return run, 2.0 * n**3


def sgemm_flops(ms_per_call: float, flops_per_call: float) -> float:
    """FLOP/s from a timed sgemm call."""
    return flops_per_call / (ms_per_call * 1e-3)


def bound_ms(macs: float, flops_per_s: float, batch: int = 1) -> float:
    """The compute-bound latency in ms of ``batch`` images of a model with ``macs`` MACs per image."""
    return 2.0 * macs * batch / flops_per_s * 1e3
