"""Train and eval transforms: timm's presets for ImageFolder data, a light affine augmentation for digits."""

from __future__ import annotations

import math

import torch
from timm.data import create_transform
from timm.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

__all__ = ["DEFAULT_CROP_PCT", "eval_transform", "train_transform", "digits_train_transform", "resize_size"]

DEFAULT_CROP_PCT = 0.875  # the paper's eval: resize 256, centre crop 224


def resize_size(img_size: int, crop_pct: float = DEFAULT_CROP_PCT) -> int:
    """The resize side before the centre crop: ``floor(img_size / crop_pct)`` (256 for 224)."""
    return int(math.floor(img_size / crop_pct))


def eval_transform(img_size: int = 224, crop_pct: float = DEFAULT_CROP_PCT, interpolation: str = "bicubic"):
    """The paper's eval transform: resize the short side to ``img_size / crop_pct`` (bicubic), centre crop."""
    return create_transform(img_size, is_training=False, interpolation=interpolation, crop_pct=crop_pct,
                            mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD)


def train_transform(
    img_size: int = 224,
    *,
    auto_augment: str | None = "rand-m9-mstd0.5-inc1",
    color_jitter: float = 0.4,
    interpolation: str = "bicubic",
    re_prob: float = 0.25,
    re_mode: str = "pixel",
    re_count: int = 1,
    hflip: float = 0.5,
):
    """timm's training preset: random-resized crop, flip, RandAugment, colour jitter, random erasing."""
    return create_transform(img_size, is_training=True, auto_augment=auto_augment or None,
                            color_jitter=color_jitter, interpolation=interpolation, re_prob=re_prob,
                            re_mode=re_mode, re_count=re_count, hflip=hflip,
                            mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD)


def digits_train_transform(degrees: float = 10.0, translate: float = 0.1, scale: tuple[float, float] = (0.9, 1.1),
                           re_prob: float = 0.0):
    """Augmentation for the (already preprocessed) digits tensors: a small random affine, optional erasing.

    No flips: a mirrored digit is another digit or none.
    """
    from timm.data.random_erasing import RandomErasing
    from torchvision.transforms import v2

    from .digits import DIGITS_MEAN, DIGITS_STD

    ops: list = [v2.RandomAffine(degrees=degrees, translate=(translate, translate), scale=scale,
                                 fill=(0.0 - DIGITS_MEAN) / DIGITS_STD)]
    if re_prob > 0:
        ops.append(RandomErasing(re_prob, mode="pixel", device="cpu"))
    return v2.Compose(ops) if ops else torch.nn.Identity()
