"""``predict``: top-k classes with names for image files, from any checkpoint (:func:`list_images` finds them)."""

from __future__ import annotations

import os
from typing import Any

import torch

from repvit.data import digits_transform, eval_transform, imagenet_class_names, is_digits, list_images
from repvit.data.transforms import DEFAULT_CROP_PCT

__all__ = ["predict_images", "class_names_for"]


def class_names_for(meta: dict[str, Any], num_classes: int) -> list[str]:
    """The checkpoint's own class names, else ImageNet-1k's for 1000 classes, else the indices."""
    names = meta.get("class_names")
    if names and len(names) == num_classes:
        return list(names)
    if num_classes == 1000:
        return imagenet_class_names()
    return [str(i) for i in range(num_classes)]


@torch.no_grad()
def predict_images(checkpoint: str | os.PathLike, images: str | os.PathLike, *, topk: int = 5, fused: bool = False,
                   img_size: int | None = None, model_name: str | None = None) -> list[dict[str, Any]]:
    """Top-k predictions per image: ``[{"image", "topk": [{"index", "name", "prob"}...]} | {"image", "error"}]``.

    Preprocessing follows the checkpoint: the digits transform for a model trained on ``digits``, else the paper's
    eval transform at its training size (224 for published weights).
    """
    from PIL import Image

    from repvit.models import create_model, read_checkpoint

    ckpt = read_checkpoint(checkpoint)
    model = create_model(model_name, checkpoint=ckpt.state_dict if model_name else checkpoint,
                                fused=fused).eval()
    tc = ckpt.meta.get("train_config") or {}
    size = img_size or int(tc.get("img_size", 224))
    digits = is_digits(tc.get("data", ""))
    tf = digits_transform(size, model.in_chans) if digits else eval_transform(size, DEFAULT_CROP_PCT)
    names = class_names_for(ckpt.meta, model.num_classes)
    k = max(1, min(topk, model.num_classes))
    out = []
    for f in list_images(images):
        try:
            with Image.open(f) as im:
                x = tf(im.convert("RGB"))[None]
        except Exception as e:  # noqa: BLE001 - report the file and go on
            out.append({"image": str(f), "error": f"{type(e).__name__}: {e}"})
            continue
        prob = model(x).float().softmax(dim=1)[0]
        p, i = prob.topk(k)
        out.append({"image": str(f), "topk": [{"index": int(a), "name": names[int(a)], "prob": float(b)}
                                              for a, b in zip(i, p)]})
    return out
