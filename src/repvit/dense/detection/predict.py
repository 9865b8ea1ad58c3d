"""``repvit detect predict``: detections drawn on each image (torchvision's ``draw_bounding_boxes`` and
``draw_segmentation_masks``) and one COCO results JSON for all of them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from repvit.runtime import resolve_device

from .coco import CategoryMap
from .metrics import detections_to_coco

__all__ = ["draw_detections", "predict_images"]

_PALETTE = ["#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
            "#fabed4", "#469990", "#dcbeff", "#9a6324", "#fffac8", "#800000", "#aaffc3"]


def draw_detections(image: torch.Tensor, det: dict[str, torch.Tensor], names: list[str], *,
                    score_threshold: float = 0.5, min_side: int = 256) -> torch.Tensor:
    """``image`` (uint8, 3 x H x W) with the detections above ``score_threshold`` drawn: masks, boxes, and
    ``name score`` labels. Images smaller than ``min_side`` are enlarged (nearest) first so the text stays
    readable."""
    import torch.nn.functional as F
    from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

    keep = det["scores"] >= score_threshold
    boxes, labels, scores = det["boxes"][keep], det["labels"][keep], det["scores"][keep]
    factor = max(1, -(-min_side // min(image.shape[-2:])))
    if factor > 1:
        image = F.interpolate(image[None].float(), scale_factor=factor, mode="nearest")[0].to(torch.uint8)
        boxes = boxes * factor
    colors = [_PALETTE[int(c) % len(_PALETTE)] for c in labels]
    if "masks" in det and keep.any():
        m = det["masks"][keep][:, 0] > 0.5
        if factor > 1:
            m = F.interpolate(m[:, None].float(), scale_factor=factor, mode="nearest")[:, 0] > 0.5
        image = draw_segmentation_masks(image, m, alpha=0.45, colors=colors)
    text = [f"{names[int(c) - 1]} {float(s):.2f}" for c, s in zip(labels, scores)]
    return draw_bounding_boxes(image, boxes, labels=text, colors=colors, width=2)


@torch.no_grad()
def predict_images(checkpoint: str | os.PathLike, images: str | os.PathLike, output_dir: str | os.PathLike, *,
                   score_threshold: float = 0.5, fused: bool = False, device: str = "cpu") -> dict[str, Any]:
    """Detect objects in an image or a folder of images with a ``repvit detect train`` checkpoint, or the authors'
    mmdet Mask R-CNN file or its published name (``repvit_m1_1_coco``).

    Writes ``OUTPUT/<name>.png`` per image and ``OUTPUT/predictions.json`` (COCO results: ``image_id`` is the
    image's position in the sorted list, ``file_name`` names it; category ids are the training data's own). Returns
    ``{"images": [{"image", "png", "detections"}...], "results_json": path}``.
    """
    from torchvision.io import ImageReadMode, decode_image, write_png

    from repvit.data import list_images

    from .authors import open_detector
    from .model import fuse_detector

    model, _, meta = open_detector(checkpoint)
    if fused:
        model = fuse_detector(model, inplace=True)
    dev = resolve_device(device)
    model.to(dev)
    cats = CategoryMap.from_meta(meta)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    listing = []
    for i, path in enumerate(list_images(images)):
        try:
            img = decode_image(str(path), mode=ImageReadMode.RGB)
        except (RuntimeError, ValueError) as e:
            raise ValueError(f"cannot read image {path} ({e}).") from None
        det = {k: v.cpu() for k, v in model([(img.float() / 255).to(dev)])[0].items()}
        entries = detections_to_coco([det], [i], cats)
        for r in entries:
            r["file_name"] = path.name
        results += entries
        png = out / f"{path.stem}.png"
        write_png(draw_detections(img, det, list(cats.names), score_threshold=score_threshold), str(png))
        listing.append({"image": str(path), "png": str(png),
                        "detections": int((det["scores"] >= score_threshold).sum())})
    rj = out / "predictions.json"
    rj.write_text(json.dumps(results), encoding="utf-8")
    return {"images": listing, "results_json": str(rj)}
