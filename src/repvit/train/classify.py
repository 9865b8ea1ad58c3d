"""Image classification as a :class:`~repvit.train.task.Task`: digits or ImageFolder data, timm's augmentation,
Mixup/CutMix, label smoothing and DeiT-style distillation. ``repvit train`` runs it on the shared engine."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import torch
import torch.nn as nn
from torch.utils.data import Subset

from repvit.data import build_datasets, is_digits

from .config import TrainConfig
from .distill import DistillationLoss, load_teacher
from .engine import evaluate as evaluate_classifier
from .task import Task, TaskData

__all__ = ["ClassifyTask", "build_model", "build_criterion"]

_log = logging.getLogger("repvit.train")


def _finetune_file(finetune: str) -> str:
    """A fine-tuning source: a file as it is, or published weights by name (downloaded once, then cached)."""
    import os

    if os.path.exists(finetune):
        return finetune
    from repvit.weights import UnknownWeightsError, download_weights, get_weights

    try:
        entry = get_weights(finetune)
    except UnknownWeightsError:
        return finetune  # the loader says the file does not exist
    return str(download_weights(entry))


def build_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    """The student: ``cfg.model`` with ``num_classes``, a distillation head when distilling, optional fine-tune
    weights (any checkpoint format; a head with another class count is dropped and re-initialised)."""
    from repvit.models import create_model
    from repvit.models.checkpoint import load_checkpoint

    model = create_model(cfg.model, num_classes=num_classes, in_chans=cfg.in_chans,
                                distillation=cfg.distillation != "none", drop_rate=cfg.drop_rate,
                                drop_path_rate=cfg.drop_path)
    if cfg.finetune:
        res = load_checkpoint(model, _finetune_file(cfg.finetune), strict=False)
        body_missing = [k for k in res.missing if not k.startswith("head.")]
        if body_missing or res.unexpected:
            raise ValueError(f"--set finetune={cfg.finetune} does not fit {cfg.model}: missing {body_missing[:5]}, "
                             f"unexpected {res.unexpected[:5]}. Pick the model the checkpoint was trained as.")
        _log.info("fine-tuning from %s (%s format%s)", cfg.finetune, res.source_format,
                  ", new head" if res.dropped else "")
    return model


def build_criterion(cfg: TrainConfig, num_classes: int, teacher: nn.Module | None):
    """The loss (with distillation when asked) and timm's Mixup/CutMix (or None)."""
    from timm.data import Mixup
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

    mixup_fn = None
    if cfg.mixup > 0 or cfg.cutmix > 0:
        mixup_fn = Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, prob=cfg.mixup_prob,
                         switch_prob=cfg.mixup_switch_prob, label_smoothing=cfg.smoothing, num_classes=num_classes)
        base = SoftTargetCrossEntropy()
    elif cfg.smoothing > 0:
        base = LabelSmoothingCrossEntropy(cfg.smoothing)
    else:
        base = nn.CrossEntropyLoss()
    return DistillationLoss(base, teacher, cfg.distillation, cfg.distillation_alpha, cfg.distillation_tau), mixup_fn


def _aug_kwargs(cfg: TrainConfig, digits: bool) -> dict[str, Any]:
    if digits:
        return dict(degrees=cfg.digits_degrees, translate=cfg.digits_translate, re_prob=cfg.reprob)
    return dict(auto_augment=cfg.aa, color_jitter=cfg.color_jitter, re_prob=cfg.reprob, re_mode=cfg.remode,
                re_count=cfg.recount, hflip=cfg.hflip)


def _data_config(cfg: TrainConfig, digits: bool, class_names: list[str]) -> dict[str, Any]:
    """The preprocessing the trained weights expect (the data fields of timm's ``pretrained_cfg``)."""
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    from repvit.data.digits import DIGITS_MEAN, DIGITS_STD

    n = cfg.in_chans
    if digits:
        mean, std = [DIGITS_MEAN] * n, [DIGITS_STD] * n
    else:
        mean, std = list(IMAGENET_DEFAULT_MEAN), list(IMAGENET_DEFAULT_STD)
    return {"input_size": [n, cfg.img_size, cfg.img_size], "interpolation": "bicubic" if digits else cfg.interpolation,
            "crop_pct": 1.0 if digits else cfg.crop_pct, "crop_mode": "center", "mean": mean, "std": std,
            "label_names": list(class_names)}


def _unpack(batch) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    if len(batch) == 3:
        return batch
    return batch[0], batch[1], []


class ClassifyTask(Task):
    """Classification on the built-in digits or an ImageFolder tree (``cfg`` is a :class:`TrainConfig`)."""

    name: ClassVar[str] = "classify"
    best_metric: ClassVar[str] = "top1"
    plot_label: ClassVar[str] = "accuracy (%)"

    def __init__(self):
        self.bad_images: set[str] = set()
        self.criterion = None
        self.mixup_fn = None
        self.num_classes = 0
        self.class_names: list[str] = []

    def build_data(self, cfg: TrainConfig, info) -> TaskData:
        data = build_datasets(cfg.data, img_size=cfg.img_size, in_chans=cfg.in_chans, strict=cfg.strict_data,
                              aug=_aug_kwargs(cfg, is_digits(cfg.data)), crop_pct=cfg.crop_pct,
                              interpolation=cfg.interpolation)
        train_ds = data.train
        if cfg.train_subset:
            train_ds = Subset(train_ds, range(min(cfg.train_subset, len(train_ds))))
        val_ds = data.val if not cfg.val_subset else Subset(data.val, range(min(cfg.val_subset, len(data.val))))
        if cfg.num_classes is not None and cfg.num_classes != data.num_classes:
            raise ValueError(f"num_classes={cfg.num_classes} but {cfg.data} has {data.num_classes} classes.")
        self.num_classes, self.class_names = data.num_classes, list(data.class_names)
        self.data_cfg = _data_config(cfg, is_digits(cfg.data), self.class_names)
        return TaskData(train_ds, val_ds, meta={"num_classes": data.num_classes,
                                                "class_names": list(data.class_names)})

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
        x, y, bad = _unpack(batch)
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
        amp_dtype = torch.float16 if self.cfg.amp_dtype == "float16" else torch.bfloat16
        ev = evaluate_classifier(model, loader, device, amp=self.cfg.amp, amp_dtype=amp_dtype,
                                 channels_last=self.cfg.channels_last)
        self.bad_images.update(ev.pop("bad_images"))
        return ev

    def checkpoint_extra(self, data: TaskData, best: float) -> dict[str, Any]:
        return {"class_names": self.class_names, "num_classes": self.num_classes, "in_chans": self.cfg.in_chans,
                "best_top1": best, "pretrained_cfg": self.data_cfg}  # create_model(checkpoint=...) restores it

    def describe(self, metrics: dict[str, Any]) -> str:
        return f"val top-1 {metrics['top1']:.2f}%" if "top1" in metrics else ""
