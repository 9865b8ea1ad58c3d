"""ONNX export of (fused) RepViT models and ONNX Runtime sessions.

The exporter is PyTorch's TorchScript-based one (``torch.onnx.export(..., dynamo=False)``) at a pinned opset: on
these plain conv/linear graphs it is fast, needs no extra packages and produces a clean graph. Metadata (input
size, mean/std, class names, model name) go into ``metadata_props`` as strings (JSON for lists).
"""

from __future__ import annotations

import io
import json
import logging
import threading
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from repvit.runtime import require

__all__ = [
    "OPSET",
    "export_onnx_bytes",
    "add_metadata",
    "read_metadata",
    "optimize_onnx_bytes",
    "make_session",
    "run_session",
    "op_types",
]

_LOG = logging.getLogger(__name__)

OPSET = 17
_EXPORT_LOCK = threading.Lock()  # torch.onnx.export keeps its state in globals: one export at a time per process


def _output_names(model: nn.Module, args: tuple[torch.Tensor, ...]) -> list[str]:
    with torch.no_grad():
        out = model(*args)
    if isinstance(out, torch.Tensor):
        return ["logits"]
    return [f"feat{i}" for i in range(len(out))]


def export_onnx_bytes(
    model: nn.Module,
    example: torch.Tensor | Sequence[torch.Tensor],
    dynamic_batch: bool = True,
    opset: int = OPSET,
    input_names: Sequence[str] = ("input",),
    output_names: Sequence[str] | None = None,
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
) -> bytes:
    """Export ``model`` (in eval mode) to ONNX and return the serialized model.

    Args:
        model: the module to export; a ``features_only`` backbone gives one output per feature map.
        example: the input tensor (or one per input) fixing the channel count and, on fixed axes, the shape.
        dynamic_batch: make axis 0 of every input and output symbolic (``"batch"``).
        opset: the ONNX opset to pin.
        input_names: names of the graph inputs, one per example tensor.
        output_names: names of the outputs; default ``logits`` or ``feat0..featN``.
        dynamic_axes: more symbolic axes by input or output name, e.g. ``{"image": {2: "height", 3: "width"}}``;
            added to the batch axes.

    Exports in several threads at once run one after the other (PyTorch's exporter is not thread safe).
    """
    require("onnx", "ONNX export")
    model = model.eval()
    args = (example,) if isinstance(example, torch.Tensor) else tuple(example)
    names = list(output_names) if output_names else _output_names(model, args)
    axes: dict[str, dict[int, str]] = {}
    if dynamic_batch:
        axes = {n: {0: "batch"} for n in (*input_names, *names)}
    for n, extra in (dynamic_axes or {}).items():
        axes[n] = {**axes.get(n, {}), **extra}
    buf = io.BytesIO()
    with _EXPORT_LOCK, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice and tracer warnings
        torch.onnx.export(
            model,
            args,
            buf,
            dynamo=False,
            opset_version=opset,
            input_names=list(input_names),
            output_names=names,
            dynamic_axes=axes or None,
            do_constant_folding=True,
        )
    return buf.getvalue()


def add_metadata(data: bytes, metadata: dict[str, Any]) -> bytes:
    """Return ``data`` with ``metadata`` stored in the model's ``metadata_props`` (non-strings as JSON)."""
    onnx = require("onnx", "ONNX metadata")
    proto = onnx.load_from_string(data)
    existing = {p.key: p for p in proto.metadata_props}
    for key, value in metadata.items():
        text = value if isinstance(value, str) else json.dumps(value)
        if key in existing:
            existing[key].value = text
        else:
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, text
    proto.producer_name = "repvit"
    return proto.SerializeToString()


def read_metadata(path_or_bytes: str | Path | bytes) -> dict[str, Any]:
    """The ``metadata_props`` of an ONNX model, JSON values decoded."""
    onnx = require("onnx", "reading ONNX metadata")
    if isinstance(path_or_bytes, bytes):
        proto = onnx.load_from_string(path_or_bytes)
    else:
        proto = onnx.load(str(path_or_bytes), load_external_data=False)
    out: dict[str, Any] = {}
    for p in proto.metadata_props:
        try:
            out[p.key] = json.loads(p.value)
        except ValueError:
            out[p.key] = p.value
    return out


def op_types(data: bytes) -> set[str]:
    """The set of node types in an ONNX model's main graph."""
    onnx = require("onnx", "inspecting ONNX graphs")
    return {n.op_type for n in onnx.load_from_string(data).graph.node}


_LEVELS = ("none", "basic", "extended", "all")


def _ort_level(ort, level: str):
    """ONNX Runtime's ``GraphOptimizationLevel`` for ``none``/``basic``/``extended``/``all``."""
    if level not in _LEVELS:
        raise ValueError(f"Unknown optimization level {level!r}; supported: {', '.join(_LEVELS)}.")
    g = ort.GraphOptimizationLevel
    return {"none": g.ORT_DISABLE_ALL, "basic": g.ORT_ENABLE_BASIC, "extended": g.ORT_ENABLE_EXTENDED,
            "all": g.ORT_ENABLE_ALL}[level]


