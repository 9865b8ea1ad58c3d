"""Evaluation of a detector: :func:`evaluate_detector` (COCO AP over a loader, the task's validation) and
:func:`evaluate_checkpoint` (ours, or the authors' mmdet Mask R-CNN with their test settings). The COCO arithmetic
(:func:`~.metrics.detections_to_coco`, :func:`~.metrics.coco_evaluate`) is in :mod:`.metrics`."""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn as nn

from repvit.engine.amp import autocast_context
from repvit.runtime import resolve_device

from .coco import CategoryMap
from .config import DetectConfig
from .data import DetectionData, build_detection_data, detect_collate
from .metrics import coco_evaluate, detections_to_coco
from .model import load_detector_checkpoint

__all__ = ["evaluate_detector", "evaluate_checkpoint"]


def _float32(output: dict[str, Any]) -> dict[str, Any]:
    return {k: v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v for k, v in output.items()}


@torch.no_grad()
def evaluate_detector(model: nn.Module, loader, device: torch.device, categories: CategoryMap, gt, *,
                      masks: bool, amp: bool = False, amp_dtype: torch.dtype = torch.bfloat16) -> dict[str, Any]:
    """COCO AP of ``model`` over ``loader`` (this rank's shard; results are gathered so every rank returns the
    same numbers). ``amp``: run the model under autocast in ``amp_dtype`` (as training does); boxes, scores and
    masks are read back in float32."""
    from repvit.engine.distributed import all_gather_object

    model.eval()
    results: list[dict[str, Any]] = []
    ids: list[int] = []
    for images, targets in loader:
        with autocast_context(device, amp, amp_dtype):
            outputs = model([im.to(device) for im in images])
        if amp:
            outputs = [_float32(o) for o in outputs]
        batch_ids = [int(t["image_id"]) for t in targets]
        results += detections_to_coco(outputs, batch_ids, categories)
        ids += batch_ids
    gathered = all_gather_object((results, ids))
    results = [r for rs, _ in gathered for r in rs]
    ids = sorted({i for _, part in gathered for i in part})
    return coco_evaluate(gt, results, ids, masks=masks)


def evaluate_checkpoint(path: str | os.PathLike, *, data: str = "digits", fused: bool = False, batch_size: int = 8,
                        workers: int = 0, device: str = "cpu", overrides: dict[str, Any] | None = None
                        ) -> dict[str, Any]:
    """COCO AP of a detection checkpoint on the val split of ``data`` (``digits`` or a COCO-layout folder).

    The val split is read with the checkpoint's own settings (image size, digits scene parameters), which
    ``overrides`` (config keys: ``val_subset``, ``val_annotations``, ``box_score_thresh``, ...) may change.
    ``fused``: evaluate the deploy form (re-parameterized backbone).

    ``path`` may also be the authors' mmdet Mask R-CNN file (or its published name, e.g. ``repvit_m1_1_coco``): it
    is evaluated with their test settings (:func:`~.authors.mmdet_detector_spec`), one image per batch
    as MMDetection's test loader, on the COCO-layout ``data`` (data keys in ``overrides`` apply).
    """
    from ..checkpoint import read_authors_checkpoint

    authors = read_authors_checkpoint(path, "mmdet")
    if authors is not None:
        return _evaluate_authors(authors, data=data, fused=fused, workers=workers, device=device,
                                 overrides=overrides)
    model, cfg, meta = load_detector_checkpoint(path, overrides={"data": data, "train_subset": None,
                                                                 **(overrides or {})})
    d = build_detection_data(cfg, train=False)
    saved = CategoryMap.from_meta(meta)
    if len(saved.category_ids) != len(d.categories.category_ids):
        raise ValueError(f"{path} detects {len(saved.category_ids)} categories, {data} has "
                         f"{len(d.categories.category_ids)}; evaluate on data with the same categories.")
    if saved.names != d.categories.names:
        raise ValueError(f"{path} was trained on categories {list(saved.names)[:10]}, {data} has "
                         f"{list(d.categories.names)[:10]}; the names (in category-id order) must match.")
    return _evaluate_on(model, d, fused=fused, batch_size=batch_size, workers=workers, device=device,
                        masks=cfg.detector == "maskrcnn")


def _evaluate_on(model: nn.Module, d: DetectionData, *, fused: bool, batch_size: int, workers: int, device: str,
                 masks: bool) -> dict[str, Any]:
    """COCO AP of ``model`` (fused first if asked) on the val split of ``d``."""
    from repvit.data.loader import eval_loader

    from .model import fuse_detector

    if fused:
        model = fuse_detector(model, inplace=True)
    dev = resolve_device(device)
    model.to(dev)
    loader = eval_loader(d.val, batch_size, workers=workers, collate_fn=detect_collate)
    return evaluate_detector(model, loader, dev, d.categories, d.val_gt, masks=masks)


_DATA_KEYS = ("val_images", "val_annotations", "val_subset")


def _evaluate_authors(ckpt, *, data: str, fused: bool, workers: int, device: str,
                      overrides: dict[str, Any] | None) -> dict[str, Any]:
    from .authors import maskrcnn_from_mmdet

    if str(data).strip().lower() == "digits":
        raise ValueError(f"{ckpt.path} is the authors' COCO Mask R-CNN: pass --data with a COCO-layout folder "
                         "(val2017/, annotations/instances_val2017.json).")
    other = sorted(set(overrides or {}) - set(_DATA_KEYS))
    if other:
        raise ValueError(f"--set {other} cannot change the authors' test settings; only {list(_DATA_KEYS)} apply.")
    model = maskrcnn_from_mmdet(ckpt.state_dict, where=str(ckpt.path))
    spec = model.spec
    cfg = DetectConfig().replace(model=spec.model, data=str(data), detector="maskrcnn", img_size=spec.min_size,
                                 max_size=spec.max_size, train_subset=None, **(overrides or {}))
    d = build_detection_data(cfg, train=False)
    if d.categories.category_ids != model.categories.category_ids:
        raise ValueError(f"{ckpt.path} detects the {len(model.categories.category_ids)} COCO categories; {data} has "
                         f"category ids {list(d.categories.category_ids)[:10]}...; evaluate on COCO 2017 val.")
    # one image per batch (MMDetection's test loader): padding to a common size would change the features
    return _evaluate_on(model, d, fused=fused, batch_size=1, workers=workers, device=device, masks=True)
