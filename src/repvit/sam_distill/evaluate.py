"""SAM distillation's held-out evaluation: the embedding MSE of phase 1 (:func:`evaluate_embeddings`), phase 2's
mask metrics on fixed prompts (:func:`evaluate_prompts`), both over a loader and all-reduced across processes, and
:func:`evaluate_prompt_distill`, which scores any phase-1 or phase-2 student on the same held-out images, so the two
phases compare."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from repvit.engine.amp import amp_dtype, autocast_context
from repvit.engine.distributed import all_reduce_sum
from repvit.runtime import resolve_device

from .config import SamDistillConfig
from .data import prompt_masks_to
from .loss import mask_distill_loss, mask_iou
from .model import TeacherHead, teacher_best
from .prompt_sampling import decode_masks, low_res_valid, sample_mask_prompts, sample_prompts

__all__ = ["evaluate_embeddings", "evaluate_prompts", "evaluate_prompt_distill"]


def _amp(cfg: SamDistillConfig | None) -> tuple[bool, torch.dtype]:
    return bool(cfg and cfg.amp), amp_dtype(cfg.amp_dtype if cfg else None)


@torch.no_grad()
def evaluate_embeddings(model: nn.Module, loader, device: torch.device,
                        cfg: SamDistillConfig | None = None) -> dict[str, Any]:
    """The embedding MSE of a student image encoder against the teacher's cached embeddings (``(image, target)``
    batches), with ``cfg``'s AMP settings."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64)  # squared error, elements, images
    use_amp, dtype = _amp(cfg)
    for x, target in loader:
        with autocast_context(device, use_amp, dtype):
            out = model(x.to(device))
        err = (out.float() - target.to(device).float()).pow(2)
        sums += torch.tensor([err.sum().item(), err.numel(), x.shape[0]], dtype=torch.float64)
    model.train(was_training)
    sums = all_reduce_sum(sums)
    mse = sums[0].item() / max(sums[1].item(), 1.0)
    return {"mse": mse, "neg_mse": -mse, "loss": mse, "images": int(sums[2].item())}


def _add_image_prompts(sums: torch.Tensor, model: nn.Module, head: TeacherHead, emb: torch.Tensor,
                       temb: torch.Tensor, valid: torch.Tensor, hw: torch.Tensor, index: int, masks, n: int,
                       bce_w: float, dice_w: float) -> None:
    """Add loss, BCE, Dice, IoU sum, decodes and masks of one held-out image's fixed box and point prompts to
    ``sums[:6]``."""
    g = torch.Generator().manual_seed(1_000_003 * index + 17)
    for kind in ("box", "point"):
        if masks is None:
            points, boxes = sample_prompts(head, temb, valid, hw, n, kind, model.img_size, g)
        else:
            points, boxes = sample_mask_prompts(*masks, n, kind, model.img_size, g)
        s_m, _ = decode_masks(model.prompt_encoder, model.mask_decoder, emb, points, boxes)
        t_m, t_iou = decode_masks(head.prompt_encoder, head.mask_decoder, temb, points, boxes)
        loss, bce, dice = mask_distill_loss(s_m, t_m, valid, bce_w, dice_w)
        s_best, t_best = teacher_best(s_m, t_m, t_iou)
        iou = mask_iou(s_best > 0, t_best > 0, valid)
        sums[:6] += torch.tensor([loss.item(), bce.item(), dice.item(), iou.sum().item(), 1, s_m.shape[0]],
                                 dtype=torch.float64)


