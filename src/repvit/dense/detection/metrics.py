"""COCO evaluation of detections with pycocotools' COCOeval (AP is never computed here).

:func:`detections_to_coco` turns torchvision detector outputs into COCO result entries (xywh boxes, RLE masks,
the data set's own category ids); :func:`coco_evaluate` runs COCOeval for ``bbox`` (and ``segm``) and returns the
numbers as plain fractions.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from repvit.runtime import require

from .coco import CategoryMap, mask_to_rle

__all__ = ["detections_to_coco", "coco_evaluate", "STAT_KEYS"]

# COCOeval.stats[0..5] for bbox (and [0..2] for segm, prefixed mask_)
STAT_KEYS = ("ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large")


def detections_to_coco(outputs: Iterable[Mapping[str, torch.Tensor]], image_ids: Iterable[int],
                       categories: CategoryMap, *, mask_threshold: float = 0.5) -> list[dict[str, Any]]:
    """COCO result entries for detector outputs (boxes in the original image's pixels, labels ``1..K``).

    Masks (``(N, 1, H, W)`` probabilities, Mask R-CNN) are thresholded at ``mask_threshold`` and RLE-encoded.
    """
    results = []
    for out, image_id in zip(outputs, image_ids):
        boxes = out["boxes"].detach().float().cpu()
        scores = out["scores"].detach().float().cpu().tolist()
        labels = out["labels"].detach().cpu().tolist()
        masks = out.get("masks")
        if masks is not None:
            masks = (masks.detach().float().cpu()[:, 0] > mask_threshold).numpy()
        for j, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
            r = {"image_id": int(image_id), "category_id": categories.category_id(labels[j]),
                 "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(scores[j])}
            if masks is not None:
                r["segmentation"] = mask_to_rle(masks[j])
            results.append(r)
    return results


def _run(gt, results: list[dict[str, Any]], iou_type: str, image_ids: Sequence[int]) -> np.ndarray:
    from pycocotools.cocoeval import COCOeval

    if not results:  # loadRes cannot index an empty list; nothing detected scores 0 everywhere there is ground truth
        return np.zeros(12)
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(copy.deepcopy(results))  # loadRes adds fields in place
        ev = COCOeval(gt, dt, iou_type)
        ev.params.imgIds = sorted(int(i) for i in image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats, dtype=np.float64)


def coco_evaluate(gt, results: list[dict[str, Any]], image_ids: Sequence[int], *, masks: bool) -> dict[str, Any]:
    """COCOeval on ``image_ids`` of the ground truth ``gt`` (a ``pycocotools.coco.COCO``).

    Returns ``bbox_ap``, ``bbox_ap50``, ``bbox_ap75``, ``bbox_ap_small/medium/large``, with ``masks`` also
    ``mask_ap``, ``mask_ap50``, ``mask_ap75``, and ``images``. Values are fractions in [0, 1]; a value COCOeval
    cannot define (no ground truth in that size range: its -1) is ``None``.
    """
    require("pycocotools.cocoeval", "COCO evaluation")
    ids = set(int(i) for i in image_ids)
    results = [r for r in results if int(r["image_id"]) in ids]
    out: dict[str, Any] = {}
    box = _run(gt, [{k: v for k, v in r.items() if k != "segmentation"} for r in results], "bbox", list(ids))
    out.update({f"bbox_{k}": _frac(v) for k, v in zip(STAT_KEYS, box)})
    if masks:
        # without their boxes, so that loadRes takes each result's area from its mask (as torchvision's references)
        segm = _run(gt, [{k: v for k, v in r.items() if k != "bbox"} for r in results], "segm", list(ids))
        out.update({f"mask_{k}": _frac(v) for k, v in zip(STAT_KEYS[:3], segm)})
    out["images"] = len(ids)
    return out


def _frac(v: float) -> float | None:
    return None if v < 0 else float(v)
