"""Evaluation of a Semantic FPN: :func:`evaluate_segmenter` (mIoU and friends over a loader, the task's validation)
and :func:`evaluate_checkpoint` (ours, or the authors' mmseg file with their test pipeline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from repvit.data import is_digits
from repvit.engine.amp import autocast_context
from repvit.engine.distributed import all_reduce_sum
from repvit.runtime import resolve_device

from .data import IGNORE_INDEX, build_segment_datasets, resize_logits, segment_collate
from .metrics import confusion_matrix, metrics_from_confusion
from .model import load_segmenter_checkpoint

__all__ = ["evaluate_segmenter", "evaluate_checkpoint"]


@torch.no_grad()
def evaluate_segmenter(model: nn.Module, loader, device: torch.device, num_classes: int, *, amp: bool = False,
                       amp_dtype: torch.dtype = torch.bfloat16) -> dict[str, Any]:
    """mIoU, pixel accuracy, per-class IoU, mean loss and image count over ``loader`` (summed across ranks)."""
    model.eval()
    conf = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    sums = torch.zeros(3, dtype=torch.float64)  # loss sum, counted pixels, images
    for images, labels, sizes in loader:
        images = images.to(device, non_blocking=True)
        with autocast_context(device, amp, amp_dtype):
            logits = model(images)
        for lg, lab in zip(resize_logits(logits.float(), sizes), labels):
            lab = lab[: lg.shape[-2], : lg.shape[-1]].to(device)
            conf += confusion_matrix(lg.argmax(0), lab, num_classes)
            valid = int((lab != IGNORE_INDEX).sum())
            if valid:
                sums[0] += float(F.cross_entropy(lg[None], lab[None], ignore_index=IGNORE_INDEX, reduction="sum"))
            sums[1] += valid
        sums[2] += images.shape[0]
    conf = all_reduce_sum(conf.double()).round().long()
    sums = all_reduce_sum(sums)
    out = metrics_from_confusion(conf)
    out.update(loss=float(sums[0] / max(sums[1].item(), 1)), images=int(sums[2].item()))
    return out


def evaluate_checkpoint(checkpoint: str | Path, data: str | None = None, *, num_classes: int | None = None,
                        batch_size: int = 8, device: str = "cpu", use_ema: bool = False,
                        workers: int = 0) -> dict[str, Any]:
    """mIoU, pixel accuracy and per-class IoU of a checkpoint on ``data``'s held-out split (default: its own data).

    Returns ``miou``, ``pixel_acc`` (fractions), ``per_class_iou`` (list, None for absent classes), ``class_names``,
    ``images``, ``pixels`` and ``loss``.

    ``checkpoint`` may also be the authors' mmseg file (or its published name, e.g. ``repvit_m1_1_ade20k``): it is
    then evaluated with their test pipeline (:class:`~repvit.dense.segmentation.data.AlignResize`: short side 512
    keeping the ratio, both sides aligned to multiples of 32; whole image, one image at a time; logits resized
    back to the label size) on ``data`` (an ADE20K-layout folder, 150 classes, label 0 ignored).
    """
    from torch.utils.data import DataLoader

    from ..checkpoint import read_authors_checkpoint

    authors = read_authors_checkpoint(checkpoint, "mmseg")
    if authors is not None:
        return _evaluate_authors(authors, data, num_classes=num_classes, device=device, workers=workers)
    model, cfg, meta = load_segmenter_checkpoint(checkpoint, use_ema=use_ema)
    k = int(meta["num_classes"])
    if num_classes is not None and int(num_classes) != k:
        raise ValueError(f"--num-classes {num_classes} does not match {checkpoint}, which has {k} classes.")
    cfg = cfg.replace(data=data or cfg.data, num_classes=None if is_digits(data or cfg.data) else k)
    _, val, vmeta = build_segment_datasets(cfg, train=False)
    if vmeta["num_classes"] != k:
        raise ValueError(f"{checkpoint} has {k} classes but --data {cfg.data} has {vmeta['num_classes']}.")
    dev = resolve_device(device)
    loader = DataLoader(val, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=segment_collate)
    out = evaluate_segmenter(model.to(dev), loader, dev, k)
    out["class_names"] = list(meta.get("class_names") or vmeta["class_names"])
    return out


def _evaluate_authors(ckpt, data: str | None, *, num_classes: int | None, device: str,
                      workers: int) -> dict[str, Any]:
    from torch.utils.data import DataLoader

    from .authors import mmseg_class_names, semantic_fpn_from_mmseg
    from .data import ADE20KSegmentation, AlignResize, SegmentationView

    model = semantic_fpn_from_mmseg(ckpt.state_dict, where=str(ckpt.path))
    k = model.num_classes
    if not data or str(data).strip().lower() == "digits":
        raise ValueError(f"{ckpt.path} is the authors' ADE20K model: pass --data with an ADE20K-layout folder "
                         "(images/validation, annotations/validation).")
    if num_classes is not None and int(num_classes) != k:
        raise ValueError(f"--num-classes {num_classes} does not match {ckpt.path}, which has {k} classes.")
    val = SegmentationView(ADE20KSegmentation(data, "validation", num_classes=k, reduce_zero_label=True),
                           AlignResize((2048, 512), 32), train=False)
    dev = resolve_device(device)
    # one image per batch: padding a batch to a common size would change the logits near the borders
    loader = DataLoader(val, batch_size=1, shuffle=False, num_workers=workers, collate_fn=segment_collate)
    out = evaluate_segmenter(model.to(dev), loader, dev, k)
    out["class_names"] = mmseg_class_names(ckpt, k)
    out["pipeline"] = "authors (AlignResize 2048x512, size divisor 32, whole image)"
    return out
