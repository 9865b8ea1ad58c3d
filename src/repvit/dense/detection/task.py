"""Detection as a :class:`~repvit.engine.task.Task` on the shared engine, its config, and checkpoint evaluation.

``repvit detect train`` calls :func:`train`, which runs :class:`DetectTask` with a :class:`DetectConfig` through
:func:`repvit.engine.run_task` (checkpoints, exact resume, DDP, AMP, progress, ``metrics.jsonl``, curves).
The config's defaults are the built-in digits recipe (``configs/detect_digits.yaml``); the paper's Mask R-CNN 1x
recipe is ``configs/detect_maskrcnn_coco_1x.yaml``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn as nn

from repvit.engine.amp import amp_dtype, autocast_context
from repvit.engine.config import EngineConfig
from repvit.engine.task import Task, TaskData
from repvit.io import CheckpointError, check_task, checkpoint_task, load_torch
from repvit.runtime import resolve_device

from .coco import CategoryMap
from .data import DetectionData, build_detection_data, detect_collate
from .metrics import coco_evaluate, detections_to_coco
from .model import DETECTORS, DetectorSpec, build_detector, load_detector_weights

__all__ = ["DetectConfig", "DetectTask", "train", "detector_spec", "init_detector", "evaluate_checkpoint",
           "load_detector_checkpoint"]

_log = logging.getLogger("repvit.detect")


@dataclass(frozen=True)
class DetectConfig(EngineConfig):
    """A detection run: the engine's fields plus the detector, its data and its heads (defaults: digits recipe)."""

    model: str = "repvit_m0_6"
    output_dir: str = "runs/detect"
    img_size: int = 64  # short side after resizing (keeping the aspect ratio)
    max_size: int | None = None  # long side at most; None: img_size x 1333 / 800
    detector: str = "maskrcnn"  # maskrcnn | fasterrcnn | retinanet
    taps: str = "stage"
    frozen_bn: bool = False  # from scratch there are no ImageNet statistics to keep; the paper recipe sets True
    backbone_checkpoint: str | None = None  # classification checkpoint (any format), authors' downstream file, or ours
    hflip: float = 0.0
    # schedule (the engine's fields with detection defaults)
    epochs: int = 4
    batch_size: int = 8
    lr: float = 2e-3  # for a total batch of lr_base_batch
    lr_base_batch: int = 16
    min_lr: float = 1e-5
    warmup_epochs: int = 0
    warmup_steps: int | None = 50
    weight_decay: float = 0.05
    clip_grad: float | None = 5.0
    clip_mode: str = "norm"
    model_ema: bool = False
    eval_every: int = 2
    # heads (see DetectorSpec; MMDetection's defaults in the paper recipe, leaner ones here)
    fpn_channels: int = 96
    anchor_scale: int = 4
    rpn_batch_size_per_image: int = 256
    rpn_pre_nms_top_n_train: int = 200
    rpn_post_nms_top_n_train: int = 100
    rpn_pre_nms_top_n_test: int = 300
    rpn_post_nms_top_n_test: int = 100
    box_batch_size_per_image: int = 32
    box_head_dim: int = 256
    mask_head_channels: int = 64
    mask_head_convs: int = 2
    roi_sampling_ratio: int = 1
    box_score_thresh: float = 0.05
    box_nms_thresh: float = 0.5
    detections_per_img: int = 20
    # data
    scene_size: int = 64
    scene_min_digits: int = 1
    scene_max_digits: int = 4
    scene_scale_min: float = 0.35  # glyph side as a fraction of the scene (DigitScenes' scale range)
    scene_scale_max: float = 0.6
    train_scenes: int = 1800
    val_scenes: int = 256
    train_subset: int | None = None
    val_subset: int | None = None
    train_images: str | None = None  # COCO layout: other image folders / annotation files, relative to --data
    val_images: str | None = None
    train_annotations: str | None = None
    val_annotations: str | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.detector not in DETECTORS:
            raise ValueError(f"detector must be one of {', '.join(DETECTORS)}, got {self.detector!r}.")
        if self.img_size < 32:
            raise ValueError(f"img_size must be at least 32 (the RepViT minimum input), got {self.img_size}.")

    @property
    def min_size(self) -> int:
        return self.img_size

    @property
    def resolved_max_size(self) -> int:
        return self.max_size or math.ceil(self.img_size * 1333 / 800)


def detector_spec(cfg: DetectConfig) -> DetectorSpec:
    """The detector architecture a config asks for."""
    return dataclasses.replace(DetectorSpec.from_config(cfg), min_size=cfg.img_size, max_size=cfg.resolved_max_size)


