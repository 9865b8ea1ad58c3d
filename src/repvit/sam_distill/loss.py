"""Phase 2's loss: EdgeSAM's BCE + Dice of the student's mask logits against the teacher's masks, and the mask IoU
that phase 2 reports."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["mask_distill_loss", "mask_iou"]


def mask_distill_loss(student: torch.Tensor, teacher: torch.Tensor, valid: torch.Tensor,
                      bce_weight: float = 5.0, dice_weight: float = 5.0) -> tuple[torch.Tensor, torch.Tensor,
                                                                                  torch.Tensor]:
    """EdgeSAM's decoder loss: ``bce_weight * BCE + dice_weight * Dice`` of the student's mask logits against the
    teacher's masks (``teacher logits > 0``), over the ``valid`` (H, W) pixels.

    Args:
        student, teacher: mask logits (P, K, H, W) for the same prompts.

    Returns:
        ``(loss, bce, dice)``, each a scalar (BCE: mean over valid pixels; Dice: mean over the P x K masks).
    """
    s = student.float()[..., valid]  # (P, K, V)
    t = (teacher > 0).float()[..., valid]
    bce = F.binary_cross_entropy_with_logits(s, t)
    p = s.sigmoid()
    dice = (1 - (2 * (p * t).sum(-1) + 1) / (p.sum(-1) + t.sum(-1) + 1)).mean()
    return bce_weight * bce + dice_weight * dice, bce, dice


def mask_iou(a: torch.Tensor, b: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """IoU of (N, H, W) bool masks over ``valid`` pixels (1 where both are empty)."""
    a, b = a & valid, b & valid
    inter = (a & b).flatten(1).sum(1).float()
    union = (a | b).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))
