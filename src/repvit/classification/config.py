"""Classification's configuration: :class:`TrainConfig`, the engine's fields plus augmentation, Mixup/CutMix and
distillation, and :func:`load_config` with it as the default class.

The defaults are the fast recipe for the built-in digits set, so ``repvit train --data digits --output-dir D`` needs
nothing else. The paper's ImageNet recipe is ``configs/repvit_m*_300e.yaml`` (see ``docs/training.md``).

Learning rate: ``lr`` is the rate for a total batch of ``lr_base_batch`` (512, as the paper); the rate used is
``lr × batch_size × world_size / lr_base_batch`` (:meth:`TrainConfig.scaled_lr`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from repvit.engine import config as _engine_config
from repvit.engine.config import EngineConfig

__all__ = ["TrainConfig", "load_config"]


@dataclass(frozen=True)
class TrainConfig(EngineConfig):
    """Classification: the engine's fields plus augmentation, Mixup/CutMix and distillation.

    The defaults are the fast recipe for the built-in digits set.
    """

    in_chans: int = 3
    # the digits schedule (the engine's fields with classification's defaults): 4 epochs of 42 steps at batch 32,
    # 10 warm-up steps, BatchNorm statistics that follow the weights (torch's 0.1 lags ~10 steps: 12.7% held-out
    # top-1 after epoch 1 where the batch statistics give 94%)
    epochs: int = 4
    batch_size: int = 32  # per process; twice batch 64's updates per epoch (5 seeds at >= 97.6% after epoch 2)
    lr: float = 3.2e-2  # for a total batch of 512: 32 -> 2e-3
    warmup_steps: int | None = 10
    bn_momentum: float | None = 0.5
    channels_last: bool | None = None  # NHWC on a CPU (0.87x the step of RepViT-M0.6 at 32 px), unchanged on CUDA
    finetune: str | None = None  # start from this checkpoint (any format; the head is dropped if classes differ)
    drop_path: float = 0.0
    drop_rate: float = 0.0
    # augmentation (ImageFolder: timm create_transform; digits: a small random affine)
    aa: str | None = "rand-m9-mstd0.5-inc1"
    color_jitter: float = 0.4
    reprob: float = 0.0
    remode: str = "pixel"
    recount: int = 1
    hflip: float = 0.5
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    digits_degrees: float = 10.0
    digits_translate: float = 0.1
    mixup: float = 0.0
    cutmix: float = 0.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    smoothing: float = 0.1
    repeated_aug: bool = False
    train_subset: int | None = None  # use only the first N training images (quick tests)
    val_subset: int | None = None  # evaluate on the first N held-out images only (quick tests)
    # distillation
    distillation: str = "none"  # none | hard | soft
    distillation_alpha: float = 0.5
    distillation_tau: float = 1.0
    teacher: str | None = None  # a timm model name or a repvit checkpoint path
    teacher_checkpoint: str | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.distillation not in ("none", "hard", "soft"):
            raise ValueError(f"distillation must be none, hard or soft, got {self.distillation!r}.")
        if self.distillation != "none" and not self.teacher:
            raise ValueError(f"--distillation {self.distillation} needs a teacher: --teacher NAME_OR_CHECKPOINT.")


def load_config(path: str | os.PathLike | None = None, overrides: Mapping[str, Any] | None = None,
                cls: type[EngineConfig] | None = None):
    """:func:`repvit.engine.config.load_config` with ``cls`` defaulting to :class:`TrainConfig`: its defaults, then
    the YAML recipe at ``path`` (if any), then ``overrides`` (a ``None`` sets the key to None)."""
    return _engine_config.load_config(path, overrides, cls=cls or TrainConfig)
