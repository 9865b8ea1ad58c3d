"""ONNX export of the fused Semantic FPN, with dynamic batch, height and width, checked against ONNX Runtime.

The graph takes the normalised image ``input`` ``(N, 3, H, W)`` (normalisation is not in the graph; the mean and
std are in the metadata) and returns ``logits`` ``(N, num_classes, H, W)``. It is exported from the fused model
(re-parameterized backbone, head conv+BN folded) with PyTorch's TorchScript-based exporter and the graph passes of
the classification exports (:mod:`repvit.deploy.onnx_export`, :mod:`repvit.deploy.onnx_passes`: squeeze-excite
pooling as ``GlobalAveragePool``, which keeps ONNX Runtime's NCHWc layout), and every size in ``check_sizes`` is
run in ONNX Runtime and compared with the fused PyTorch model (max |difference| relative to max |logit|).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from repvit.deploy.onnx_export import OPSET, add_metadata, export_onnx_bytes, make_session, run_session
from repvit.deploy.onnx_passes import apply_passes
from repvit.deploy.parity import compare_outputs
from repvit.io import atomic_write
from repvit.runtime import require

from .model import SemanticFPN

__all__ = ["export_segmenter_onnx", "export_checkpoint", "segmenter_onnx_bytes"]

AUTHORS_SIZE = 512  # the authors' mmseg models are exported and checked at their test short side (AlignResize)


def segmenter_onnx_bytes(fused: SemanticFPN, *, example_size: tuple[int, int] = (64, 64),
                         opset: int = OPSET) -> bytes:
    """The ONNX graph :func:`export_segmenter_onnx` writes for an already fused model (dynamic batch, height and
    width, this package's graph passes), without metadata or a parity check."""
    spatial = {2: "height", 3: "width"}
    return apply_passes(export_onnx_bytes(fused.float().eval(), torch.randn(1, 3, *example_size), opset=opset,
                                          output_names=["logits"], dynamic_axes={"input": spatial, "logits": spatial}))


def export_segmenter_onnx(
    model: SemanticFPN,
    output: str | Path,
    *,
    example_size: tuple[int, int] = (64, 64),
    check_sizes: Sequence[tuple[int, int]] = ((64, 64), (96, 128)),
    rtol: float = 1e-4,
    opset: int = OPSET,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fuse ``model``, export it to ``output`` (written atomically) and check parity at ``check_sizes``.

    Returns ``path``, ``max_rel_diff``, ``checked`` (sizes) and ``opset``; raises
    :class:`repvit.deploy.parity.ParityError` when ONNX Runtime differs by more than ``rtol``.
    """
    require("onnxruntime", "the ONNX parity check")
    fused = model.fuse().float().eval()
    data = segmenter_onnx_bytes(fused, example_size=example_size, opset=opset)
    data = add_metadata(data, {"task": "segment", "num_classes": fused.num_classes, **(metadata or {})})
    sess = make_session(data, threads=1)
    report = None
    g = torch.Generator().manual_seed(0)
    for h, w in check_sizes:
        x = torch.randn(2, 3, h, w, generator=g)
        with torch.no_grad():
            ref = fused(x)
        report = compare_outputs(run_session(sess, x), [ref], rtol, f"onnxruntime, 2x3x{h}x{w}", ["logits"], report)
    path = atomic_write(output, lambda tmp: Path(tmp).write_bytes(data))
    return {"path": str(path), "max_rel_diff": report.max_rel_diff if report else None,
            "checked": [list(s) for s in check_sizes], "opset": opset}


def export_checkpoint(checkpoint: str | Path, output: str | Path, *, rtol: float = 1e-4) -> dict[str, Any]:
    """:func:`export_segmenter_onnx` of a ``repvit segment train`` checkpoint, the authors' mmseg file or a published
    name (``repvit_m1_1_ade20k``; read by :func:`repvit.dense.authors.open_segmenter`).

    The example and the first check are square at the training size (the authors' models: 512), the second check
    ``(size + 32, 2 x size)``; class names, mean, std and the backbone's model name go into the metadata.
    """
    from .authors import open_segmenter

    model, _, meta = open_segmenter(checkpoint)
    cfg = meta.get("config")
    s = cfg.img_size if cfg is not None else AUTHORS_SIZE
    name = cfg.model if cfg is not None else model.build_info["model_name"]
    return export_segmenter_onnx(model, output, example_size=(s, s), check_sizes=((s, s), (s + 32, 2 * s)),
                                 rtol=rtol, metadata={k: meta[k] for k in ("class_names", "mean", "std") if k in meta}
                                 | {"model_name": name})
