"""Classification metrics: :func:`evaluate` (top-1/top-5/loss of a model over a loader, the task's validation) and
:func:`evaluate_checkpoint` (the same for any checkpoint on ``digits`` or an ImageFolder ``val/`` tree)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from repvit.data import build_eval_dataset, is_digits
from repvit.data.loader import eval_loader
from repvit.data.transforms import DEFAULT_CROP_PCT
from repvit.engine.amp import autocast_context
from repvit.engine.distributed import all_reduce_sum
from repvit.runtime import resolve_device, torch_threads

__all__ = ["evaluate", "evaluate_checkpoint", "checkpoint_img_size", "unpack_batch"]


def unpack_batch(batch) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """``(images, labels, unreadable image paths)`` of a classification batch (the paths list may be absent)."""
    if len(batch) == 3:
        return batch
    return batch[0], batch[1], []


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, device: torch.device, *, amp: bool = False,
             amp_dtype: torch.dtype = torch.bfloat16, channels_last: bool = False) -> dict[str, Any]:
    """Top-1, top-5 (top-k with k = min(5, classes)), mean cross-entropy and image count.

    Under DDP each process evaluates its own shard and the sums are all-reduced, so every image counts once.
    Unreadable images (ImageFolder, not strict) are skipped and listed under ``bad_images``.
    """
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64)  # correct1, correct5, loss_sum, images
    bad: list[str] = []
    for batch in loader:
        x, y, b = unpack_batch(batch)
        bad.extend(b)
        if x.numel() == 0:
            continue
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast_context(device, amp, amp_dtype):
            out = model(x)
        if isinstance(out, (tuple, list)):
            out = (out[0] + out[1]) / 2
        out = out.float()
        k = min(5, out.shape[1])
        topk = out.topk(k, dim=1).indices
        hit = topk.eq(y[:, None])
        sums += torch.tensor([hit[:, 0].sum().item(), hit.any(dim=1).sum().item(),
                              F.cross_entropy(out, y, reduction="sum").item(), x.shape[0]], dtype=torch.float64)
    sums = all_reduce_sum(sums)
    n = max(sums[3].item(), 1)
    return {"top1": 100.0 * sums[0].item() / n, "top5": 100.0 * sums[1].item() / n, "loss": sums[2].item() / n,
            "images": int(sums[3].item()), "bad_images": bad}


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
