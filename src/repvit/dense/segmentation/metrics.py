"""Segmentation metrics from a confusion matrix: mIoU, pixel accuracy, per-class IoU.

The matrix (rows: ground truth, columns: prediction) is accumulated over the pixels whose label is not the ignore
index, summed across ranks (``all_reduce_sum``), and the metrics are computed from the sum, so every rank returns
the same numbers and each pixel counts once. As in mmseg, a class's IoU is ``TP / (TP + FP + FN)`` and mIoU is the
mean over the classes whose union is non-empty (classes absent from both labels and predictions are left out and
reported as ``None``). Values are fractions in [0, 1].
"""

from __future__ import annotations

from typing import Any

import torch

from .data import IGNORE_INDEX

__all__ = ["confusion_matrix", "metrics_from_confusion"]


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """``(num_classes, num_classes)`` int64 counts of (label, prediction) pairs over the non-ignored pixels."""
    valid = target != ignore_index
    t, p = target[valid].long(), pred[valid].long()
    if t.numel() and (t.min() < 0 or t.max() >= num_classes):
        lo, hi = int(t.min()), int(t.max())
        raise ValueError(f"labels must be in [0, {num_classes - 1}] or {ignore_index}; got {lo}..{hi}.")
    return torch.bincount(t * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes).cpu()


def metrics_from_confusion(conf: torch.Tensor) -> dict[str, Any]:
    """``miou``, ``pixel_acc``, ``per_class_iou`` (None for classes with an empty union) and ``pixels``."""
    conf = conf.double()
    tp = conf.diag()
    union = conf.sum(0) + conf.sum(1) - tp
    iou = tp / union.clamp_min(1)
    present = union > 0
    total = conf.sum()
    return {
        "miou": float(iou[present].mean()) if present.any() else 0.0,
        "pixel_acc": float(tp.sum() / total) if total > 0 else 0.0,
        "per_class_iou": [float(v) if ok else None for v, ok in zip(iou.tolist(), present.tolist())],
        "pixels": int(total),
    }
