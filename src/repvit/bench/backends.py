"""Inference backends for latency measurement: one zero-argument callable per (model, backend, input).

``prepare_backend`` turns a PyTorch model into a callable that runs one inference on a fixed example with the chosen
runtime. It does the one-off work (tracing, compiling, exporting, quantizing) up front so that timing the callable
measures inference only. ``repvit bench``, ``repvit roadmap`` and the scripts in ``benchmarks/`` all go through it.

Backends:
    eager: PyTorch eager under ``torch.inference_mode``.
    channels_last: eager with model and input in ``torch.channels_last`` memory format.
    compile: ``torch.compile`` (inductor), compiled before returning.
    torchscript: ``torch.jit.trace`` + ``torch.jit.freeze`` + ``optimize_for_inference``.
    onnxruntime: ONNX export (TorchScript exporter, opset 17, :mod:`repvit.deploy.onnx_passes`) run by ONNX
        Runtime in :func:`repvit.deploy.onnx_export.make_session` (full graph optimization, the NCHWc squeeze-excite
        rewrite, ``intra_op_num_threads=threads``, threads spinning within a run and stopped when it returns).
    onnxruntime-int8: as ``onnxruntime`` after static QDQ quantization with per-channel weights and the CPU's INT8
        plan (:func:`repvit.deploy.int8_mode.int8_plan`: GELU fused, Conv/Gemm/Add in INT8).
    openvino: the same ONNX export and passes, but with the example's fixed batch, compiled by OpenVINO's CPU plugin
        (:func:`repvit.deploy.openvino_runtime.compile_onnx`: ``INFERENCE_NUM_THREADS=threads``, latency hint, one
        stream, f32 precision so it compares with FP32 ONNX Runtime); one reused infer request per call. Its idle
        threads sleep within about a millisecond.
    executorch, executorch-int8, openvino-int8, openvino-qdq, openvino-bf16, eager-bf16, onnxruntime-int8-conv,
        tflite: phone runtimes and low precision, see :mod:`repvit.bench.lowp_backends`.
    cuda-fp16 / cuda-bf16: the model in half / bfloat16 on CUDA (only when CUDA is available); time it with
        ``interleaved_latency(..., device="cuda")`` so CUDA is synchronized.

The model is used as given: fuse it first (``repvit.fuse_model``) to measure the deploy form.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn as nn

from .lowp_backends import LOWP_BACKENDS, PRECISION, prepare_lowp_backend

__all__ = ["BACKENDS", "CPU_BACKENDS", "CUDA_BACKENDS", "prepare_backend", "available_backends", "precision_of"]

_LOG = logging.getLogger(__name__)

CPU_BACKENDS: tuple[str, ...] = (
    "eager", "channels_last", "compile", "torchscript", "onnxruntime", "onnxruntime-int8", "openvino",
) + LOWP_BACKENDS
CUDA_BACKENDS: tuple[str, ...] = ("cuda-fp16", "cuda-bf16")
BACKENDS: tuple[str, ...] = CPU_BACKENDS + CUDA_BACKENDS


def precision_of(backend: str) -> str:
    """``fp32``, ``int8``, ``bf16`` or ``fp16``: the arithmetic a backend runs the model in."""
    return PRECISION.get(backend, "fp32")


def _importable(*modules: str) -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in modules)


def available_backends() -> tuple[str, ...]:
    """The backends that can run on this machine (CUDA ones only with a GPU, ONNX ones only with onnxruntime,
    ``openvino*`` only with onnx and openvino, ``openvino-int8`` also with nncf, ``executorch*`` with executorch,
    ``tflite`` with litert-torch and ai-edge-litert)."""
    out = []
    for b in BACKENDS:
        if b in CUDA_BACKENDS and not torch.cuda.is_available():
            continue
        if (b.startswith("onnxruntime") or b == "openvino-qdq") and not _importable("onnx", "onnxruntime"):
            continue
        if b.startswith("openvino"):
            try:
                import onnx  # noqa: F401

                from repvit.deploy.openvino_runtime import import_openvino

                import_openvino()
            except ImportError:
                continue
            if b == "openvino-int8" and not _importable("nncf"):
                continue
        if b.startswith("executorch") and not _importable("executorch"):
            continue
        if b == "tflite" and not _importable("litert_torch", "ai_edge_litert"):
            continue
        out.append(b)
    return tuple(out)


def _eval_copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).eval()


def _eager(model: nn.Module, example: torch.Tensor) -> Callable[[], Any]:
    model = _eval_copy(model)

    def run() -> Any:
        with torch.inference_mode():
            return model(example)

    return run


def _channels_last(model: nn.Module, example: torch.Tensor) -> Callable[[], Any]:
    model = _eval_copy(model).to(memory_format=torch.channels_last)
    x = example.contiguous(memory_format=torch.channels_last)

    def run() -> Any:
        with torch.inference_mode():
            return model(x)

    return run


def _compile(model: nn.Module, example: torch.Tensor) -> Callable[[], Any]:
    model = _eval_copy(model)
    try:
        compiled = torch.compile(model)
        with torch.inference_mode():
            compiled(example)  # compile now, not inside the timed loop
    except Exception as e:  # noqa: BLE001 - inductor failures come in many types
        raise RuntimeError(
            f"torch.compile failed for this model on this machine ({type(e).__name__}: {e}). "
            "It needs a working C++ compiler for the CPU backend; choose another backend."
        ) from e

    def run() -> Any:
        with torch.inference_mode():
            return compiled(example)

    return run


def _torchscript(model: nn.Module, example: torch.Tensor) -> Callable[[], Any]:
    from repvit.deploy.torchscript import trace_and_freeze

    ts = trace_and_freeze(model, example)
    with torch.inference_mode():
        ts(example)
        ts(example)  # the profiling executor optimizes on the first calls

    def run() -> Any:
        with torch.inference_mode():
            return ts(example)

    return run


def _calibration_arrays(calib: Any, example: torch.Tensor) -> list:
    """Calibration batches as numpy arrays shaped like ``example`` (batch size may differ)."""
    if calib is None:
        # no data given: random inputs at the example's scale (fine for latency, not for accuracy)
        g = torch.Generator().manual_seed(0)
        return [torch.randn(example.shape, generator=g).numpy() for _ in range(4)]
    if isinstance(calib, torch.Tensor):
        calib = [calib] if calib.dim() == example.dim() else list(calib)
    arrays = []
    for item in calib if isinstance(calib, Iterable) else [calib]:
        if isinstance(item, (tuple, list)):
            item = item[0]  # (images, labels) batches from a DataLoader
        t = torch.as_tensor(item).float()
        if t.dim() == example.dim() - 1:
            t = t.unsqueeze(0)
        arrays.append(t.cpu().numpy())
    if not arrays:
        raise ValueError("calib is empty: pass a tensor or an iterable of image batches.")
    return arrays


def _onnxruntime(model: nn.Module, example: torch.Tensor, threads: int, int8: bool, calib: Any,
                 int8_mode: Any = None) -> Callable[[], Any]:
    from repvit.deploy.onnx_export import export_onnx_bytes, make_session
    from repvit.deploy.onnx_passes import apply_passes
    from repvit.deploy.quantize import quantize_onnx_bytes

    data = export_onnx_bytes(_eval_copy(model).cpu().float(), example.cpu().float(), dynamic_batch=True)
    data = apply_passes(data)  # the same graph rewrites `repvit export` applies
    if int8:
        data = quantize_onnx_bytes(data, _calibration_arrays(calib, example), int8_mode=int8_mode)
    # make_session's defaults, what users get: threads spin between the ops of a run and stop when it returns, so
    # they do not steal the CPU from whatever runs next (another candidate of an interleaved run, PyTorch's pool)
    sess = make_session(data, threads=threads)
    name = sess.get_inputs()[0].name
    feed = {name: example.detach().cpu().float().numpy()}

    def run() -> Any:
        return sess.run(None, feed)

    return run


def _openvino(model: nn.Module, example: torch.Tensor, threads: int) -> Callable[[], Any]:
    from repvit.deploy.onnx_export import export_onnx_bytes
    from repvit.deploy.onnx_passes import apply_passes
    from repvit.deploy.openvino_runtime import compile_onnx, import_openvino

    import_openvino("the openvino backend")  # fail before exporting when it is missing
    # a fixed batch: OpenVINO's CPU plugin compiles static shapes ahead of time, dynamic ones at run time
    data = export_onnx_bytes(_eval_copy(model).cpu().float(), example.cpu().float(), dynamic_batch=False)
    data = apply_passes(data)
    request = compile_onnx(data, threads=threads).create_infer_request()
    feed = {0: example.detach().cpu().float().contiguous().numpy()}

    def run() -> Any:
        # share_inputs: wrap the numpy input as ONNX Runtime does instead of copying it on every call
        return request.infer(feed, share_inputs=True).to_tuple()

    return run


def _cuda(model: nn.Module, example: torch.Tensor, dtype: torch.dtype) -> Callable[[], Any]:
    if not torch.cuda.is_available():
        raise RuntimeError("CUDA backends need a CUDA GPU and a CUDA build of PyTorch; none is available here.")
    model = _eval_copy(model).to("cuda", dtype=dtype).to(memory_format=torch.channels_last)
    x = example.to("cuda", dtype=dtype).contiguous(memory_format=torch.channels_last)

    def run() -> Any:
        with torch.inference_mode():
            return model(x)

    return run


def prepare_backend(
    model: nn.Module,
    backend: str,
    example: torch.Tensor,
    threads: int = 2,
    calib: Any = None,
    int8_mode: Any = None,
) -> Callable[[], Any]:
    """Return a zero-argument callable that runs one inference of ``model`` on ``example`` with ``backend``.

    Args:
        model: the PyTorch model (used as given; it is copied, never modified). Fuse it first to measure the
            deploy form.
        backend: one of :data:`BACKENDS`.
        example: the input tensor (N, C, H, W); its shape fixes the benchmarked batch and resolution.
        threads: intra-op threads for ONNX Runtime sessions and OpenVINO (PyTorch's own count is pinned by the
            timer, e.g. ``interleaved_latency(..., threads=...)``).
        calib: calibration data for the INT8 backends: a tensor (one batch, or a stack of batches), or an
            iterable of batches / ``(images, labels)`` pairs. ``None`` calibrates on random inputs, which is fine
            for latency but not for accuracy.
        int8_mode: ``auto`` (default), ``safe`` or ``full`` for the ONNX Runtime and OpenVINO INT8 backends
            (:func:`repvit.deploy.int8_mode.resolve_int8_mode`: 7-bit weights on x86 CPUs without VNNI).

    Raises:
        ValueError: unknown backend (the message lists the supported ones).
        ImportError: onnx/onnxruntime missing for the ONNX backends, openvino for ``openvino`` (names the pip
            extra).
        RuntimeError: a CUDA backend without CUDA, or ``torch.compile`` failing on this machine.
    """
    if backend not in BACKENDS:
        raise ValueError(f"Unknown backend {backend!r}; supported: {', '.join(BACKENDS)}.")
    if not isinstance(model, nn.Module):
        raise TypeError(f"prepare_backend expects an nn.Module, got {type(model).__name__}.")
    if backend == "eager":
        return _eager(model, example)
    if backend == "channels_last":
        return _channels_last(model, example)
    if backend == "compile":
        return _compile(model, example)
    if backend == "torchscript":
        return _torchscript(model, example)
    if backend in ("onnxruntime", "onnxruntime-int8"):
        return _onnxruntime(model, example, threads, backend.endswith("int8"), calib, int8_mode)
    if backend == "openvino":
        return _openvino(model, example, threads)
    if backend in LOWP_BACKENDS:
        needs_calib = precision_of(backend) == "int8"
        return prepare_lowp_backend(model, backend, example, threads,
                                    _calibration_arrays(calib, example) if needs_calib else None, int8_mode)
    return _cuda(model, example, torch.float16 if backend == "cuda-fp16" else torch.bfloat16)
