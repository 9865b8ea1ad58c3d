"""Semantic segmentation as a :class:`~repvit.engine.task.Task` on the shared engine, and its checkpoints.

``train(cfg)`` (also named ``train_segmentation``) runs :class:`SegmentTask` with :func:`repvit.engine.run_task`
(atomic checkpoints, exact
resume, Ctrl-C, torchrun DDP, AMP, EMA, progress bar, ``metrics.jsonl``, ``curves.png``). The checkpoints are the
engine's (``OUT/best.pt`` / ``OUT/last.pt``): ``model`` holds the :class:`SemanticFPN` state dict, ``config`` the
:class:`SegmentConfig` and ``meta`` the class count and names. :func:`load_segmenter` rebuilds the model from one.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from repvit.data import is_digits
from repvit.engine.amp import amp_dtype, autocast_context
from repvit.engine.config import EngineConfig
from repvit.engine.distributed import all_reduce_sum
from repvit.engine.task import Task, TaskData
from repvit.io import check_task

from ..backbone import TAPS
from .data import (
    IGNORE_INDEX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ADE20KSegmentation,
    SegmentationView,
    eval_transform,
    resize_logits,
    segment_collate,
    train_transform,
)
from .metrics import confusion_matrix, metrics_from_confusion
from .model import SemanticFPN, build_semantic_fpn

__all__ = ["SegmentConfig", "SegmentTask", "train", "train_segmentation", "build_segment_datasets",
           "load_segmenter", "evaluate_segmenter", "load_segmentation_weights"]

_log = logging.getLogger("repvit.segment")


@dataclass(frozen=True)
class SegmentConfig(EngineConfig):
    """The engine's fields plus the segmentation model, data and augmentation (recipes: ``configs/segment_*``)."""

    img_size: int = 512  # training crop; evaluation resizes the shorter side to it; the digits canvas
    # model (the paper: segment taps, frozen BN, FPN 256, head 128, dropout 0.1)
    taps: str = "segment"
    frozen_bn: bool = True
    fpn_channels: int = 256
    head_channels: int = 128
    dropout: float = 0.1
    drop_path: float = 0.0
    backbone_checkpoint: str | None = None  # any classification checkpoint, or the authors' mmseg/mmdet file
    finetune: str | None = None  # a segmentation checkpoint of ours (another class count: the classifier is reset)
    # data
    reduce_zero_label: bool = True  # --data PATH: label 0 is "other" and ignored (ADE20K)
    scale_min: float = 0.5  # random resize of the shorter side to img_size x U(scale_min, scale_max)
    scale_max: float = 2.0
    hflip: float = 0.5
    photometric: bool = True
    train_scenes: int = 2000  # digits: scenes in the training split
    val_scenes: int = 256  # digits: held-out scenes (at least 200)
    scenes_seed: int = 0  # digits: the scenes (the same for every run seed, so results compare)
    # digits: the scenes, in the names detection uses too (DigitScenes' arguments)
    scene_min_digits: int = 1  # glyphs per scene, at least
    scene_max_digits: int = 4  # glyphs per scene, at most
    scene_scale_min: float = 0.25  # glyph side as a fraction of the canvas (DigitScenes' scale)
    scene_scale_max: float = 0.5

    RENAMED_KEYS: ClassVar[dict[str, str]] = {
        "digit_scale_min": "scene_scale_min", "digit_scale_max": "scene_scale_max", "max_digits": "scene_max_digits"}

    @property
    def digit_scale_min(self) -> float:
        """Deprecated name of :attr:`scene_scale_min`."""
        return self.scene_scale_min

    @property
    def digit_scale_max(self) -> float:
        """Deprecated name of :attr:`scene_scale_max`."""
        return self.scene_scale_max

    @property
    def max_digits(self) -> int:
        """Deprecated name of :attr:`scene_max_digits`."""
        return self.scene_max_digits

    def __post_init__(self):
        super().__post_init__()
        if self.taps not in TAPS:
            raise ValueError(f"taps must be one of {TAPS}, got {self.taps!r}.")
        if not 0 < self.scale_min <= self.scale_max:
            raise ValueError(f"need 0 < scale_min <= scale_max, got {self.scale_min}, {self.scale_max}.")
        if self.img_size < 32:
            raise ValueError(f"img_size must be at least 32 (RepViT's total stride), got {self.img_size}.")


