"""Image classification as a :class:`~repvit.engine.task.Task`: digits or ImageFolder data, timm's augmentation,
Mixup/CutMix, label smoothing and DeiT-style distillation. :func:`train` (``repvit train``) runs it on the shared
engine."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn as nn

from repvit.data import is_digits
from repvit.engine.amp import amp_dtype
from repvit.engine.run import run_task
from repvit.engine.task import Task, TaskData

from .config import TrainConfig
from .data import build_classification_data, data_config
from .distill import build_criterion, load_teacher
from .evaluate import evaluate as evaluate_classifier
from .evaluate import unpack_batch
from .model import build_model

__all__ = ["train", "ClassifyTask"]

_log = logging.getLogger(__name__)


class ClassifyTask(Task):
    """Classification on the built-in digits or an ImageFolder tree (``cfg`` is a :class:`TrainConfig`)."""

    name: ClassVar[str] = "classify"
    best_metric: ClassVar[str] = "top1"
    plot_label: ClassVar[str] = "accuracy (%)"
    plot_series: ClassVar[tuple[tuple[str, str], ...]] = (
        ("val_top1", "val top-1"), ("val_top5", "val top-5"), ("ema_top1", "EMA top-1"))
    resume_meta: ClassVar[Mapping[str, str]] = {"num_classes": "classes"}

    def __init__(self):
        self.bad_images: set[str] = set()
        self.criterion = None
        self.mixup_fn = None
        self.num_classes = 0
        self.class_names: list[str] = []

    def build_data(self, cfg: TrainConfig, info) -> TaskData:
        train_ds, val_ds, meta = build_classification_data(cfg)
        self.num_classes, self.class_names = meta["num_classes"], list(meta["class_names"])
        self.data_cfg = data_config(cfg, is_digits(cfg.data), self.class_names)
        return TaskData(train_ds, val_ds, meta=meta)

    def build_model(self, cfg: TrainConfig, data: TaskData) -> nn.Module:
        return build_model(cfg.replace(finetune=None) if self.resuming else cfg, data.meta["num_classes"])

    def prepare(self, model: nn.Module, data: TaskData, device: torch.device) -> None:
        cfg = self.cfg
        teacher = None
        if cfg.distillation != "none":
            teacher = load_teacher(cfg.teacher, cfg.teacher_checkpoint, self.num_classes, cfg.in_chans, device)
        self.criterion, self.mixup_fn = build_criterion(cfg, self.num_classes, teacher)

    @property
    def default_eval_batch_size(self) -> int:  # type: ignore[override]
        return max(self.cfg.batch_size, 64)

    def train_step(self, model: nn.Module, batch, device: torch.device):
        x, y, bad = unpack_batch(batch)
        self.bad_images.update(bad)
        if x.numel() == 0:
            return None
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if self.cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.mixup_fn is not None:
            if x.shape[0] % 2:  # timm's Mixup needs an even batch
                x, y = x[:-1], y[:-1]
            x, y = self.mixup_fn(x, y)
        return self.criterion(x, model(x), y), x.shape[0]

    def evaluate(self, model: nn.Module, loader, device: torch.device) -> dict[str, Any]:
        ev = evaluate_classifier(model, loader, device, amp=self.cfg.amp, amp_dtype=amp_dtype(self.cfg.amp_dtype),
                                 channels_last=self.cfg.channels_last)
        self.bad_images.update(ev.pop("bad_images"))
        return ev

    def checkpoint_extra(self, data: TaskData, best: float) -> dict[str, Any]:
        return {"class_names": self.class_names, "num_classes": self.num_classes, "in_chans": self.cfg.in_chans,
                "best_top1": best, "pretrained_cfg": self.data_cfg}  # create_model(checkpoint=...) restores it

    def describe(self, metrics: dict[str, Any]) -> str:
        return f"val top-1 {metrics['top1']:.2f}%" if "top1" in metrics else ""

    def summary(self, res: dict[str, Any]) -> dict[str, Any]:
        """:func:`~repvit.engine.run.run_task`'s summary with the classification entries, after a warning about
        the unreadable images skipped (if any)."""
        if self.bad_images and (not (torch.distributed.is_available() and torch.distributed.is_initialized())
                                or torch.distributed.get_rank() == 0):
            _log.warning("skipped %d unreadable images (e.g. %s); --strict-data makes them an error",
                         len(self.bad_images), sorted(self.bad_images)[0])
        last = res["eval"]
        res.update(best_top1=res["best"], top1=last.get("top1"), top5=last.get("top5"), loss=last.get("loss"),
                   bad_images=len(self.bad_images), num_classes=self.num_classes, class_names=self.class_names)
        return res


def train(config: TrainConfig | Mapping[str, Any]) -> dict[str, Any]:
    """Run one classification training (``repvit train``) and return its summary.

    Args:
        config: a :class:`TrainConfig` or a dict of its fields.

    Returns:
        ``best_checkpoint``, ``last_checkpoint`` (paths), ``best_top1``, ``top1``/``top5``/``loss`` of the last
        evaluation, ``epochs`` (completed), ``wall_time_s``, ``images_per_s`` (last epoch), ``output_dir``,
        ``curves_png`` (or None), ``bad_images`` (count of skipped unreadable images), ``interrupted``,
        ``num_classes``, ``class_names`` and ``model`` (the trained module, this process's copy).
    """
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    task = ClassifyTask()
    return task.summary(run_task(task, cfg))

