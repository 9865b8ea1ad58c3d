"""Classification's data: :func:`build_classification_data` (a run's train and val sets, ``digits`` or an
ImageFolder tree, with timm's augmentation) and :func:`data_config` (the preprocessing the trained weights expect)."""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset, Subset

from repvit.data import build_datasets, is_digits

from .config import TrainConfig

__all__ = ["build_classification_data", "data_config"]


def build_classification_data(cfg: TrainConfig) -> tuple[Dataset, Dataset, dict[str, Any]]:
    """``(train set, val set, meta)`` for ``cfg.data``; meta holds ``num_classes`` and ``class_names``.

    Raises:
        ValueError: ``cfg.num_classes`` is set and is not the data's class count.
    """
    data = build_datasets(cfg.data, img_size=cfg.img_size, in_chans=cfg.in_chans, strict=cfg.strict_data,
                          aug=_aug_kwargs(cfg, is_digits(cfg.data)), crop_pct=cfg.crop_pct,
                          interpolation=cfg.interpolation)
    train_ds = data.train
    if cfg.train_subset:
        train_ds = Subset(train_ds, range(min(cfg.train_subset, len(train_ds))))
    val_ds = data.val if not cfg.val_subset else Subset(data.val, range(min(cfg.val_subset, len(data.val))))
    if cfg.num_classes is not None and cfg.num_classes != data.num_classes:
        raise ValueError(f"num_classes={cfg.num_classes} but {cfg.data} has {data.num_classes} classes.")
    return train_ds, val_ds, {"num_classes": data.num_classes, "class_names": list(data.class_names)}


def _aug_kwargs(cfg: TrainConfig, digits: bool) -> dict[str, Any]:
    if digits:
        return dict(degrees=cfg.digits_degrees, translate=cfg.digits_translate, re_prob=cfg.reprob)
    return dict(auto_augment=cfg.aa, color_jitter=cfg.color_jitter, re_prob=cfg.reprob, re_mode=cfg.remode,
                re_count=cfg.recount, hflip=cfg.hflip)


def data_config(cfg: TrainConfig, digits: bool, class_names: list[str]) -> dict[str, Any]:
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
