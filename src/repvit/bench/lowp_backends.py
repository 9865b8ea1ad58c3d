"""Benchmark backends for phone runtimes and low precision: ExecuTorch, LiteRT, OpenVINO INT8/bf16, bf16 autocast.

Backends (each a zero-argument callable on a fixed example, like :mod:`repvit.bench.backends`):
    executorch: the ``.pte`` of ``repvit export --format executorch`` (XNNPACK delegate), run by
        ``executorch.runtime`` in its own worker process with its thread pool pinned to ``threads``
        (:class:`repvit.bench.remote.RemoteProgram`): the pool is process-wide.
    executorch-int8: as ``executorch`` after PT2E quantization with ``XNNPACKQuantizer`` (per-channel).
    openvino-int8: the ONNX export quantized by NNCF post-training quantization (``ModelType.TRANSFORMER`` scheme,
        :func:`repvit.deploy.openvino_runtime.quantize_nncf`), compiled with f32 for the layers left in float.
    openvino-qdq: OpenVINO running the ONNX Runtime QDQ file of ``repvit export --int8`` as it is.
    openvino-bf16: the FP32 ONNX export compiled with ``INFERENCE_PRECISION_HINT=bf16`` (AVX512_BF16 / AMX).
    eager-bf16: PyTorch eager, channels-last, under ``torch.autocast("cpu", dtype=torch.bfloat16)``.
    onnxruntime-int8-conv: ONNX Runtime QDQ with only Conv and Gemm quantized (residual adds and the squeeze-excite
        multiply stay in float: fewer Q/DQ pairs between the INT8 convolutions and GELU).
    tflite: the ``.tflite`` of ``repvit export --format tflite`` (litert-torch) in the LiteRT interpreter, with
        ``threads`` threads.

Calibration (``calib``) works as for ``onnxruntime-int8``: real images for accuracy, random inputs (the default)
for latency only.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

__all__ = ["LOWP_BACKENDS", "PRECISION", "prepare_lowp_backend", "first_output"]

LOWP_BACKENDS: tuple[str, ...] = (
    "executorch", "executorch-int8", "openvino-int8", "openvino-qdq", "openvino-bf16", "eager-bf16",
    "onnxruntime-int8-conv", "tflite",
)
PRECISION: dict[str, str] = {
    "executorch-int8": "int8", "openvino-int8": "int8", "openvino-qdq": "int8", "onnxruntime-int8": "int8",
    "onnxruntime-int8-conv": "int8", "openvino-bf16": "bf16", "eager-bf16": "bf16", "cuda-bf16": "bf16",
    "cuda-fp16": "fp16",
}


def first_output(out: Any) -> torch.Tensor:
    """The first output of any backend's call (a tensor, a list/tuple of arrays or an OpenVINO result) as float32."""
    if isinstance(out, (list, tuple)):
        out = out[0]
    return torch.as_tensor(out).float()


def _onnx(model: nn.Module, example: torch.Tensor, dynamic: bool) -> bytes:
    from repvit.deploy.onnx_export import export_onnx_bytes
    from repvit.deploy.onnx_passes import apply_passes

    net = copy.deepcopy(model).eval().cpu().float()
    return apply_passes(export_onnx_bytes(net, example.cpu().float(), dynamic_batch=dynamic))


def _ov_request(compiled, example: torch.Tensor) -> Callable[[], Any]:
    request = compiled.create_infer_request()
    feed = {0: example.detach().cpu().float().contiguous().numpy()}
    return lambda: request.infer(feed, share_inputs=True).to_tuple()


def _executorch(model, example, threads, int8, calib) -> Callable[[], Any]:
    from repvit.deploy.executorch_export import export_executorch_bytes

    from .remote import RemoteProgram

    pte, _ = export_executorch_bytes(copy.deepcopy(model).eval().cpu().float(), example.cpu().float(), int8=int8,
                                     calib=calib if int8 else None)
    return RemoteProgram(pte, example.detach().cpu().float().numpy(), threads=threads)


def _openvino(backend, model, example, threads, calib, int8_mode=None) -> Callable[[], Any]:
    from repvit.deploy import openvino_runtime as ovr

    ovr.import_openvino(f"the {backend} backend")
    if backend == "openvino-bf16":
        return _ov_request(ovr.compile_onnx(_onnx(model, example, dynamic=False), threads, "bf16"), example)
    if backend == "openvino-qdq":
        from repvit.deploy.quantize import quantize_onnx_bytes

        qdq = quantize_onnx_bytes(_onnx(model, example, dynamic=True), calib, int8_mode=int8_mode)
        m = ovr.read_onnx(qdq)
    else:  # openvino-int8: NNCF on a dynamic-batch graph (calibration batches of any size), then the fixed shape
        with contextlib.redirect_stdout(io.StringIO()):  # NNCF draws progress bars on stdout
            m = ovr.quantize_nncf(_onnx(model, example, dynamic=True), calib, int8_mode=int8_mode)
    m.reshape({m.inputs[0].get_any_name(): list(example.shape)})
    return _ov_request(ovr.compile_model(m, threads, "f32"), example)


def _eager_bf16(model: nn.Module, example: torch.Tensor) -> Callable[[], Any]:
    net = copy.deepcopy(model).eval().to(memory_format=torch.channels_last)
    x = example.contiguous(memory_format=torch.channels_last)

    def run() -> Any:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return net(x)

    return run


def _ort_int8_conv(model, example, threads, calib, int8_mode=None) -> Callable[[], Any]:
    from repvit.deploy.onnx_export import make_session
    from repvit.deploy.quantize import quantize_onnx_bytes

    data = quantize_onnx_bytes(_onnx(model, example, dynamic=True), calib, op_types=["Conv", "Gemm"],
                               int8_mode=int8_mode)
    sess = make_session(data, threads=threads, spinning=False)
    feed = {sess.get_inputs()[0].name: example.detach().cpu().float().numpy()}
    return lambda: sess.run(None, feed)


def _tflite(model, example, threads) -> Callable[[], Any]:
    from repvit.deploy.tflite_export import export_tflite_bytes, load_interpreter

    interp = load_interpreter(export_tflite_bytes(copy.deepcopy(model).eval(), example), threads=threads)
    inp, outs = interp.get_input_details()[0], interp.get_output_details()
    arr = example.detach().cpu().float().contiguous().numpy()

    def run() -> Any:
        interp.set_tensor(inp["index"], arr)
        interp.invoke()
        return [interp.get_tensor(o["index"]) for o in outs]

    return run


def prepare_lowp_backend(model: nn.Module, backend: str, example: torch.Tensor, threads: int,
                         calib: list | None, int8_mode=None) -> Callable[[], Any]:
    """The callable for one of :data:`LOWP_BACKENDS` (see the module docstring); ``calib``: numpy batches;
    ``int8_mode``: :func:`repvit.deploy.int8_mode.resolve_int8_mode` (ONNX Runtime and OpenVINO INT8)."""
    if backend in ("executorch", "executorch-int8"):
        return _executorch(model, example, threads, backend.endswith("int8"), calib)
    if backend.startswith("openvino-"):
        return _openvino(backend, model, example, threads, calib, int8_mode)
    if backend == "eager-bf16":
        return _eager_bf16(model, example)
    if backend == "onnxruntime-int8-conv":
        return _ort_int8_conv(model, example, threads, calib, int8_mode)
    if backend == "tflite":
        return _tflite(model, example, threads)
    raise ValueError(f"Unknown low-precision backend {backend!r}; supported: {', '.join(LOWP_BACKENDS)}.")
