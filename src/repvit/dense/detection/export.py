"""ONNX export of a whole detector (pre-processing, backbone, FPN, heads, NMS, mask pasting) and its parity check.

torchvision's R-CNNs and RetinaNet export with PyTorch's TorchScript-based exporter through
:func:`repvit.deploy.onnx_export.export_onnx_bytes`. The graph takes one float image ``image`` (3, H, W) in [0, 1]
and returns ``boxes`` (N, 4, XYXY in the input's pixels), ``scores`` (N), ``labels`` (N, 1..K) and, for Mask R-CNN,
``masks`` (N, 1, H, W probabilities). The backbone is exported in its fused (deploy) form. :func:`onnx_parity` runs
the same image through PyTorch and ONNX Runtime and compares every output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from repvit.data import is_digits
from repvit.deploy.onnx_export import OPSET, add_metadata, export_onnx_bytes
from repvit.io import atomic_write
from repvit.runtime import require

__all__ = ["OnnxDetector", "export_detector_onnx", "onnx_parity"]


class OnnxDetector(nn.Module):
    """A torchvision detector as a one-image, tuple-output module: ``(boxes, scores, labels[, masks])``."""

    def __init__(self, detector: nn.Module):
        super().__init__()
        self.detector = detector
        self.with_masks = hasattr(detector, "roi_heads") and detector.roi_heads.has_mask()

    def forward(self, image: torch.Tensor):
        out = self.detector([image])[0]
        if self.with_masks:
            return out["boxes"], out["scores"], out["labels"], out["masks"]
        return out["boxes"], out["scores"], out["labels"]

    @property
    def output_names(self) -> list[str]:
        return ["boxes", "scores", "labels"] + (["masks"] if self.with_masks else [])


def export_detector_onnx(detector: nn.Module, path: str | Path, *, height: int, width: int,
                         metadata: dict[str, Any] | None = None, dynamic_size: bool = False) -> Path:
    """Export ``detector`` (eval mode; fuse it first for deployment) for ``height`` x ``width`` images.

    ``dynamic_size`` makes the image height and width symbolic (the graph resizes internally anyway).
    ``metadata`` (class names, category ids, ...) is stored as JSON strings in the model's ``metadata_props``.
    """
    wrapper = OnnxDetector(detector.eval()).eval()
    names = wrapper.output_names
    axes = {n: {0: "detections"} for n in names}
    if dynamic_size:
        axes["image"] = {1: "height", 2: "width"}
    data = export_onnx_bytes(wrapper, torch.rand(3, height, width), dynamic_batch=False, opset=OPSET,
                             input_names=["image"], output_names=names, dynamic_axes=axes)
    data = add_metadata(data, {str(k): v for k, v in (metadata or {}).items()})
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


@torch.no_grad()
def onnx_parity(detector: nn.Module, path: str | Path, image: torch.Tensor, *, threads: int = 1) -> dict[str, Any]:
    """Run ``image`` (3, H, W float in [0, 1]) through PyTorch and ONNX Runtime; the largest differences.

    Returns ``detections`` (PyTorch's count), ``same_count``, ``labels_equal``, ``boxes_max_abs`` (pixels),
    ``boxes_max_rel`` (relative to the largest coordinate), ``scores_max_abs`` and ``masks_max_abs``
    (probabilities; Mask R-CNN only).
    """
    ort = require("onnxruntime", "checking the ONNX export")
    ref = OnnxDetector(detector.eval()).eval()(image)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    got = [torch.from_numpy(o) for o in sess.run(None, {"image": image.numpy().astype("float32")})]
    res: dict[str, Any] = {"detections": int(ref[0].shape[0]), "onnx_detections": int(got[0].shape[0])}
    res["same_count"] = res["detections"] == res["onnx_detections"]
    if not res["same_count"]:
        return res
    # detections are a set: pair each PyTorch detection with the nearest ONNX one of the same label (the order of
    # detections with equal scores may differ between the two runtimes' sorts)
    order = _match(ref[0].float(), ref[2].long(), got[0].float(), got[2].long())
    res["labels_equal"] = order is not None
    if order is None:
        return res
    got = [g[order] for g in got]
    res["boxes_max_abs"] = float((ref[0] - got[0]).abs().max()) if ref[0].numel() else 0.0
    res["boxes_max_rel"] = res["boxes_max_abs"] / max(float(ref[0].abs().max()) if ref[0].numel() else 1.0, 1e-12)
    res["scores_max_abs"] = float((ref[1] - got[1]).abs().max()) if ref[1].numel() else 0.0
    if len(ref) == 4:
        res["masks_max_abs"] = float((ref[3] - got[3]).abs().max()) if ref[3].numel() else 0.0
    return res


def _match(boxes_a, labels_a, boxes_b, labels_b) -> torch.Tensor | None:
    """For each detection of ``a``, the index of the same-label detection of ``b`` with the nearest box; None if
    that is not a one-to-one pairing."""
    if boxes_a.numel() == 0:
        return torch.zeros(0, dtype=torch.long)
    d = torch.cdist(boxes_a, boxes_b)
    d[labels_a[:, None] != labels_b[None, :]] = float("inf")
    idx = d.argmin(dim=1)
    if not torch.isfinite(d.min(dim=1).values).all() or idx.unique().numel() != idx.numel():
        return None
    return idx


def _parity_ok(p: dict[str, Any]) -> bool:
    if not p["same_count"] or not p.get("labels_equal", False):
        return False
    return p["boxes_max_rel"] <= 1e-4 and p["scores_max_abs"] <= 1e-4 and p.get("masks_max_abs", 0.0) <= 1e-3


def export_checkpoint(checkpoint: str | Path, output: str | Path, *, height: int | None = None,
                      width: int | None = None, dynamic_size: bool = False, image: str | None = None,
                      check: bool = True) -> dict[str, Any]:
    """Export a ``repvit detect train`` checkpoint, or the authors' mmdet Mask R-CNN file or its published name
    (``repvit_m1_1_coco``), with the backbone fused, to ONNX and check it against ONNX Runtime.

    The parity image is ``image``, else a held-out digits scene (digits checkpoints), else a random image.
    Returns ``onnx``, ``input``, and with ``check`` ``parity`` (see :func:`onnx_parity`) and ``parity_ok``
    (same detections and labels; boxes within 1e-4 relative, scores 1e-4, mask probabilities 1e-3).
    """
    from .authors import open_detector
    from .coco import CategoryMap
    from .model import fuse_detector

    model, _, meta = open_detector(checkpoint)
    cfg = meta.get("config")  # None for the authors' Mask R-CNN: its own test settings (model.spec)
    model = fuse_detector(model, inplace=True)
    h = height or (cfg.img_size if cfg is not None else model.spec.min_size)
    w = width or h
    cats = CategoryMap.from_meta(meta)
    detector, backbone = (cfg.detector, cfg.model) if cfg is not None else ("maskrcnn", model.spec.model)
    md = {"repvit_task": "detect", "detector": detector, "model": backbone, "class_names": list(cats.names),
          "category_ids": list(cats.category_ids), "input": "image: float32 (3, H, W) RGB in [0, 1]",
          "outputs": "boxes (N, 4) xyxy pixels, scores (N), labels (N) 1..K" +
                     (", masks (N, 1, H, W) probabilities" if detector == "maskrcnn" else "")}
    path = export_detector_onnx(model, output, height=h, width=w, metadata=md, dynamic_size=dynamic_size)
    res: dict[str, Any] = {"onnx": str(path), "input": f"image 3x{h}x{w}" + (" (dynamic)" if dynamic_size else "")}
    if check:
        if image is not None:
            from torchvision.io import ImageReadMode, decode_image
            from torchvision.transforms.v2 import functional as F

            x = decode_image(str(image), mode=ImageReadMode.RGB)
            if not dynamic_size:
                x = F.resize(x, [h, w], antialias=True)
            x = x.float() / 255
        elif cfg is not None and is_digits(cfg.data) and h == w == cfg.scene_size:
            from repvit.dense.scenes import DigitScenes

            x = DigitScenes("val", size=cfg.scene_size, num_scenes=cfg.val_scenes)[0][0].float() / 255
        else:
            x = torch.rand(3, h, w, generator=torch.Generator().manual_seed(0))
        res["parity"] = onnx_parity(model, path, x)
        res["parity_ok"] = _parity_ok(res["parity"])
    return res
