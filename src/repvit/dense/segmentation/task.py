"""Semantic segmentation as a :class:`~repvit.engine.task.Task` on the shared engine.

``train(cfg)`` runs :class:`SegmentTask` with :func:`repvit.engine.run_task`
(atomic checkpoints, exact resume, Ctrl-C, torchrun DDP, AMP, EMA, progress bar, ``metrics.jsonl``,
``curves.png``). The checkpoints are the engine's (``OUT/best.pt`` / ``OUT/last.pt``): ``model`` holds the
:class:`~.model.SemanticFPN` state dict, ``config`` the :class:`~.config.SegmentConfig` and ``meta`` the class count
and names; :func:`~.model.load_segmenter_checkpoint` rebuilds the model from one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from repvit.engine.amp import amp_dtype
from repvit.engine.task import Task, TaskData

from .config import SegmentConfig
from .data import IGNORE_INDEX, build_segment_datasets, segment_collate
from .evaluate import evaluate_segmenter
from .model import _model_from_cfg, load_segmentation_weights

__all__ = ["SegmentTask", "train"]


class SegmentTask(Task):
    """Semantic FPN on ``digits`` scenes or an ADE20K-layout folder (``cfg`` is a :class:`SegmentConfig`)."""

    name: ClassVar[str] = "segment"
    best_metric: ClassVar[str] = "miou"
    plot_label: ClassVar[str] = "mIoU"
    default_eval_batch_size: ClassVar[int] = 8
    resume_meta: ClassVar[Mapping[str, str]] = {"num_classes": "classes"}
    num_classes: int = 0

    def build_data(self, cfg: SegmentConfig, info) -> TaskData:
        tr, va, meta = build_segment_datasets(cfg)
        self.num_classes = int(meta["num_classes"])
        return TaskData(tr, va, collate=segment_collate, meta=meta)

    def build_model(self, cfg: SegmentConfig, data: TaskData) -> nn.Module:
        fresh = not self.resuming
        model = _model_from_cfg(cfg, data.meta["num_classes"], cfg.backbone_checkpoint if fresh else None)
        if fresh and cfg.finetune:
            load_segmentation_weights(model, cfg.finetune)
        return model

    def train_step(self, model: nn.Module, batch, device: torch.device):
        images, labels, _ = batch
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        if self.cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        logits = model(images)
        if not (labels != IGNORE_INDEX).any():  # nothing to learn from (all ignored): a zero loss keeps DDP in step
            return logits.sum() * 0.0, images.shape[0]
        return F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX), images.shape[0]

    def evaluate(self, model: nn.Module, loader, device: torch.device) -> dict[str, Any]:
        return evaluate_segmenter(model, loader, device, self.num_classes, amp=self.cfg.amp,
                                  amp_dtype=amp_dtype(self.cfg.amp_dtype))

    def describe(self, metrics: dict[str, Any]) -> str:
        return f"val mIoU {metrics['miou']:.4f}  pixel acc {metrics['pixel_acc']:.4f}" if "miou" in metrics else ""


def train(cfg: SegmentConfig) -> dict[str, Any]:
    """Train a Semantic FPN on the shared engine (``repvit segment train``); returns
    :func:`repvit.engine.run_task`'s summary."""
    from repvit.engine.run import run_task

    return run_task(SegmentTask(), cfg)