def build_segment_datasets(cfg: SegmentConfig, *, train: bool = True) -> tuple[Any, Any, dict[str, Any]]:
    """``(train set or None, val set, meta)`` for ``cfg.data`` (``digits`` or an ADE20K-layout folder)."""
    if is_digits(cfg.data):
        from ..scenes import SCENE_CLASSES, DigitScenes

        if cfg.num_classes is not None and cfg.num_classes != len(SCENE_CLASSES):
            raise ValueError(f"--num-classes {cfg.num_classes} does not fit --data digits "
                             f"({len(SCENE_CLASSES)} classes: background and the ten digits).")
        kw = dict(size=cfg.img_size, seed=cfg.scenes_seed, scale=(cfg.scene_scale_min, cfg.scene_scale_max),
                  min_digits=cfg.scene_min_digits, max_digits=cfg.scene_max_digits, instances=False)
        # rendered scenes are cached (size**2 * (3 + max_digits) bytes each: 49 MB for 2000 scenes of 64 px); the
        # random augmentation is still drawn afresh on every access
        tr = DigitScenes("train", num_scenes=cfg.train_scenes, **kw) if train else None
        va = DigitScenes("val", num_scenes=cfg.val_scenes, **kw)
        names, ignore_bg = list(SCENE_CLASSES), False
    else:
        root = Path(cfg.data)
        if not root.is_dir():
            raise FileNotFoundError(f"--data {cfg.data}: not 'digits' and not a directory (ADE20K layout expected).")
        kw = dict(num_classes=cfg.num_classes, reduce_zero_label=cfg.reduce_zero_label)
        tr = ADE20KSegmentation(root, "training", **kw) if train else None
        va = ADE20KSegmentation(root, "validation", **kw)
        names, ignore_bg = list(va.classes), cfg.reduce_zero_label
    if tr is not None:
        tr = SegmentationView(tr, train_transform(cfg.img_size, scale=(cfg.scale_min, cfg.scale_max),
                                                  hflip=cfg.hflip, photometric=cfg.photometric), train=True)
    va = SegmentationView(va, eval_transform(cfg.img_size), train=False)
    meta = {"num_classes": len(names), "class_names": names, "ignore_index": IGNORE_INDEX,
            "reduce_zero_label": ignore_bg, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
            "data": "digits" if is_digits(cfg.data) else "ade20k-layout"}
    return tr, va, meta


def load_segmentation_weights(model: SemanticFPN, path: str | Path) -> None:
    """Load a segmentation checkpoint of ours into ``model`` for fine-tuning.

    A classifier with another class count is not loaded: it is re-initialised, with a warning naming the file.
    """
    from repvit.engine.checkpoint import load_train_checkpoint

    ckpt = load_train_checkpoint(path)
    check_task(ckpt, "segment", path, "To start from a classifier use --backbone-checkpoint.")
    sd = dict(ckpt["model"])
    cls_w = sd.get("head.classifier.weight")
    if cls_w is not None and cls_w.shape[0] != model.num_classes:
        warnings.warn(f"{path} has a {cls_w.shape[0]}-class head but the model has {model.num_classes} classes: "
                      "the classifier is re-initialised (fine-tuning).", stacklevel=2)
        sd = {k: v for k, v in sd.items() if not k.startswith("head.classifier.")}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.startswith("head.classifier.")]
    if missing or unexpected:
        raise ValueError(f"{path} does not fit this model ({model.backbone.build_info.get('model_name')}): missing "
                         f"{missing[:5]}, unexpected {unexpected[:5]}; use the model it was trained with (--model).")


def _model_from_cfg(cfg: SegmentConfig, num_classes: int, backbone_checkpoint: str | None) -> SemanticFPN:
    return build_semantic_fpn(cfg.model, num_classes=num_classes, taps=cfg.taps, frozen_bn=cfg.frozen_bn,
                              fpn_channels=cfg.fpn_channels, head_channels=cfg.head_channels, dropout=cfg.dropout,
                              drop_path_rate=cfg.drop_path, backbone_checkpoint=backbone_checkpoint)


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


train_segmentation = train  # the older name of the entry point


def load_segmenter(path: str | Path, *, use_ema: bool = False) -> tuple[SemanticFPN, SegmentConfig, dict[str, Any]]:
    """Rebuild the trained model from a segmentation checkpoint: ``(model in eval mode, config, meta)``."""
    from repvit.engine.checkpoint import load_train_checkpoint

    ckpt = load_train_checkpoint(path)
    check_task(ckpt, "segment", path)
    cfg = SegmentConfig.from_dict(ckpt["config"])
    meta = dict(ckpt.get("meta") or {})
    model = _model_from_cfg(cfg, int(meta["num_classes"]), None)
    sd = ckpt["ema"] if use_ema and ckpt.get("ema") is not None else ckpt["model"]
    model.load_state_dict(sd)
    return model.eval(), cfg, meta
