"""OpenVINO on the CPU for exported ONNX models: compile once, run tensors.

OpenVINO reads the ``.onnx`` file written by ``repvit export`` (or :func:`repvit.deploy.onnx_export.export_onnx_bytes`)
directly; no conversion step. :func:`compile_onnx` compiles it for the CPU plugin with pinned threads, one stream, the
latency hint and f32 inference precision: on CPUs with bf16 support (AVX512-BF16, AMX) OpenVINO would otherwise run
in bf16 by default, which is neither FP32 accuracy nor a fair comparison with FP32 ONNX Runtime.

Telemetry: ``import openvino`` sends a usage event to Google Analytics (``openvino.tools.ovc``, through
``openvino_telemetry``) and writes ``~/intel/openvino_ga_cid`` and ``~/intel/stats``, unless the user has opted out
with ``opt_in_out --opt_out``. :func:`import_openvino` imports it with ``CI=true`` set for the duration of the import,
which ``openvino_telemetry`` treats as declined consent: nothing is sent or written. The variable is restored
afterwards. Import OpenVINO through this module, not directly, when that matters.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from ._optional import require

__all__ = ["import_openvino", "cpu_config", "compile_onnx", "run"]


@contextmanager
def _telemetry_declined() -> Iterator[None]:
    """``CI=true`` while the block runs: ``openvino_telemetry`` then declines consent (``disable_in_ci``)."""
    old = os.environ.get("CI")
    os.environ["CI"] = "true"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("CI", None)
        else:
            os.environ["CI"] = old


def import_openvino(purpose: str = "running models with OpenVINO") -> ModuleType:
    """Import ``openvino`` without its import-time telemetry, or raise an ImportError naming the pip extra.

    Args:
        purpose: what OpenVINO is needed for, used in the error message.
    """
    module = sys.modules.get("openvino")
    if module is not None:
        return module
    with _telemetry_declined():
        return require("openvino", purpose)


def cpu_config(threads: int = 2) -> dict[str, Any]:
    """The CPU plugin properties :func:`compile_onnx` uses: ``threads`` inference threads, latency hint, one
    stream, f32 precision (no bf16 even where the CPU supports it)."""
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}.")
    return {
        "INFERENCE_NUM_THREADS": int(threads),
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,
        "INFERENCE_PRECISION_HINT": "f32",
    }


def compile_onnx(path_or_bytes: str | Path | bytes, threads: int = 2):
    """Read an ONNX model and compile it for OpenVINO's CPU plugin (see :func:`cpu_config`).

    A model exported with a fixed input shape compiles for that shape; one with a dynamic batch axis (the default of
    ``repvit export``) accepts any batch, at some cost in latency.

    Args:
        path_or_bytes: the ``.onnx`` file or its serialized bytes.
        threads: inference threads (``INFERENCE_NUM_THREADS``).

    Returns:
        The ``openvino.CompiledModel``; run it with :func:`run`, or create an infer request for repeated calls.

    Raises:
        ImportError: openvino is not installed (names the pip extra).
    """
    ov = import_openvino("compiling ONNX models with OpenVINO")
    config = cpu_config(threads)
    core = ov.Core()
    src = path_or_bytes if isinstance(path_or_bytes, bytes) else str(path_or_bytes)
    return core.compile_model(core.read_model(src), "CPU", config)


def run(compiled, x: torch.Tensor) -> list[torch.Tensor]:
    """Run a compiled OpenVINO model on one tensor and return its outputs as tensors, in output order."""
    request = compiled.create_infer_request()
    result = request.infer({0: x.detach().cpu().float().contiguous().numpy()})
    return [torch.from_numpy(result[out]) for out in compiled.outputs]
