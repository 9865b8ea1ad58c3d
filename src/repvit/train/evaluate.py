"""``evaluate_checkpoint``: top-1/top-5/loss of any checkpoint on ``digits`` or an ImageFolder ``val/`` tree."""

from __future__ import annotations

import os
from typing import Any

from repvit.data import build_eval_dataset, is_digits
from repvit.data.loader import eval_loader
from repvit.data.transforms import DEFAULT_CROP_PCT
from repvit.runtime import resolve_device, torch_threads

from .engine import evaluate

__all__ = ["evaluate_checkpoint", "checkpoint_img_size"]


def checkpoint_img_size(meta: dict[str, Any], default: int = 224) -> int:
    """The input size a checkpoint was trained at (from its training config), else ``default``."""
    tc = meta.get("train_config") or {}
    return int(tc.get("img_size", default))


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    data: str | os.PathLike = "digits",
    *,
    fused: bool = False,
    img_size: int | None = None,
    crop_pct: float = DEFAULT_CROP_PCT,
    interpolation: str = "bicubic",
    batch_size: int = 128,
    workers: int = 0,
    device: str = "cpu",
    strict_data: bool = False,
    model_name: str | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Evaluate a checkpoint (any format: training ``.pt``, repvit safetensors, timm, the authors' release).

    Args:
        checkpoint: the file.
        data: ``"digits"`` (its held-out split) or an ImageFolder tree (``DATA/val`` or ``DATA`` itself).
        fused: evaluate the re-parameterized deploy model.
        img_size: input size; default: the checkpoint's training size, else 224 (the paper's resize 256 + crop 224;
            ``crop_pct`` sets the resize for other sizes).
        model_name: the architecture, for a state dict that does not say (timm / authors' files are inferred).
        threads: torch CPU threads; default 1 for digits (tiny images, robust on a busy machine), else torch's.

    Returns:
        ``top1``, ``top5`` (percent), ``loss`` (mean cross-entropy), ``images``, ``bad_images`` (skipped count),
        ``model``, ``fused``, ``img_size``, ``data``.

    Raises:
        ValueError: the checkpoint's class count (or class names) does not match the data.
    """
    with torch_threads(threads or (1 if is_digits(data) else None)):
        return _evaluate(checkpoint, data, fused, img_size, crop_pct, interpolation, batch_size, workers, device,
                         strict_data, model_name)


def _evaluate(checkpoint, data, fused, img_size, crop_pct, interpolation, batch_size, workers, device, strict_data,
              model_name) -> dict[str, Any]:
    from repvit.models import create_model, read_checkpoint

    ckpt = read_checkpoint(checkpoint)
    model = create_model(model_name, checkpoint=ckpt.state_dict if model_name else checkpoint, fused=fused)
    size = img_size or checkpoint_img_size(ckpt.meta, 32 if is_digits(data) else 224)
    bundle = build_eval_dataset(data, size, getattr(model, "in_chans", 3), crop_pct, interpolation, strict_data)
    n_model = getattr(model, "num_classes", None)
    if n_model != bundle.num_classes:
        raise ValueError(
            f"wrong number of classes: the checkpoint predicts {n_model} classes but {data} has "
            f"{bundle.num_classes}. Evaluate on the data it was trained for, or fine-tune it first "
            f"(repvit train --set finetune={checkpoint} --data {data})."
        )
    names = ckpt.meta.get("class_names")
    if names and not is_digits(data) and list(names) != list(bundle.class_names):
        raise ValueError(f"the checkpoint's classes ({list(names)[:5]}...) are not the class folders of {data} "
                         f"({bundle.class_names[:5]}...), so labels would not line up.")
    dev = resolve_device(device)
    model.to(dev)
    res = evaluate(model, eval_loader(bundle.val, batch_size, workers=workers), dev)
    res["bad_images"] = len(res["bad_images"])
    res.update(model=model.build_info.get("model_name"), fused=fused, img_size=size, data=str(data))
    return res
