"""SAM distillation's models: the teachers (:func:`load_teacher_sam`, :func:`load_teacher_encoder`), the teacher's
frozen prompt encoder and mask decoder (:class:`TeacherHead`), and phase 2's student (:class:`PromptDistillSam`,
whose ``forward`` runs one prompt-in-the-loop pass and returns its loss).

Phase 1's student is the library's :class:`~repvit.sam.encoder.RepViTSamEncoder` itself.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from repvit.runtime import require

from .config import LoopSettings
from .loss import mask_distill_loss, mask_iou
from .prompt_sampling import decode_masks, low_res_valid, sample_mask_prompts, sample_prompts, sample_refine_points

__all__ = ["load_teacher_sam", "load_teacher_encoder", "TeacherHead", "PromptDistillSam", "read_encoder_state",
           "teacher_best"]

Points = tuple[torch.Tensor, torch.Tensor] | None


def load_teacher_sam(name: str, checkpoint: str | Path) -> nn.Module:
    """The whole teacher SAM: ``segment_anything.sam_model_registry[name]`` (vit_h / vit_l / vit_b) or, for
    ``repvit_sam``, :func:`repvit.sam.build_repvit_sam`, with the local ``checkpoint``; nothing is downloaded."""
    sa = require("segment_anything", "the SAM teacher")
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"teacher checkpoint {path} does not exist; download SAM's {name} checkpoint "
                                "(e.g. sam_vit_h_4b8939.pth) and pass it with --teacher-checkpoint.")
    if name == "repvit_sam":
        from repvit.sam import build_repvit_sam

        return build_repvit_sam(path).eval()
    return sa.sam_model_registry[name](checkpoint=str(path)).eval()  # torch.load defaults to weights_only=True


def load_teacher_encoder(name: str, checkpoint: str | Path) -> nn.Module:
    """The teacher's image encoder (see :func:`load_teacher_sam`)."""
    return load_teacher_sam(name, checkpoint).image_encoder.eval()


def read_encoder_state(init: str | Path) -> dict[str, torch.Tensor] | None:
    """The image-encoder weights (``trunk.*``, ``neck.*``) of a RepViT-SAM checkpoint in any format (a phase-1
    ``best.pt`` included), or None when ``init`` is not a RepViT-SAM checkpoint."""
    from repvit.io import CheckpointError
    from repvit.sam.checkpoint import read_sam_checkpoint

    try:
        ck = read_sam_checkpoint(init)
    except CheckpointError:
        return None
    p = "image_encoder."
    return {k[len(p):]: v for k, v in ck.state_dict.items() if k.startswith(p)}


