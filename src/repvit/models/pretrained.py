"""``pretrained_cfg`` / ``default_cfg``: a model's preprocessing and head metadata, built the way timm builds it.

timm attaches to every model a ``pretrained_cfg`` dict (``default_cfg`` is the same dict): the input size,
interpolation, crop, mean and std its weights expect, plus the names of the first convolution and the classifier so
that weights can be adapted to other input channels or class counts. ``timm.data.resolve_model_data_config(model)``
reads it. Ours is made from timm's own :class:`timm.models.PretrainedCfg`, filled with the paper's evaluation
transform (224 px, resize 256 + centre crop 224 = crop 0.875, bicubic, ImageNet mean/std).

Two kinds of fields:

* data fields (:data:`DATA_KEYS`): what the weights were trained on. A model trained on another data set carries
  its own (e.g. the digits at 32 px, mean 0.5, std 0.5); checkpoints store them and ``create_model`` restores them.
* structure fields (``num_classes``, ``pool_size``, ``first_conv``, ``classifier``): read from the model itself, and
  refreshed when the head is replaced or the model is fused (fused layers have other names).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch.nn as nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import PretrainedCfg

__all__ = ["DATA_KEYS", "init_pretrained_cfg", "refresh_pretrained_cfg", "set_data_config", "data_config_of"]

DATA_KEYS = (
    "input_size",
    "test_input_size",
    "interpolation",
    "crop_pct",
    "test_crop_pct",
    "crop_mode",
    "mean",
    "std",
    "label_names",
)
_TOTAL_STRIDE = 32
_PAPER_IMG_SIZE = 224
_PAPER_CROP_PCT = 0.875  # resize 256, centre crop 224


def _default_mean_std(in_chans: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if in_chans == 3:
        return tuple(IMAGENET_DEFAULT_MEAN), tuple(IMAGENET_DEFAULT_STD)
    # another channel count: the ImageNet average for every channel (timm's models keep 3 values, which
    # resolve_data_config then rejects for such a model)
    mean, std = sum(IMAGENET_DEFAULT_MEAN) / 3, sum(IMAGENET_DEFAULT_STD) / 3
    return (mean,) * in_chans, (std,) * in_chans


def _first_conv(model: nn.Module) -> str | None:
    return next((n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)


def _classifier(model: nn.Module) -> str | tuple[str, ...] | None:
    """The Linear layer(s) that produce the logits: ``head.head.l`` (+ ``head.head_dist.l``), ``head`` when fused."""
    head = getattr(model, "head", None)
    num_classes = int(getattr(model, "num_classes", 0) or 0)
    if not isinstance(head, nn.Module) or num_classes <= 0:
        return None
    linears = [("head." + n).rstrip(".") for n, m in head.named_modules()
               if isinstance(m, nn.Linear) and m.out_features == num_classes]
    main = [n for n in linears if not n.endswith("head_dist") and not n.endswith("head_dist.l")]
    dist = [n for n in linears if n not in main]
    names = main[-1:] + dist  # a hidden Linear of the same width (MobileNetV3's head) comes before the logits
    if not names:
        return None
    return names[0] if len(names) == 1 else tuple(names)


def _pool_size(input_size: tuple[int, ...]) -> tuple[int, int]:
    return math.ceil(input_size[-2] / _TOTAL_STRIDE), math.ceil(input_size[-1] / _TOTAL_STRIDE)


def refresh_pretrained_cfg(model: nn.Module) -> dict[str, Any]:
    """Re-read the structure fields (class count, pooled size, first conv and classifier names) from ``model``.

    Called after the head is replaced or the model is fused; keeps the data fields.
    """
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    cfg.update(num_classes=int(getattr(model, "num_classes", 0) or 0), pool_size=_pool_size(cfg["input_size"]),
               first_conv=_first_conv(model), classifier=_classifier(model))
    model.pretrained_cfg = model.default_cfg = cfg  # one dict under both names, as timm does
    return cfg


def init_pretrained_cfg(model: nn.Module, architecture: str | None = None, **data: Any) -> dict[str, Any]:
    """Give ``model`` a timm ``pretrained_cfg`` with the paper's preprocessing (or the ``data`` fields given)."""
    in_chans = int(getattr(model, "in_chans", 3))
    mean, std = _default_mean_std(in_chans)
    cfg = PretrainedCfg(
        architecture=architecture,
        input_size=(in_chans, _PAPER_IMG_SIZE, _PAPER_IMG_SIZE),
        min_input_size=(in_chans, _TOTAL_STRIDE, _TOTAL_STRIDE),
        interpolation="bicubic",
        crop_pct=_PAPER_CROP_PCT,
        crop_mode="center",
        mean=mean,
        std=std,
        paper_name="RepViT: Revisiting Mobile CNN From ViT Perspective",
        paper_ids="arXiv:2307.09283",
        license="apache-2.0",
    ).to_dict()
    model.pretrained_cfg = cfg
    if data:
        set_data_config(model, **data)
    return refresh_pretrained_cfg(model)