@torch.no_grad()
def evaluate_prompts(model: nn.Module, head: TeacherHead, loader, device: torch.device,
                     cfg: SamDistillConfig | None = None) -> dict[str, Any]:
    """Phase 2's held-out metrics of a :class:`~repvit.sam_distill.model.PromptDistillSam` against the teacher.

    On fixed prompts (drawn from a generator seeded by the image's index, so every student and every run sees the
    same ones): ``cfg.eval_prompts`` boxes and as many points per held-out image (from its annotated masks when the
    run uses them, fewer when it has fewer), decoded once. ``mask_loss`` is the training loss's first decode (BCE 5 +
    Dice 5 by default), ``miou`` the IoU of the student's and the teacher's best masks, ``mse`` the embedding MSE of
    phase 1.
    """
    was_training = model.training
    model.eval()
    n = cfg.eval_prompts if cfg is not None else 8
    bce_w, dice_w = (cfg.bce_weight, cfg.dice_weight) if cfg is not None else (5.0, 5.0)
    use_amp, dtype = _amp(cfg)
    sums = torch.zeros(7, dtype=torch.float64)  # loss, bce, dice, iou, decodes, masks, sq err; images below
    sq_elems, images = 0.0, 0
    for x, temb, hw, idx, masks in loader:
        x, temb, hw, masks = x.to(device), temb.to(device).float(), hw.to(device), prompt_masks_to(masks, device)
        with autocast_context(device, use_amp, dtype):
            emb = model.image_encoder(x)
        emb = emb.float()
        sums[6] += (emb - temb).pow(2).sum().item()
        sq_elems += emb.numel()
        images += x.shape[0]
        valid = low_res_valid(hw, 4 * emb.shape[-1], model.img_size)
        for b in range(x.shape[0]):
            _add_image_prompts(sums, model, head, emb[b:b + 1], temb[b:b + 1], valid[b], hw[b], int(idx[b]),
                               None if masks is None else masks[b], n, bce_w, dice_w)
    model.train(was_training)
    extra = all_reduce_sum(torch.tensor([sq_elems, images], dtype=torch.float64))
    sums = all_reduce_sum(sums)
    d = max(sums[4].item(), 1.0)
    loss = sums[0].item() / d
    mse = sums[6].item() / max(extra[0].item(), 1.0)
    return {"mask_loss": loss, "neg_mask_loss": -loss, "loss": loss, "bce": sums[1].item() / d,
            "dice": sums[2].item() / d, "miou": sums[3].item() / max(sums[5].item(), 1.0), "mse": mse,
            "images": int(extra[1].item())}


def evaluate_prompt_distill(cfg: SamDistillConfig, init: str | Path | None, teacher: nn.Module | None = None,
                            device: str | torch.device = "cpu", prompt_masks: str | None = None) -> dict[str, Any]:
    """The held-out metrics of :func:`evaluate_prompts` for the encoder in ``init`` (a phase-1 or phase-2
    checkpoint, any RepViT-SAM format; None: the untrained student of ``cfg.seed``) with the teacher's prompt
    encoder and mask decoder; for a phase-2 training checkpoint, with its own (trained) decoder. Compares phase 1
    and phase 2 on the same prompts."""
    from repvit.data.loader import eval_loader
    from repvit.engine.checkpoint import load_train_checkpoint
    from repvit.engine.distributed import DistInfo

    from .task import SamPromptDistillTask  # the task imports this module

    cfg = cfg.replace(phase="prompt", init=None if init is None else str(init))
    dev = resolve_device(device)
    task = SamPromptDistillTask(teacher, prompt_masks or cfg.prompt_masks)
    task.bind(cfg, DistInfo(device=dev))
    data = task.build_data(cfg, task.info)
    torch.manual_seed(cfg.seed)  # as the engine, before building the student
    model = task.build_model(cfg, data)
    ck = None
    if init is not None and Path(init).suffix == ".pt":
        ck = load_train_checkpoint(init)
    if ck is not None and ck.get("task") == SamPromptDistillTask.name:
        model.load_state_dict(ck["model"])
    model.to(dev)
    task.prepare(model, data, dev)
    loader = eval_loader(data.val, cfg.eval_batch_size or task.default_eval_batch_size, collate_fn=data.collate)
    return task.evaluate(model, loader, dev)