def optimize_onnx_bytes(data: bytes, level: str = "basic") -> bytes:
    """Apply ONNX Runtime's offline graph optimizations and return the optimized model.

    ``basic`` keeps the graph standard ONNX (constant folding, redundant node removal, Conv+Add/Mul fusion), so
    any ONNX runtime can load it; ``extended``/``all`` add ONNX Runtime-only fused ops (e.g. ``FusedConv``) and
    layout transforms tied to this machine's CPU, so the file only runs in ONNX Runtime.
    """
    ort = require("onnxruntime", "ONNX graph optimization")
    import os
    import tempfile

    ort_level = _ort_level(ort, level)
    if level == "none":
        return data
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "opt.onnx")
        so = ort.SessionOptions()
        so.graph_optimization_level = ort_level
        so.optimized_model_filepath = out
        so.log_severity_level = 3  # at "all", ORT warns that the file is tied to this CPU: documented above
        ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
        with open(out, "rb") as f:
            optimized = f.read()
    # ORT drops metadata_props when it writes the optimized file: carry them over
    onnx = require("onnx")
    src, dst = onnx.load_from_string(data), onnx.load_from_string(optimized)
    if src.metadata_props and not dst.metadata_props:
        dst.metadata_props.extend(src.metadata_props)
        optimized = dst.SerializeToString()
    return optimized


def make_session(
    path_or_bytes: str | Path | bytes,
    threads: int = 2,
    level: str = "all",
    spinning: bool = True,
    nchwc_se: bool = True,
):
    """An ONNX Runtime CPU session with pinned intra-op threads, sequential execution and the given optimization
    level (``none``/``basic``/``extended``/``all``).

    Args:
        path_or_bytes: the model file or its serialized bytes.
        threads: ``intra_op_num_threads`` (``inter_op_num_threads`` is 1: the graph is a chain).
        level: graph optimization level.
        spinning: let idle intra-op threads spin between the ops of a run (lower latency at batch 1); they stop
            spinning when the run returns (``session.force_spinning_stop``), so no core stays busy between calls
            and whatever runs next (another model, a benchmark's next candidate) gets the CPU.
        nchwc_se: at level ``all``, keep squeeze-excite blocks in ONNX Runtime's blocked layout
            (:mod:`repvit.deploy.ort_nchwc`; about 4% faster for RepViT-M0.9 at batch 1). The rewritten graph is
            checked against ONNX Runtime's own on a random input and dropped, with a log message, if it differs
            by more than 1e-5 relative or cannot be built; graphs without such blocks are used as they are.
    """
    ort = require("onnxruntime", "running ONNX models")
    ort_level = _ort_level(ort, level)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort_level
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    if spinning:
        so.add_session_config_entry("session.force_spinning_stop", "1")
    else:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    src = path_or_bytes if isinstance(path_or_bytes, bytes) else str(path_or_bytes)
    sess = ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
    if nchwc_se and level == "all":
        data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
        faster = _nchwc_se_session(data, so, sess)
        if faster is not None:
            return faster
    return sess


def _nchwc_se_session(data: bytes, so, plain):
    """The session of :func:`repvit.deploy.ort_nchwc.rewrite_se_blocks`'s graph if it applies and matches
    ``plain``; None otherwise."""
    import numpy as np
    import onnxruntime as ort

    from .ort_nchwc import nchwc_block_size, ort_optimized_bytes, rewrite_se_blocks

    inputs = plain.get_inputs()
    if len(inputs) != 1 or any(not isinstance(d, int) for d in inputs[0].shape[1:]):
        return None  # only fixed-size single-input graphs (a symbolic batch is fine)
    try:
        block = nchwc_block_size()
        if block is None:
            return None
        rewritten, count = rewrite_se_blocks(ort_optimized_bytes(data), block)
        if count == 0:
            return None
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC  # already optimized
        sess = ort.InferenceSession(rewritten, so, providers=["CPUExecutionProvider"])
        shape = [d if isinstance(d, int) else 2 for d in inputs[0].shape]
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        for ref, out in zip(plain.run(None, {inputs[0].name: x}), sess.run(None, {inputs[0].name: x}), strict=True):
            err = float(np.abs(out - ref).max() / max(float(np.abs(ref).max()), 1e-12))
            if not err <= 1e-5:
                _LOG.warning("NCHWc SE rewrite differs from ONNX Runtime's graph (%.2e relative); not used", err)
                return None
    except Exception as e:  # an optimization only: never fail the session for it
        _LOG.warning("NCHWc SE rewrite failed (%s: %s); using ONNX Runtime's graph", type(e).__name__, e)
        return None
    _LOG.debug("NCHWc SE rewrite: %d blocks", count)
    return sess


def run_session(sess, x: torch.Tensor) -> list[torch.Tensor]:
    """Run an ONNX Runtime session on one tensor and return its outputs as tensors."""
    feed = {sess.get_inputs()[0].name: x.detach().cpu().float().numpy()}
    return [torch.from_numpy(o) for o in sess.run(None, feed)]