def init_detector(model: nn.Module, path: str | os.PathLike) -> None:
    """Initial weights: a detection checkpoint of ours (whole detector; class layers of another class count are
    re-initialized with a warning), else backbone weights from any classification or downstream checkpoint."""
    from repvit.dense import load_backbone_checkpoint

    obj = None
    try:
        obj = load_torch(path)
    except CheckpointError:  # safetensors and others: the backbone reader names the problem
        obj = None
    if checkpoint_task(obj) == "detect":
        load_detector_weights(model, obj["model"], source=str(path))
        _log.info("initialized the detector from %s", path)
        return
    res = load_backbone_checkpoint(model.backbone.backbone, path)
    _log.info("initialized the backbone from %s (%s format)", path, res.source_format)


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


def load_detector_checkpoint(path: str | os.PathLike, *, weights: str = "model",
                             overrides: dict[str, Any] | None = None) -> tuple[nn.Module, DetectConfig, dict[str, Any]]:
    """The detector of a ``repvit detect train`` checkpoint (eval mode), its config and meta.

    ``weights``: ``model`` (the trained weights) or ``ema`` (the EMA copy, when the run kept one). ``overrides``
    change config keys that do not alter the weights (score threshold, detections per image, data keys).
    """
    from repvit.engine.checkpoint import load_train_checkpoint

    ckpt = load_train_checkpoint(path)
    check_task(ckpt, "detect", path)
    names = set(DetectConfig.__dataclass_fields__)
    saved = dict(ckpt["config"])
    saved.setdefault("scene_scale_min", 0.25)  # checkpoints from before the scale keys used DigitScenes' default
    saved.setdefault("scene_scale_max", 0.5)
    cfg = DetectConfig.from_dict({k: v for k, v in saved.items() if k in names})
    if overrides:
        cfg = cfg.replace(**overrides)
    meta = dict(ckpt.get("meta") or {})
    model = build_detector(detector_spec(cfg), int(meta["num_classes"]))
    sd = ckpt.get(weights)
    if sd is None:
        raise ValueError(f"{path} holds no {weights!r} weights (EMA was off in that run); use the model weights.")
    try:
        model.load_state_dict(sd)
    except RuntimeError as e:
        raise ValueError(f"{path}: the weights do not fit the detector its config describes "
                         f"(were architecture keys overridden?): {str(e)[:300]}") from None
    return model.eval(), cfg, meta


def evaluate_checkpoint(path: str | os.PathLike, *, data: str = "digits", fused: bool = False, batch_size: int = 8,
                        workers: int = 0, device: str = "cpu", overrides: dict[str, Any] | None = None
                        ) -> dict[str, Any]:
    """COCO AP of a detection checkpoint on the val split of ``data`` (``digits`` or a COCO-layout folder).

    The val split is read with the checkpoint's own settings (image size, digits scene parameters), which
    ``overrides`` (config keys: ``val_subset``, ``val_annotations``, ``box_score_thresh``, ...) may change.
    ``fused``: evaluate the deploy form (re-parameterized backbone).

    ``path`` may also be the authors' mmdet Mask R-CNN file (or its published name, e.g. ``repvit_m1_1_coco``): it
    is evaluated with their test settings (:func:`repvit.dense.authors.mmdet_detector_spec`), one image per batch
    as MMDetection's test loader, on the COCO-layout ``data`` (data keys in ``overrides`` apply).
    """
    from repvit.data.loader import eval_loader

    from ..checkpoint import read_authors_checkpoint
    from .model import fuse_detector

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
    if fused:
        model = fuse_detector(model, inplace=True)
    dev = resolve_device(device)
    model.to(dev)
    loader = eval_loader(d.val, batch_size, workers=workers, collate_fn=detect_collate)
    return evaluate_detector(model, loader, dev, d.categories, d.val_gt, masks=cfg.detector == "maskrcnn")


_DATA_KEYS = ("val_images", "val_annotations", "val_subset")


def _evaluate_authors(ckpt, *, data: str, fused: bool, workers: int, device: str,
                      overrides: dict[str, Any] | None) -> dict[str, Any]:
    from repvit.data.loader import eval_loader

    from .authors import maskrcnn_from_mmdet
    from .model import fuse_detector

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
    if fused:
        model = fuse_detector(model, inplace=True)
    dev = resolve_device(device)
    model.to(dev)
    # one image per batch (MMDetection's test loader): padding to a common size would change the features
    loader = eval_loader(d.val, 1, workers=workers, collate_fn=detect_collate)
    out = evaluate_detector(model, loader, dev, d.categories, d.val_gt, masks=True)
    return out
