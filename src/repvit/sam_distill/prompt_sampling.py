"""Prompt sampling for phase 2 of SAM distillation (:class:`~repvit.sam_distill.task.SamPromptDistillTask`):
prompts from the teacher's masks or from annotated masks, and refinement points from where the student's and the
teacher's masks disagree.

Everything works in SAM's frames: prompts are ``(x, y)`` in the input frame (the image resized so its longer side is
``img_size``, padded at the bottom and right), masks are SAM's low-resolution masks (``img_size / 4`` square). Each
sampler takes an optional ``torch.Generator`` for reproducible draws (the held-out prompts); without one it draws from
the device's global RNG, which the engine saves and restores on resume.
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["low_res_valid", "sample_refine_points", "decode_masks", "sample_prompts", "sample_mask_prompts"]


def _rand(shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    """Uniform [0, 1) numbers on ``device``: from the device's global RNG, or from ``generator`` (on its device)."""
    if generator is None:
        return torch.rand(shape, device=device)
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def _pick(region: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One uniformly random pixel of each ``region[i]`` ((N, H, W) bool): flat indices (N,) and whether the region
    had any pixel (N,) (the index is then meaningless)."""
    scores = _rand(tuple(region.shape), region.device, generator).masked_fill(~region, -1.0).flatten(1)
    return scores.argmax(1), region.flatten(1).any(1)


def _pixel_to_input(flat: torch.Tensor, hw: tuple[int, int], img_size: int) -> torch.Tensor:
    """Flat indices into an (H, W) low-resolution mask -> (N, 2) ``(x, y)`` at pixel centres in the input frame
    (``img_size`` square, where SAM's prompt encoder takes coordinates)."""
    h, w = hw
    rows, cols = flat // w, flat % w
    return torch.stack([(cols.float() + 0.5) * (img_size / w), (rows.float() + 0.5) * (img_size / h)], dim=1)


def low_res_valid(valid_hw: torch.Tensor, side: int, img_size: int) -> torch.Tensor:
    """(B, side, side) bool: the pixels of a low-resolution mask (``side`` = img_size / 4) that cover the image and
    not its bottom/right padding, for images resized to ``valid_hw`` (B, 2) ``(h, w)`` inside ``img_size``."""
    idx = torch.arange(side, device=valid_hw.device)
    lim = torch.ceil(valid_hw.float() * side / img_size).long()  # (B, 2)
    return (idx[None, :, None] < lim[:, 0, None, None]) & (idx[None, None, :] < lim[:, 1, None, None])


def sample_refine_points(student: torch.Tensor, teacher: torch.Tensor, valid: torch.Tensor | None, img_size: int,
                         generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One refinement point per mask from where the student's and the teacher's binary masks disagree.

    Args:
        student, teacher: (N, H, W) bool low-resolution masks.
        valid: (N, H, W) or (H, W) bool, the pixels that may be picked (None: all).
        img_size: the input side; the point is returned in input coordinates (SAM's prompt frame).
        generator: a ``torch.Generator`` for reproducible draws (None: the device's global RNG).

    Returns:
        ``coords`` (N, 1, 2) ``(x, y)`` and ``labels`` (N, 1) int64: a pixel drawn uniformly from the error region;
        label 1 where it is a false negative of the student (teacher foreground), 0 where it is a false positive
        (teacher background); where the masks agree everywhere, label -1 (SAM's "not a point") at (0, 0).
    """
    err = student ^ teacher
    if valid is not None:
        err = err & valid
    flat, has = _pick(err, generator)
    labels = teacher.flatten(1).gather(1, flat[:, None])[:, 0].long()
    labels = torch.where(has, labels, torch.full_like(labels, -1))
    coords = _pixel_to_input(flat, tuple(student.shape[-2:]), img_size)
    coords = torch.where(has[:, None], coords, torch.zeros_like(coords))
    return coords[:, None, :], labels[:, None]


def decode_masks(prompt_encoder: nn.Module, mask_decoder: nn.Module, embedding: torch.Tensor,
            points: tuple[torch.Tensor, torch.Tensor] | None, boxes: torch.Tensor | None,
            mask_input: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """All four mask outputs (P, 4, 4h, 4w) and IoU predictions (P, 4) of one image's embedding (1, C, h, w) for P
    prompts, through ``segment_anything``'s ``PromptEncoder`` and ``MaskDecoder.predict_masks``."""
    sparse, dense = prompt_encoder(points=points, boxes=boxes, masks=mask_input)
    return mask_decoder.predict_masks(image_embeddings=embedding, image_pe=prompt_encoder.get_dense_pe(),
                                      sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense)


@torch.no_grad()
def sample_prompts(teacher: nn.Module, embedding: torch.Tensor, valid: torch.Tensor, valid_hw: torch.Tensor,
                   n: int, kind: str, img_size: int, generator: torch.Generator | None = None
                   ) -> tuple[tuple[torch.Tensor, torch.Tensor] | None, torch.Tensor | None]:
    """``n`` prompts of ``kind`` (``"box"`` or ``"point"``) for one image, from the teacher's masks.

    A seed point is drawn uniformly inside the image (``valid_hw`` = (h, w) of the resized image in the input
    frame); the teacher (``prompt_encoder``, ``mask_decoder``) decodes it on its ``embedding`` (1, C, h', w'), and
    the best of SAM's three multimask outputs (by predicted IoU, inside ``valid``) is the object. A box prompt is
    that mask's bounding box, a point prompt a uniformly random pixel of it (label 1). An empty mask falls back to
    the seed point (and a box of side img_size / 8 around it).

    Returns:
        ``(points, None)`` with points ``(coords (n, 1, 2), labels (n, 1))``, or ``(None, boxes (n, 4))``.
    """
    device = embedding.device
    h, w = (float(v) for v in valid_hw.tolist())
    seeds = _rand((n, 2), device, generator) * torch.tensor([w, h], device=device)
    ones = torch.ones(n, 1, dtype=torch.long, device=device)
    masks, iou = decode_masks(teacher.prompt_encoder, teacher.mask_decoder, embedding, (seeds[:, None], ones), None)
    best = iou[:, 1:].argmax(1) + 1
    obj = (masks[torch.arange(n, device=device), best] > 0) & valid
    side = obj.shape[-1]
    scale = img_size / side
    has = obj.flatten(1).any(1)
    if kind == "point":
        flat, _ = _pick(obj, generator)
        coords = torch.where(has[:, None], _pixel_to_input(flat, tuple(obj.shape[-2:]), img_size), seeds)
        return (coords[:, None, :], ones), None
    if kind != "box":
        raise ValueError(f"prompt kind must be 'box' or 'point', got {kind!r}.")
    rows, cols = obj.any(2), obj.any(1)  # (n, side)
    idx = torch.arange(side, device=device, dtype=torch.float32)
    big = float(side)
    x0 = torch.where(cols, idx, big).amin(1) * scale
    x1 = (torch.where(cols, idx, -1.0).amax(1) + 1) * scale
    y0 = torch.where(rows, idx, big).amin(1) * scale
    y1 = (torch.where(rows, idx, -1.0).amax(1) + 1) * scale
    half = img_size / 16
    fallback = torch.stack([seeds[:, 0] - half, seeds[:, 1] - half, seeds[:, 0] + half, seeds[:, 1] + half], 1)
    boxes = torch.where(has[:, None], torch.stack([x0, y0, x1, y1], 1), fallback)
    return None, boxes.clamp(0, img_size)


def sample_mask_prompts(masks: torch.Tensor, boxes: torch.Tensor, n: int, kind: str, img_size: int,
                        generator: torch.Generator | None = None
                        ) -> tuple[tuple[torch.Tensor, torch.Tensor] | None, torch.Tensor | None]:
    """Up to ``n`` prompts of ``kind`` for one image from its annotated masks (``n`` of them drawn without
    replacement; all of them when there are fewer).

    Args:
        masks: (M, H, W) bool low-resolution masks (:func:`~repvit.sam_distill.mask_annotations.low_res_prompt_masks`).
        boxes: (M, 4) the annotations' boxes ``x0, y0, x1, y1`` in the input frame.

    Returns:
        As :func:`sample_prompts`: a box prompt is the annotation's box; a point prompt a uniformly random pixel of
        the mask (label 1), or the box's centre for a mask too small to cover a low-resolution pixel.
    """
    order = _rand((masks.shape[0],), masks.device, generator).argsort()[:n]
    obj, box = masks[order], boxes[order]
    if kind == "box":
        return None, box
    if kind != "point":
        raise ValueError(f"prompt kind must be 'box' or 'point', got {kind!r}.")
    flat, has = _pick(obj, generator)
    centre = (box[:, :2] + box[:, 2:]) / 2
    coords = torch.where(has[:, None], _pixel_to_input(flat, tuple(obj.shape[-2:]), img_size), centre)
    return (coords[:, None, :], torch.ones(len(order), 1, dtype=torch.long, device=masks.device)), None
