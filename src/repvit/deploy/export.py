"""``export_model``: fuse, export to ONNX / TorchScript / Core ML / ExecuTorch / TFLite, optionally quantize, and check
parity.

Every export fuses first (:func:`repvit.fuse_model`), then runs the exported file and compares it with the fused
PyTorch model (:mod:`repvit.deploy.parity`), raising :class:`ParityError` with the difference when it does not
match. Core ML cannot run off Apple platforms, so its parity is checked on the traced module that is converted.
ExecuTorch (``.pte``) is checked through ``executorch.runtime`` and TFLite in the LiteRT interpreter; both have a
fixed batch, and their metadata goes into a JSON file beside the model (``m.pte.json``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from timm.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from repvit.io import atomic_write
from repvit.models import fuse_model
from repvit.runtime import require

from .parity import ParityError, ParityReport, as_list, compare_outputs

__all__ = ["FORMATS", "ExportResult", "Normalize", "export_model", "check_img_size", "format_for_path"]

_LOG = logging.getLogger(__name__)



class Normalize(nn.Module):
    """``model((x - mean) / std)`` as one module, so a graph can take 0..1 pixels (``--bake-normalization``)."""

    def __init__(self, model: nn.Module, mean, std) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("scale", 1.0 / torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("shift", -torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) * self.scale)

    def forward(self, x: torch.Tensor):
        return self.model(x * self.scale + self.shift)


@dataclass
class ExportResult:
    """What an export wrote and how closely it matches the fused PyTorch model."""

    path: Path
    format: str
    parity: ParityReport
    metadata: dict[str, Any]
    output_names: list[str]
    int8: dict[str, Any] | None = None
    ops: list[str] = field(default_factory=list)


def check_img_size(img_size, fixed: bool = True) -> tuple[int, int]:
    """Validate ``img_size`` (an int or (H, W)); a fixed-size export needs multiples of 32 (RepViT's stride)."""
    if isinstance(img_size, int):
        img_size = (img_size, img_size)
    h, w = (int(s) for s in img_size)
    if h < 32 or w < 32:
        raise ValueError(f"image size {h}x{w} is too small: RepViT needs at least 32x32.")
    if fixed and (h % 32 or w % 32):
        def up(s: int) -> int:
            return -(-s // 32) * 32

        raise ValueError(
            f"image size {h}x{w} is not a multiple of 32, which a fixed-size export needs (RepViT downsamples by 32); "
            f"use e.g. {up(h)}x{up(w)}."
        )
    return h, w


def _parity_inputs(batch: int | str, img_size: tuple[int, int], in_chans: int, baked: bool) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    sizes = [1, 3] if batch == "dynamic" else [int(batch)]
    xs = [torch.randn(n, in_chans, *img_size, generator=g) for n in sizes]
    return [x.mul(0.25).add(0.5).clamp(0, 1) for x in xs] if baked else xs


@dataclass(frozen=True)
class _Options:
    """What an exporter needs besides the model, its inputs and the result it fills."""

    rtol: float
    img_size: tuple[int, int]
    batch: int | str
    opset: int | None = None
    optimize: str = "basic"
    int8: bool = False
    calib: list | None = None
    int8_mode: str | None = None


def export_model(
    model: nn.Module,
    output: str | Path,
    format: str = "onnx",
    *,
    img_size=224,
    batch: int | str = "dynamic",
    bake_normalization: bool = False,
    mean=IMAGENET_DEFAULT_MEAN,
    std=IMAGENET_DEFAULT_STD,
    class_names: list[str] | None = None,
    int8: bool = False,
    calib: list | None = None,
    rtol: float = 1e-4,
    opset: int | None = None,
    optimize: str = "basic",
    model_name: str | None = None,
    int8_mode: str | None = None,
) -> ExportResult:
    """Fuse ``model``, export it, check parity and write ``output``.

    Args:
        model: a RepViT classifier or ``features_only`` backbone (fused or not; it is not modified).
        output: the file to write (``.onnx``, ``.pt``, ``.mlpackage``, ``.pte``, ``.tflite``).
        format: ``onnx``, ``torchscript``, ``coreml``, ``executorch`` or ``tflite``.
        img_size: input size, an int or (H, W); multiples of 32.
        batch: ``"dynamic"`` (ONNX: symbolic batch axis; parity checked at batch 1 and 3) or a fixed batch size.
            Core ML is always batch 1; ExecuTorch and TFLite take a fixed batch (1 for ``"dynamic"``).
        bake_normalization: the exported graph takes RGB in 0..1 and applies ``mean``/``std`` itself (Core ML
            always does, with 0..255 pixels).
        mean: normalization mean, recorded in the metadata.
        std: normalization std, recorded in the metadata.
        class_names: recorded in the metadata.
        int8: ONNX (ONNX Runtime static QDQ) or ExecuTorch (PT2E + XNNPACKQuantizer): quantize statically to INT8
            with per-channel weights, calibrated on ``calib``.
        calib: calibration batches (float32 arrays, preprocessed like the model input).
        rtol: parity tolerance relative to the output's largest magnitude.
        opset: ONNX opset (default :data:`repvit.deploy.onnx_export.OPSET`).
        optimize: ONNX graph optimization written into the file: ``none``, ``basic`` (portable, default) or
            ``extended`` (ONNX Runtime-only fused ops).
        model_name: recorded in the metadata (default: ``model.build_info['model_name']``).
        int8_mode: ONNX INT8 weights: ``auto`` (default: 7-bit on x86 CPUs without VNNI), ``safe`` (7-bit, accurate on
            every CPU) or ``full`` (8-bit); :mod:`repvit.deploy.int8_mode`. Recorded in the metadata.

    Raises:
        ValueError: unknown format, bad image size or batch, INT8 without calibration data or with another format.
        ImportError: the format's optional dependency is missing (names the pip extra).
        ParityError: the exported model does not match the fused PyTorch model.
    """
    spec = _format_spec(format)
    batch, baked = _check_request(spec, batch, bake_normalization, int8, calib)
    h, w = check_img_size(img_size, fixed=True)
    for module in spec.requires:
        require(module, f"{format} export")  # fail before fusing and tracing when it is missing
    fused = fuse_model(model).float().cpu().eval()
    net: nn.Module = Normalize(fused, mean, std).eval() if baked else fused
    in_chans = _in_chans(fused)
    xs = _parity_inputs(batch, (h, w), in_chans, baked)
    with torch.no_grad():
        outs = [net(x) for x in xs]
    refs = [as_list(o) for o in outs]
    metadata = _metadata(model, fused, refs[0], features_only=not isinstance(outs[0], torch.Tensor),
                         model_name=model_name, input_size=[in_chans, h, w], batch=batch, mean=mean, std=std,
                         baked=baked, class_names=class_names)
    result = ExportResult(Path(output), format, ParityReport(), metadata, list(metadata["outputs"]))
    spec.write(net, xs, refs, result, _Options(rtol, (h, w), batch, opset, optimize, int8, calib, int8_mode))
    return result


def _format_spec(format: str) -> _Format:
    if format not in _FORMATS:
        raise ValueError(f"Unknown export format {format!r}; supported: {', '.join(FORMATS)}.")
    return _FORMATS[format]


def format_for_path(path: str | Path) -> str:
    """The export format a file name asks for, by its suffix (``.onnx``, ``.pt``/``.ts``, ``.mlpackage``, ``.pte``,
    ``.tflite``).

    Raises:
        ValueError: no format writes that suffix.
    """
    name = str(path).rstrip("/")
    for fmt, spec in _FORMATS.items():
        if name.endswith(spec.suffixes):
            return fmt
    raise ValueError(f"cannot tell the format from {str(path)!r}; pass --format ({', '.join(FORMATS)}).")


def _check_request(spec: _Format, batch: int | str, baked: bool, int8: bool, calib) -> tuple[int | str, bool]:
    """The batch and normalization the format takes, after refusing what it cannot do."""
    if int8 and not spec.int8:
        int8_formats = [f for f, s in _FORMATS.items() if s.int8]
        raise ValueError(f"--int8 is supported for {' and '.join(int8_formats)} only (format {spec.name!r}).")
    if int8 and not calib:
        raise ValueError("--int8 needs calibration data: --calib FOLDER (images) or --calib digits.")
    if spec.batch_one:
        if batch not in (1, "1", "dynamic"):
            raise ValueError(f"{spec.title} export is batch 1 only.")
        batch = 1
    baked = baked or spec.baked
    if spec.fixed_batch and batch == "dynamic":
        batch = 1  # these formats have a fixed input shape
    if batch != "dynamic":
        try:
            batch = int(batch)
        except (TypeError, ValueError):
            raise ValueError(f"batch must be 'dynamic' or a positive integer, got {batch!r}.") from None
        if batch < 1:
            raise ValueError(f"batch must be 'dynamic' or a positive integer, got {batch!r}.")
    return batch, baked


def _metadata(model: nn.Module, fused: nn.Module, ref: list[torch.Tensor], *, features_only: bool,
              model_name: str | None, input_size: list[int], batch: int | str, mean, std, baked: bool,
              class_names: list[str] | None) -> dict[str, Any]:
    """What goes into the exported file's metadata (``ref``: the fused model's outputs on the first input)."""
    info = dict(getattr(model, "build_info", {}) or {})
    features_only = features_only or bool(info.get("features_only"))
    metadata: dict[str, Any] = {
        "model_name": model_name or info.get("model_name") or type(model).__name__,
        "framework": "repvit",
        "input_size": input_size,
        "batch": batch,
        "mean": list(mean),
        "std": list(std),
        "normalization": "baked (input is RGB in 0..1)" if baked else "input is normalized",
        "class_names": list(class_names) if class_names else [],
        "features_only": features_only,
        "outputs": ["logits"] if not features_only else [f"feat{i}" for i in range(len(ref))],
        "fused": True,
    }
    if features_only and getattr(fused, "feature_info", None) is not None:
        try:
            fi = fused.feature_info
            red = fi.reduction() if hasattr(fi, "reduction") else [f["reduction"] for f in fi]
            metadata["reductions"] = [int(r) for r in red]
        except (TypeError, KeyError):
            pass
    return metadata


def _in_chans(model: nn.Module) -> int:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    return 3


def _export_onnx(net, xs, refs, result: ExportResult, opts: _Options) -> None:
    from .onnx_export import OPSET, add_metadata, export_onnx_bytes, make_session, op_types, optimize_onnx_bytes
    from .onnx_passes import apply_passes

    opset = opts.opset or OPSET
    data = export_onnx_bytes(net, xs[0], dynamic_batch=opts.batch == "dynamic", opset=opset,
                             output_names=result.output_names)
    data = optimize_onnx_bytes(apply_passes(data), opts.optimize)
    result.metadata.update(opset=opset, graph_optimization=f"{opts.optimize}; ReduceMean->GlobalAveragePool")
    ops = op_types(data)
    if "BatchNormalization" in ops:
        raise ParityError("the exported graph still contains BatchNormalization nodes; fusing did not cover them.")
    sess = make_session(data, threads=2, level="all", spinning=False, nchwc_se=False)
    for x, ref in zip(xs, refs):
        got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
        compare_outputs([torch.from_numpy(g) for g in got], ref, opts.rtol, f"onnxruntime, batch {x.shape[0]}",
                        result.output_names, result.parity)
    if opts.int8:
        from .int8_mode import resolve_int8_mode
        from .quantize import quantize_onnx_bytes

        choice = resolve_int8_mode(opts.int8_mode)
        data = quantize_onnx_bytes(data, opts.calib, int8_mode=choice)
        q = make_session(data, threads=2, spinning=False)
        result.int8 = _agreement(_ort_fn(sess), _ort_fn(q), opts.calib)
        result.metadata.update(int8="static QDQ, per-channel weights, uint8 activations",
                               int8_calibration_images=int(sum(len(c) for c in opts.calib)), **choice.metadata())
        ops = op_types(data)
    result.ops = sorted(ops)
    data = add_metadata(data, result.metadata)
    atomic_write(result.path, lambda p: Path(p).write_bytes(data))
    _LOG.info("wrote ONNX %s (opset %d, ops: %s)", result.path, opset, ", ".join(result.ops))


def _ort_fn(sess):
    """An image batch -> first output callable over an ONNX Runtime session."""
    name = sess.get_inputs()[0].name
    return lambda b: torch.from_numpy(sess.run(None, {name: b.numpy()})[0])


def _export_torchscript(net, xs, refs, result: ExportResult, opts: _Options) -> None:
    from .torchscript import save_torchscript, trace_and_freeze

    ts = trace_and_freeze(net, xs[0], optimize=False)
    with torch.no_grad():
        for x, ref in zip(xs, refs):
            compare_outputs(as_list(ts(x)), ref, opts.rtol, f"torchscript, batch {x.shape[0]}", result.output_names,
                            result.parity)
    save_torchscript(ts, result.path, {"metadata.json": json.dumps(result.metadata)})
    # reload what was written and check again: the file is what users get
    loaded = torch.jit.load(str(result.path))
    with torch.no_grad():
        compare_outputs(as_list(loaded(xs[-1])), refs[-1], opts.rtol, "torchscript file (reloaded)",
                        result.output_names, result.parity)


def _export_coreml(net, xs, refs, result: ExportResult, opts: _Options) -> None:
    from .coreml import convert_coreml, save_mlpackage

    with torch.no_grad():
        traced = torch.jit.trace(net, (xs[0],), check_trace=False)
        compare_outputs(as_list(traced(xs[0])), refs[0], opts.rtol, "traced module converted to Core ML",
                        result.output_names, result.parity)
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in result.metadata.items()}
    meta["input_range"] = "0..255 RGB pixels, scaled by 1/255 in the image input"
    mlmodel = convert_coreml(traced, opts.img_size, result.output_names, meta,
                             description=f"{result.metadata['model_name']} (fused RepViT)")
    result.metadata["coreml_precision"] = "float16"
    save_mlpackage(mlmodel, result.path)


def _write_sidecar(result: ExportResult) -> None:
    """Formats without a metadata slot get ``<file>.json`` beside them (mean/std, classes, input size)."""
    text = json.dumps(result.metadata, indent=2)
    atomic_write(Path(str(result.path) + ".json"), lambda p: Path(p).write_text(text))


def _agreement(fp32_fn, int8_fn, calib) -> dict[str, float]:
    """Top-1 agreement and mean cosine between two callables (image batch -> logits) on the calibration images."""
    agree, n, cos = 0, 0, []
    for b in calib:
        a, q = fp32_fn(torch.as_tensor(b)).flatten(1), int8_fn(torch.as_tensor(b)).flatten(1)
        if a.shape[1] > 1:
            agree += (a.argmax(1) == q.argmax(1)).sum().item()
        n += a.shape[0]
        cos.append(torch.nn.functional.cosine_similarity(a, q, dim=1))
    return {"top1_agreement": agree / max(n, 1), "mean_cosine": torch.cat(cos).mean().item(), "images": n}


def _per_image(method, run):
    """A batch -> logits callable over a fixed-batch-1 program (calibration batches are larger)."""
    return lambda b: torch.cat([run(method, b[i:i + 1])[0] for i in range(b.shape[0])])


def _export_executorch(net, xs, refs, result: ExportResult, opts: _Options) -> None:
    from .executorch_export import export_executorch_bytes, load_method, run_method

    data, info = export_executorch_bytes(net, xs[0])
    method = load_method(data)
    for x, ref in zip(xs, refs):
        compare_outputs(run_method(method, x), ref, opts.rtol, f"executorch.runtime, batch {x.shape[0]}",
                        result.output_names, result.parity)
    result.metadata.update(runtime="executorch", delegate="XNNPACK", **info)
    if opts.int8:
        if int(result.metadata["batch"]) != 1:
            raise ValueError("ExecuTorch INT8 export is batch 1 only (calibration agreement runs image by image).")
        data, info = export_executorch_bytes(net, xs[0], int8=True, calib=opts.calib)
        q = load_method(data)
        result.int8 = _agreement(_per_image(method, run_method), _per_image(q, run_method), opts.calib)
        result.metadata.update(int8="PT2E XNNPACKQuantizer: symmetric per-channel int8 weights, int8 activations",
                               int8_mode="not needed (XNNPACK widens to 16 bits before multiplying)",
                               int8_calibration_images=int(sum(len(c) for c in opts.calib)), **info)
    result.ops = [f"executorch_call_delegate x{info['delegate_calls']}"] + info["portable_ops"]
    atomic_write(result.path, lambda p: Path(p).write_bytes(data))
    _write_sidecar(result)
    _LOG.info("wrote ExecuTorch %s (%d XNNPACK delegate calls)", result.path, info["delegate_calls"])


def _export_tflite(net, xs, refs, result: ExportResult, opts: _Options) -> None:
    from .tflite_export import export_tflite_bytes, load_interpreter, run_interpreter

    data = export_tflite_bytes(net, xs[0])
    interp = load_interpreter(data)
    for x, ref in zip(xs, refs):
        compare_outputs(run_interpreter(interp, x), ref, opts.rtol, f"LiteRT interpreter, batch {x.shape[0]}",
                        result.output_names, result.parity)
    result.metadata.update(runtime="litert", layout="NCHW input (as PyTorch)")
    atomic_write(result.path, lambda p: Path(p).write_bytes(data))
    _write_sidecar(result)


@dataclass(frozen=True)
class _Format:
    """One export format: the function that writes and checks it and what it takes."""

    name: str
    title: str
    write: Callable[[nn.Module, list, list, ExportResult, _Options], None]
    suffixes: tuple[str, ...]
    requires: tuple[str, ...] = ()  # optional modules, imported first (the error names their pip extra)
    fixed_batch: bool = False  # a fixed input shape: "dynamic" means batch 1
    batch_one: bool = False  # batch 1 only
    baked: bool = False  # always takes pixels (normalization in the model)
    int8: bool = False  # static INT8 quantization on calibration data


_FORMATS: dict[str, _Format] = {f.name: f for f in (
    _Format("onnx", "ONNX", _export_onnx, (".onnx",), ("onnx", "onnxruntime"), int8=True),
    _Format("torchscript", "TorchScript", _export_torchscript, (".pt", ".ts")),
    _Format("coreml", "Core ML", _export_coreml, (".mlpackage",), ("coremltools",), fixed_batch=True,
            batch_one=True, baked=True),
    # executorch and litert_torch warn when imported: their exporters import them with the warnings silenced
    _Format("executorch", "ExecuTorch", _export_executorch, (".pte",), fixed_batch=True, int8=True),
    _Format("tflite", "TFLite", _export_tflite, (".tflite",), fixed_batch=True),
)}
FORMATS: tuple[str, ...] = tuple(_FORMATS)
