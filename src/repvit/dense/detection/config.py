"""Detection's configuration: :class:`DetectConfig`, the engine's fields plus the detector, its heads and its data.

The defaults are the built-in digits recipe (``configs/detect_digits.yaml``); the paper's Mask R-CNN 1x recipe is
``configs/detect_maskrcnn_coco_1x.yaml``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from repvit.engine.config import EngineConfig

from .model import DETECTORS

__all__ = ["DetectConfig"]


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
    channels_last: bool | None = None  # NHWC on a CPU, unchanged on CUDA
    # schedule (the engine's fields with detection defaults)
    epochs: int = 4
    batch_size: int = 8
    lr: float = 4e-3  # for a total batch of lr_base_batch
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
