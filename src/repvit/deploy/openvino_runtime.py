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

from repvit.runtime import require

__all__ = ["import_openvino", "cpu_config", "compile_onnx", "compile_model", "read_onnx", "quantize_nncf", "run",
           "PRECISIONS"]

PRECISIONS: tuple[str, ...] = ("f32", "bf16")


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


def cpu_config(threads: int = 2, precision: str = "f32") -> dict[str, Any]:
    """The CPU plugin properties :func:`compile_onnx` uses: ``threads`` inference threads, latency hint, one
    stream, and ``precision`` for floating-point layers: ``f32`` (the default: no bf16 even where the CPU supports
    it) or ``bf16`` (AVX512_BF16 / AMX-BF16 CPUs; OpenVINO falls back to f32 where the CPU has no bf16)."""
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}.")
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown OpenVINO precision {precision!r}; supported: {', '.join(PRECISIONS)}.")
    return {
        "INFERENCE_NUM_THREADS": int(threads),
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,
        "INFERENCE_PRECISION_HINT": precision,
    }


def read_onnx(path_or_bytes: str | Path | bytes):
    """Read an ONNX model (file or bytes) into an ``openvino.Model``."""
    ov = import_openvino("reading ONNX models with OpenVINO")
    return ov.Core().read_model(path_or_bytes if isinstance(path_or_bytes, bytes) else str(path_or_bytes))


def compile_model(model, threads: int = 2, precision: str = "f32"):
    """Compile an ``openvino.Model`` (e.g. from :func:`read_onnx` or :func:`quantize_nncf`) for the CPU plugin."""
    ov = import_openvino("compiling models with OpenVINO")
    return ov.Core().compile_model(model, "CPU", cpu_config(threads, precision))


def compile_onnx(path_or_bytes: str | Path | bytes, threads: int = 2, precision: str = "f32"):
    """Read an ONNX model and compile it for OpenVINO's CPU plugin (see :func:`cpu_config`).

    A model exported with a fixed input shape compiles for that shape; one with a dynamic batch axis (the default of
    ``repvit export``) accepts any batch, at some cost in latency. A QDQ (INT8) file from ``repvit export --int8``
    runs with INT8 convolutions.

    Args:
        path_or_bytes: the ``.onnx`` file or its serialized bytes.
        threads: inference threads (``INFERENCE_NUM_THREADS``).
        precision: ``f32`` or ``bf16`` for the floating-point layers.

    Returns:
        The ``openvino.CompiledModel``; run it with :func:`run`, or create an infer request for repeated calls.

    Raises:
        ImportError: openvino is not installed (names the pip extra).
    """
    return compile_model(read_onnx(path_or_bytes), threads, precision)


def quantize_nncf(path_or_bytes: str | Path | bytes, calib_batches, model_type: str | None = "transformer",
                  int8_mode=None):
    """INT8 post-training quantization of an ONNX model with NNCF for OpenVINO; returns the quantized
    ``openvino.Model`` (compile it with :func:`compile_model`).

    Args:
        path_or_bytes: the float ONNX model.
        calib_batches: calibration inputs (float32 arrays shaped like the model input, or larger batches when the
            model has a dynamic batch axis), preprocessed like the model's input.
        model_type: ``"transformer"`` (NNCF's ``ModelType.TRANSFORMER`` scheme: quantizes the convolutions and
            matrix multiplies and leaves element-wise ops such as GELU, the squeeze-excite scale and the residual
            adds in float, so fewer quantize/dequantize pairs sit on the hot path) or None (NNCF's default CNN
            scheme, which quantizes every input of those element-wise ops too).
        int8_mode: ``auto``, ``safe`` or ``full`` (:func:`repvit.deploy.int8_mode.resolve_int8_mode`): ``safe`` turns
            on NNCF's ``overflow_fix`` for every layer (7-bit weights, no saturation on x86 CPUs without VNNI);
            ``full`` keeps NNCF's default (first layer only).

    Raises:
        ImportError: nncf or openvino is not installed (names the pip extra).
        ValueError: no calibration data, or an unknown ``model_type``.
    """
    model = read_onnx(path_or_bytes)
    nncf = require("nncf", "INT8 quantization for OpenVINO")
    if not calib_batches:
        raise ValueError("NNCF quantization needs calibration data (a folder of images or the built-in digits set).")
    types = {"transformer": nncf.ModelType.TRANSFORMER, None: None}
    if model_type not in types:
        raise ValueError(f"Unknown NNCF model type {model_type!r}; use 'transformer' or None.")
    from .int8_mode import resolve_int8_mode

    choice = resolve_int8_mode(int8_mode)
    items = [b for b in calib_batches]
    kw = {"model_type": types[model_type]} if types[model_type] is not None else {}
    fix = nncf.OverflowFix.ENABLE if choice.saturation_safe else nncf.OverflowFix.FIRST_LAYER
    return nncf.quantize(model, nncf.Dataset(items), subset_size=len(items),
                         advanced_parameters=nncf.AdvancedQuantizationParameters(overflow_fix=fix), **kw)


def run(compiled, x: torch.Tensor) -> list[torch.Tensor]:
    """Run a compiled OpenVINO model on one tensor and return its outputs as tensors, in output order."""
    request = compiled.create_infer_request()
    result = request.infer({0: x.detach().cpu().float().contiguous().numpy()})
    return [torch.from_numpy(result[out]) for out in compiled.outputs]