def _as_float_tuple(name: str, v: Any, in_chans: int) -> tuple[float, ...]:
    vals = (float(v),) if isinstance(v, (int, float)) else tuple(float(a) for a in v)
    if len(vals) == 1:
        vals = vals * in_chans
    if len(vals) != in_chans:
        raise ValueError(f"{name} has {len(vals)} values but the model takes {in_chans} input channels; give one "
                         f"value or {in_chans}.")
    return vals


def set_data_config(model: nn.Module, **data: Any) -> dict[str, Any]:
    """Record what the model's weights expect: ``input_size`` (or ``img_size``), ``mean``, ``std``, ...

    Args:
        model: a model with a ``pretrained_cfg``.
        data: any of :data:`DATA_KEYS`, or ``img_size`` (an int or ``(H, W)``) for ``input_size``. ``None`` values
            are ignored; a single ``mean``/``std`` value is repeated for every input channel.
    """
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    if not cfg:
        raise ValueError(f"{type(model).__name__} has no pretrained_cfg; build it with repvit.create_model.")
    in_chans = int(getattr(model, "in_chans", cfg["input_size"][0]))
    data = {k: v for k, v in data.items() if v is not None}
    img = data.pop("img_size", None)
    if img is not None:
        h, w = (img, img) if isinstance(img, int) else tuple(img)
        data["input_size"] = (in_chans, int(h), int(w))
    unknown = sorted(set(data) - set(DATA_KEYS))
    if unknown:
        raise ValueError(f"unknown data config keys {unknown}; expected some of {list(DATA_KEYS)} or img_size.")
    for key in ("input_size", "test_input_size"):
        if key in data:
            size = tuple(int(s) for s in data[key])
            if len(size) != 3 or size[0] != in_chans or min(size[1:]) < _TOTAL_STRIDE:
                raise ValueError(f"{key} must be ({in_chans}, H, W) with H, W >= {_TOTAL_STRIDE}, got {size}.")
            data[key] = size
    for key in ("mean", "std"):
        if key in data:
            data[key] = _as_float_tuple(key, data[key], in_chans)
    if "label_names" in data:
        data["label_names"] = tuple(str(n) for n in data["label_names"])
    cfg.update(data)
    model.pretrained_cfg = cfg
    return refresh_pretrained_cfg(model)


def data_config_of(model_or_cfg: nn.Module | Mapping[str, Any]) -> dict[str, Any]:
    """The data fields of a model's ``pretrained_cfg`` (what checkpoints store), JSON-friendly."""
    cfg = model_or_cfg if isinstance(model_or_cfg, Mapping) else getattr(model_or_cfg, "pretrained_cfg", {}) or {}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items() if k in DATA_KEYS and v is not None}