def teacher_best(student: torch.Tensor, teacher: torch.Tensor,
                 teacher_iou: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Of (P, K, H, W) student and teacher mask logits, the (P, H, W) masks of the output the teacher rates best."""
    ar = torch.arange(student.shape[0], device=student.device)
    best = teacher_iou.argmax(1)
    return student[ar, best], teacher[ar, best]


def _with_refine_points(points: Points, student: torch.Tensor, teacher: torch.Tensor, valid: torch.Tensor,
                        count: int, img_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``points`` with ``count`` refinement points per prompt appended, drawn where the (P, H, W) bool masks
    disagree."""
    new = [sample_refine_points(student, teacher, valid, img_size) for _ in range(count)]
    c = torch.cat([x[0] for x in new], 1)
    lab = torch.cat([x[1] for x in new], 1)
    return (c, lab) if points is None else (torch.cat([points[0], c], 1), torch.cat([points[1], lab], 1))


class TeacherHead(nn.Module):
    """The teacher's prompt encoder and mask decoder (frozen)."""

    def __init__(self, prompt_encoder: nn.Module, mask_decoder: nn.Module):
        super().__init__()
        self.prompt_encoder, self.mask_decoder = prompt_encoder, mask_decoder


class PromptDistillSam(nn.Module):
    """The student's SAM for phase 2, with ``Sam``'s sub-module names (so its state dict is a ``Sam``'s):
    ``image_encoder`` (RepViT), ``prompt_encoder`` and ``mask_decoder`` (``segment_anything``'s).

    ``forward`` runs one whole prompt-in-the-loop pass (so DDP sees one forward per step) and returns the loss.
    """

    def __init__(self, image_encoder: nn.Module, prompt_encoder: nn.Module, mask_decoder: nn.Module):
        super().__init__()
        self.image_encoder, self.prompt_encoder, self.mask_decoder = image_encoder, prompt_encoder, mask_decoder

    @property
    def img_size(self) -> int:
        return int(self.image_encoder.img_size)

    def forward(self, images: torch.Tensor, teacher_embeddings: torch.Tensor, valid_hw: torch.Tensor,
                teacher: nn.Module, settings: LoopSettings, kind: str,
                masks: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The prompt-in-the-loop loss of a batch and the mean IoU of the student's first masks with the teacher's.

        Args:
            images: preprocessed (B, 3, S, S); teacher_embeddings: (B, 256, S/16, S/16); valid_hw: (B, 2).
            teacher: the teacher's prompt encoder and mask decoder (frozen); kind: ``"box"`` or ``"point"``.
            masks: per image, annotated ``(masks, boxes)`` to draw the prompts from
                (:func:`~repvit.sam_distill.prompt_sampling.sample_mask_prompts`); None: from the teacher's masks
                (:func:`~repvit.sam_distill.prompt_sampling.sample_prompts`).
        """
        emb = self.image_encoder(images)
        valid = low_res_valid(valid_hw, 4 * emb.shape[-1], self.img_size)
        total, iou_sum, n = emb.new_zeros((), dtype=torch.float32), 0.0, 0
        for b in range(images.shape[0]):
            if masks is None:
                points, boxes = sample_prompts(teacher, teacher_embeddings[b:b + 1], valid[b], valid_hw[b],
                                               settings.max_prompts, kind, self.img_size)
            else:
                points, boxes = sample_mask_prompts(*masks[b], settings.max_prompts, kind, self.img_size)
            total, iou = self._loop(total, emb[b:b + 1], teacher_embeddings[b:b + 1], valid[b], points, boxes,
                                    teacher, settings)
            iou_sum += iou.sum().item()
            n += iou.shape[0]
        return total / images.shape[0], torch.tensor(iou_sum / max(n, 1))

    def _loop(self, total: torch.Tensor, emb: torch.Tensor, teacher_emb: torch.Tensor, valid: torch.Tensor,
              points: Points, boxes: torch.Tensor | None, teacher: nn.Module,
              settings: LoopSettings) -> tuple[torch.Tensor, torch.Tensor]:
        """One image's decodes (the first and ``refine_iters`` refinements): ``total`` plus their mean loss, and the
        IoU of the student's first best masks with the teacher's."""
        decodes = 1 + settings.refine_iters
        m_s = m_t = first_iou = None
        for it in range(decodes):
            s_masks, _ = decode_masks(self.prompt_encoder, self.mask_decoder, emb, points, boxes, m_s)
            with torch.no_grad():
                t_masks, t_iou = decode_masks(teacher.prompt_encoder, teacher.mask_decoder, teacher_emb, points,
                                              boxes, m_t)
            loss, _, _ = mask_distill_loss(s_masks, t_masks, valid, settings.bce_weight, settings.dice_weight)
            total = total + loss / decodes
            with torch.no_grad():
                s_best, t_best = teacher_best(s_masks, t_masks, t_iou)
                if it == 0:
                    first_iou = mask_iou(s_best > 0, t_best > 0, valid)
                if it + 1 < decodes:
                    points = _with_refine_points(points, s_best > 0, t_best > 0, valid, settings.points_per_refine,
                                                 self.img_size)
                    if settings.mask_input:
                        m_s, m_t = s_best[:, None].detach(), t_best[:, None]
        return total, first_iou
