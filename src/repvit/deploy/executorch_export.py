"""ExecuTorch export (``.pte`` with the XNNPACK delegate), FP32 or INT8, and running ``.pte`` files.

The fused model goes through ``torch.export`` and ``to_edge_transform_and_lower(..., partitioner=
[XnnpackPartitioner()])``; every operator XNNPACK supports is delegated to it, and the rest runs on ExecuTorch's
portable kernels. RepViT is delegated in one call when its head pools with ``mean((2, 3), keepdim=True)``
(XNNPACK takes no other spatial mean); :func:`delegate_summary` says how many calls a program makes.

INT8 uses PyTorch 2 export quantization (PT2E, ``torchao.quantization.pt2e``) with ExecuTorch's
``XNNPACKQuantizer``: symmetric per-channel INT8 weights, INT8 activations with static scales, calibrated on real
images (like ``repvit export --int8`` for ONNX). The quantized graph is lowered to XNNPACK the same way.

ExecuTorch's thread pool is process-wide: :func:`set_threads` resets it for every program in the process.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from repvit.runtime import require

__all__ = ["export_executorch_bytes", "delegate_summary", "set_threads", "load_method", "run_method"]

_LOG = logging.getLogger(__name__)


def _import_executorch(purpose: str) -> None:
    with warnings.catch_warnings():  # its import warns that the Python API is experimental
        warnings.simplefilter("ignore")
        require("executorch", purpose)
        require("executorch.exir", purpose)


def _calibrate(net: nn.Module, example: torch.Tensor, calib: Sequence[np.ndarray]) -> nn.Module:
    """PT2E: export with a dynamic batch, insert observers (XNNPACKQuantizer, per-channel), run ``calib``, convert."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    batch = torch.export.Dim("batch", min=1, max=4096)
    traced_with = example if example.shape[0] > 1 else example.expand(2, *example.shape[1:]).contiguous()
    # (torch.export specializes a size-1 dimension, so the dynamic batch is traced with two images)
    gm = torch.export.export(net, (traced_with,), dynamic_shapes=({0: batch},)).module()
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    gm = prepare_pt2e(gm, quantizer)
    with torch.no_grad():
        for b in calib:
            gm(torch.as_tensor(np.ascontiguousarray(b), dtype=torch.float32))
    return convert_pt2e(gm)


def export_executorch_bytes(
    net: nn.Module,
    example: torch.Tensor,
    int8: bool = False,
    calib: Sequence[np.ndarray] | None = None,
) -> tuple[bytes, dict[str, Any]]:
    """Lower ``net`` to an ExecuTorch program with the XNNPACK delegate and return the ``.pte`` bytes.

    Args:
        net: the (fused, eval) model; its input shape is fixed to ``example``'s.
        example: an input tensor (N, C, H, W).
        int8: quantize with PT2E + ``XNNPACKQuantizer`` (per-channel) before lowering.
        calib: calibration batches (float32 arrays, preprocessed like the model input); needed with ``int8``.

    Returns:
        ``(pte_bytes, info)``; ``info`` holds :func:`delegate_summary` of the lowered program.

    Raises:
        ImportError: executorch is not installed (names the pip extra).
        ValueError: ``int8`` without calibration data.
    """
    _import_executorch("ExecuTorch export")
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    if int8 and not calib:
        raise ValueError("ExecuTorch INT8 needs calibration data: --calib FOLDER (images) or --calib digits.")
    net = net.eval()
    example = example.detach().float().cpu()
    with torch.no_grad():
        model = _calibrate(net, example, calib) if int8 else net
        ep = torch.export.export(model, (example,))
    program = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch()
    info = delegate_summary(program)
    if info["delegate_calls"] != 1:
        _LOG.warning("the ExecuTorch program makes %d XNNPACK delegate calls (ops outside the delegate: %s)",
                     info["delegate_calls"], ", ".join(info["portable_ops"]) or "none")
    return program.buffer, info


def delegate_summary(program) -> dict[str, Any]:
    """Count the XNNPACK delegate calls of an ``ExecutorchProgramManager`` and list the ops left outside it."""
    gm = program.exported_program().graph_module
    calls, others = 0, []
    for node in gm.graph.nodes:
        if node.op != "call_function":
            continue
        name = getattr(node.target, "__name__", str(node.target))
        if "executorch_call_delegate" in name:
            calls += 1
        elif name not in ("getitem", "alloc") and "alloc" not in name:
            others.append(str(node.target))
    return {"delegate_calls": calls, "portable_ops": sorted(set(others))}


def set_threads(threads: int) -> None:
    """Reset ExecuTorch's process-wide thread pool (used by XNNPACK) to ``threads`` threads.

    Call it before loading programs; it affects every ExecuTorch program in this process.
    """
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}.")
    _import_executorch("running ExecuTorch programs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from executorch.extension.pybindings import portable_lib

    portable_lib._unsafe_reset_threadpool(int(threads))


def load_method(src: str | Path | bytes, threads: int | None = None, method: str = "forward"):
    """Load a ``.pte`` file (or its bytes) with ``executorch.runtime`` and return its ``method``.

    Args:
        src: the ``.pte`` path or bytes.
        threads: reset the process-wide thread pool to this many threads first (None keeps it).
        method: the method name (``forward`` for ``repvit export``).
    """
    _import_executorch("running ExecuTorch programs")
    if threads is not None:
        set_threads(threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from executorch.runtime import Runtime

    program = Runtime.get().load_program(src if isinstance(src, bytes) else str(src))
    loaded = program.load_method(method)
    if loaded is None:
        raise ValueError(f"the ExecuTorch program has no method {method!r}; it has {sorted(program.method_names)}.")
    # the Program holds the .pte bytes the method runs from, and a Method does not reference its Program: keep it
    # alive with the method, or a method loaded from bytes crashes once the caller drops them
    loaded._repvit_program = program
    return loaded


def run_method(method, x: torch.Tensor) -> list[torch.Tensor]:
    """Run a loaded ExecuTorch method on one input and return its outputs as tensors."""
    return [torch.as_tensor(o) for o in method.execute([x.detach().float().contiguous()])]
