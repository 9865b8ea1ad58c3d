"""Segmentation's configuration: :class:`SegmentConfig`, the engine's fields plus the Semantic FPN model, the data
and the augmentation (recipes: ``configs/segment_*``)."""

from __future__ import annotations

from dataclasses import dataclass

from repvit.engine.config import EngineConfig

from ..backbone import TAPS

__all__ = ["SegmentConfig"]


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

    def __post_init__(self):
        super().__post_init__()
        if self.taps not in TAPS:
            raise ValueError(f"taps must be one of {TAPS}, got {self.taps!r}.")
        if not 0 < self.scale_min <= self.scale_max:
            raise ValueError(f"need 0 < scale_min <= scale_max, got {self.scale_min}, {self.scale_max}.")
        if self.img_size < 32:
            raise ValueError(f"img_size must be at least 32 (RepViT's total stride), got {self.img_size}.")
