"""Detection as a :class:`~repvit.engine.task.Task` on the shared engine.

``repvit detect train`` calls :func:`train`, which runs :class:`DetectTask` with a :class:`~.config.DetectConfig`
through :func:`repvit.engine.run_task` (checkpoints, exact resume, DDP, AMP, progress, ``metrics.jsonl``, curves).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn as nn

from repvit.engine.amp import amp_dtype
from repvit.engine.task import Task, TaskData

from .config import DetectConfig
from .data import DetectionData, build_detection_data, detect_collate
from .evaluate import evaluate_detector
from .model import build_detector, detector_spec, init_detector

__all__ = ["DetectTask", "train"]


def _to(target: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in target.items()}


class DetectTask(Task):
    """Mask R-CNN / Faster R-CNN / RetinaNet training and COCO evaluation (``cfg``: a :class:`DetectConfig`)."""

    name: ClassVar[str] = "detect"
    best_metric: ClassVar[str] = "bbox_ap"
    default_eval_batch_size: ClassVar[int] = 8
    plot_label: ClassVar[str] = "box AP"
    resume_meta: ClassVar[Mapping[str, str]] = {"num_classes": "classes"}

    def __init__(self):
        self.data: DetectionData | None = None

    def build_data(self, cfg: DetectConfig, info) -> TaskData:
        self.data = build_detection_data(cfg)
        cats = self.data.categories
        if cfg.num_classes is not None and cfg.num_classes != len(cats.category_ids):
            raise ValueError(f"num_classes={cfg.num_classes} but {cfg.data} has {len(cats.category_ids)} categories.")
        meta = {"num_classes": cats.num_classes, **cats.to_meta(), "detector": cfg.detector,
                "data_stats": self.data.stats}
        return TaskData(self.data.train, self.data.val, collate=detect_collate, meta=meta)

    def build_model(self, cfg: DetectConfig, data: TaskData) -> nn.Module:
        model = build_detector(detector_spec(cfg), data.meta["num_classes"])
        if cfg.backbone_checkpoint and not self.resuming:
            init_detector(model, cfg.backbone_checkpoint)
        return model

    def train_step(self, model: nn.Module, batch, device: torch.device):
        images, targets = batch
        images = [im.to(device, non_blocking=True) for im in images]
        losses = model(images, [_to(t, device) for t in targets])
        return sum(losses.values()), len(images)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader, device: torch.device) -> dict[str, Any]:
        return evaluate_detector(model, loader, device, self.data.categories, self.data.val_gt,
                                 masks=self.cfg.detector == "maskrcnn", amp=self.cfg.amp,
                                 amp_dtype=amp_dtype(self.cfg.amp_dtype))

    def describe(self, metrics: dict[str, Any]) -> str:
        parts = [f"box AP {metrics['bbox_ap']:.4f}"]
        if metrics.get("mask_ap") is not None:
            parts.append(f"mask AP {metrics['mask_ap']:.4f}")
        return "  ".join(parts)


def train(cfg: DetectConfig) -> dict[str, Any]:
    """Train a detector on the shared engine (``repvit detect train``); returns :func:`repvit.engine.run_task`'s
    summary."""
    from repvit.engine.run import run_task

    return run_task(DetectTask(), cfg)

