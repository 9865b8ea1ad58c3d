"""Phase 2 of SAM distillation: EdgeSAM's prompt-in-the-loop distillation (``repvit sam distill --phase prompt``).

EdgeSAM (Zhou et al., 2023, https://arxiv.org/abs/2312.06660) follows encoder-only distillation (phase 1,
:mod:`repvit.sam.task`) with a phase in which the student's whole SAM is trained on the teacher's *masks*: prompts
(boxes or points) go through the student's prompt encoder and mask decoder and, on the same prompts, through the
teacher's; the student's mask logits learn the teacher's masks (``teacher logits > 0``) with BCE (weight 5) + Dice
(weight 5). Then a new point is sampled from where the two masks disagree (a false negative of the student: a
foreground point, label 1; a false positive: a background point, label 0), appended to the prompt, and both decode
again; ``refine_iters`` such rounds, the loss averaged over all decodes.

As in EdgeSAM's released training code: the student's prompt encoder and mask decoder start as copies of the
teacher's; the prompt encoder stays frozen, the mask decoder trains with the encoder (``train_decoder``; its IoU head
is frozen, no loss reaches it); all four mask outputs are distilled; the refinement point is taken against the
output the teacher rates best; padding pixels are left out of the loss and of the point sampling; previous masks
are not fed back as mask input (``mask_input`` turns that on).

Where the prompts come from (``prompt_masks``, default ``"auto"``): EdgeSAM samples them from SA-1B's masks; here
they come from annotated masks when the image folder has them (COCO ``instances*.json`` or SA-1B's per-image JSON,
:mod:`repvit.sam.mask_annotations`: a box is an annotation's ``bbox``, a point a random pixel of its mask, up to
``max_prompts`` objects per image), and otherwise from the *teacher's* masks on unlabeled images: a seed point is
drawn uniformly in the image, the teacher decodes it (best of SAM's three multimask outputs) and that mask gives the
prompt, its bounding box or a random pixel inside it. A log line says which source a run uses. Either way the loss
is the student's against the teacher's mask logits, and refinement points come from where they disagree. Each batch
uses boxes or points (0.5 each), ``max_prompts`` per image. The teacher's image embeddings come from the phase-1 cache
(:class:`~repvit.sam.embed_cache.EmbeddingCache`, the same key, so phase 2 after phase 1 computes nothing), and the
teacher's prompt encoder and mask decoder are cheap, so the teacher's image encoder never runs during training.

The samplers (prompts, refinement points) are in :mod:`repvit.sam.prompt_sampling`. Training is
:class:`SamPromptDistillTask` on the shared engine (resume, DDP, AMP, EMA, ``metrics.jsonl``); its
checkpoints hold the whole SAM (``image_encoder.*``, ``prompt_encoder.*``, ``mask_decoder.*``), which
:func:`repvit.sam.build_repvit_sam` reads without a decoder checkpoint.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset

from repvit.engine.amp import amp_dtype, autocast_context
from repvit.engine.distributed import all_reduce_sum

from .config import SamDistillConfig
from .data import PromptPairs, collate_prompt_pairs
from .embed_cache import EmbeddingCache, list_images
from .encoder import RepViTSamEncoder
from .mask_annotations import PROMPT_MASKS, MaskAnnotations, find_mask_annotations
from .model import load_teacher_sam
from .prompt_sampling import decode_masks, low_res_valid, sample_mask_prompts, sample_prompts, sample_refine_points
from .task import SamDistillTask

__all__ = [
    "LoopSettings", "PromptDistillSam", "PromptPairs", "SamPromptDistillTask", "mask_distill_loss",
]

_log = logging.getLogger("repvit.sam")


@dataclass(frozen=True)
class LoopSettings:
    """What one prompt-in-the-loop pass does (from :class:`~repvit.sam.config.SamDistillConfig`)."""

    max_prompts: int = 16
    refine_iters: int = 2
    points_per_refine: int = 1
    prompt_types: tuple[str, ...] = ("box", "point")
    bce_weight: float = 5.0
    dice_weight: float = 5.0
    mask_input: bool = False

    @classmethod
    def from_config(cls, cfg: SamDistillConfig) -> LoopSettings:
        return cls(cfg.max_prompts, cfg.refine_iters, cfg.points_per_refine, cfg.prompt_type_list(),
                   cfg.bce_weight, cfg.dice_weight, cfg.mask_input)


# ---------------------------------------------------------------------------------------------------- the loss


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


# ---------------------------------------------------------------------------------------------------- the model


class _TeacherHead(nn.Module):
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
                (:func:`~repvit.sam.prompt_sampling.sample_mask_prompts`); None: from the teacher's masks
                (:func:`~repvit.sam.prompt_sampling.sample_prompts`).
        """
        emb = self.image_encoder(images)
        side = 4 * emb.shape[-1]
        valid = low_res_valid(valid_hw, side, self.img_size)
        total, iou_sum, n = emb.new_zeros((), dtype=torch.float32), 0.0, 0
        decodes = 1 + settings.refine_iters
        for b in range(images.shape[0]):
            if masks is None:
                points, boxes = sample_prompts(teacher, teacher_embeddings[b:b + 1], valid[b], valid_hw[b],
                                               settings.max_prompts, kind, self.img_size)
            else:
                points, boxes = sample_mask_prompts(*masks[b], settings.max_prompts, kind, self.img_size)
            m_s = m_t = None
            for it in range(decodes):
                s_masks, _ = decode_masks(self.prompt_encoder, self.mask_decoder, emb[b:b + 1], points, boxes, m_s)
                with torch.no_grad():
                    t_masks, t_iou = decode_masks(teacher.prompt_encoder, teacher.mask_decoder,
                                                  teacher_embeddings[b:b + 1], points, boxes, m_t)
                loss, _, _ = mask_distill_loss(s_masks, t_masks, valid[b], settings.bce_weight, settings.dice_weight)
                total = total + loss / decodes
                with torch.no_grad():
                    ar = torch.arange(s_masks.shape[0], device=s_masks.device)
                    best = t_iou.argmax(1)
                    s_best, t_best = s_masks[ar, best], t_masks[ar, best]
                    if it == 0:
                        iou_sum += _mask_iou(s_best > 0, t_best > 0, valid[b]).sum().item()
                        n += s_best.shape[0]
                    if it + 1 < decodes:
                        new = [sample_refine_points(s_best > 0, t_best > 0, valid[b], self.img_size)
                               for _ in range(settings.points_per_refine)]
                        c = torch.cat([x[0] for x in new], 1)
                        lab = torch.cat([x[1] for x in new], 1)
                        points = (c, lab) if points is None else (torch.cat([points[0], c], 1),
                                                                  torch.cat([points[1], lab], 1))
                        if settings.mask_input:
                            m_s, m_t = s_best[:, None].detach(), t_best[:, None]
        return total / images.shape[0], torch.tensor(iou_sum / max(n, 1))


def _mask_iou(a: torch.Tensor, b: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """IoU of (N, H, W) bool masks over ``valid`` pixels (1 where both are empty)."""
    a, b = a & valid, b & valid
    inter = (a & b).flatten(1).sum(1).float()
    union = (a | b).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


# ---------------------------------------------------------------------------------------------------- the task


def _to(masks: list[tuple[torch.Tensor, torch.Tensor]] | None, device: torch.device):
    return None if masks is None else [(m.to(device), b.to(device)) for m, b in masks]


def _encoder_state(init: str | Path) -> dict[str, torch.Tensor] | None:
    """The image-encoder weights (``trunk.*``, ``neck.*``) of a RepViT-SAM checkpoint in any format (a phase-1
    ``best.pt`` included), or None when ``init`` is not a RepViT-SAM checkpoint."""
    from repvit.models.checkpoint import CheckpointError

    from .checkpoint import read_sam_checkpoint

    try:
        ck = read_sam_checkpoint(init)
    except CheckpointError:
        return None
    p = "image_encoder."
    return {k[len(p):]: v for k, v in ck.state_dict.items() if k.startswith(p)}


class SamPromptDistillTask(SamDistillTask):
    """EdgeSAM's phase 2 on the shared engine (see the module docstring).

    Args:
        teacher: a whole SAM module (``image_encoder``, ``prompt_encoder``, ``mask_decoder``; e.g. a
            ``segment_anything`` ``Sam`` or :func:`~repvit.sam.build_repvit_sam`'s) instead of ``cfg.teacher`` /
            ``cfg.teacher_checkpoint``; its image encoder's weight hash keys the embedding cache, as in phase 1.
        prompt_masks: where prompts come from: ``"auto"`` (annotated masks when the image folder has COCO or SA-1B
            annotations, else the teacher's), ``"teacher"`` or ``"annotations"`` (an error without them).
    """

    name: ClassVar[str] = "sam-prompt-distill"
    best_metric: ClassVar[str] = "neg_mask_loss"
    default_eval_batch_size: ClassVar[int] = 2
    plot_label: ClassVar[str] = "- mask loss vs teacher (held out)"

    def __init__(self, teacher: nn.Module | None = None, prompt_masks: str = "auto"):
        if prompt_masks not in PROMPT_MASKS:
            raise ValueError(f"prompt_masks must be one of {', '.join(PROMPT_MASKS)}, got {prompt_masks!r}.")
        super().__init__(teacher.image_encoder if teacher is not None else None)
        self.teacher_sam = teacher
        self.prompt_masks = prompt_masks
        self.annotations: MaskAnnotations | None = None
        self.head: _TeacherHead | None = None
        self.settings: LoopSettings | None = None

    def _find_annotations(self, cfg: SamDistillConfig) -> MaskAnnotations | None:
        if self.prompt_masks == "teacher":
            return None
        ann = find_mask_annotations(cfg.data, list_images(cfg.data, cfg.max_images))
        if ann is None and self.prompt_masks == "annotations":
            raise FileNotFoundError(
                f"prompt_masks='annotations' but {cfg.data} has no annotations: COCO instances*.json in the folder "
                "or its annotations/ folder, or SA-1B's NAME.json next to each NAME.jpg.")
        return ann

    def _pairs(self, cache: EmbeddingCache, indices: list[int]) -> Dataset:
        ann = self.annotations
        if ann is not None:
            indices = [i for i in indices if ann.has_masks(cache.files[i])]
        return PromptPairs(cache, indices, ann)

    def build_data(self, cfg: SamDistillConfig, info):
        self.annotations = self._find_annotations(cfg)  # before the teacher pass: bad annotations fail at once
        data = super().build_data(cfg, info)
        ann, root = self.annotations, self.cache.image_root
        if ann is None:
            data.meta["prompt_masks"] = {"source": "teacher"}
            if info.is_main:
                _log.info("phase 2 prompts: from the teacher's masks (%s)", "prompt_masks='teacher'"
                          if self.prompt_masks == "teacher" else f"no COCO instances*.json or SA-1B per-image JSON "
                          f"in {root}")
            return data
        data.meta["prompt_masks"] = ann.describe()
        data.meta["num_val"] = len(data.val)
        if info.is_main:
            where = ", ".join(str(s) for s in ann.sources) if ann.sources else "NAME.json next to each image"
            _log.info("phase 2 prompts: from the annotated masks (%s layout: %s) of %d of %d images", ann.layout,
                      where, len(self.cache.files) - len(ann.missing), len(self.cache.files))
            if ann.missing:
                _log.warning("phase 2 prompts: %d images have no annotated masks and are left out (%s%s)",
                             len(ann.missing), ", ".join(ann.missing[:5]), ", ..." if len(ann.missing) > 5 else "")
            if any(ann.left_out.values()):
                _log.info("phase 2 prompts: annotations giving no prompt: %s",
                          ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in ann.left_out.items() if v))
        if not len(data.train) or not len(data.val):
            raise ValueError(f"only {len(self.cache.files) - len(ann.missing)} of {len(self.cache.files)} images "
                             f"under {root} have annotated masks, too few for a training and a held-out image "
                             "(val_fraction); add annotations or images.")
        return data

    def _collate_fn(self):
        return collate_prompt_pairs

    def _teacher_decoder_state(self, cfg: SamDistillConfig) -> dict[str, torch.Tensor]:
        if self.teacher_sam is not None:
            return {f"{part}.{k}": v for part in ("prompt_encoder", "mask_decoder")
                    for k, v in getattr(self.teacher_sam, part).state_dict().items()}
        if not cfg.teacher_checkpoint:
            raise ValueError("prompt distillation needs the teacher's weights: --teacher-checkpoint sam_vit_h.pth.")
        from .checkpoint import read_sam_decoder

        if not Path(cfg.teacher_checkpoint).is_file():
            load_teacher_sam(cfg.teacher, cfg.teacher_checkpoint)  # raises the clear missing-file error
        return read_sam_decoder(cfg.teacher_checkpoint)

    def build_model(self, cfg: SamDistillConfig, data) -> nn.Module:
        from .model import build_sam_from_encoder

        sam = build_sam_from_encoder(RepViTSamEncoder(cfg.sam_config(), drop_path_rate=cfg.drop_path))
        model = PromptDistillSam(sam.image_encoder, sam.prompt_encoder, sam.mask_decoder)
        dec = self._teacher_decoder_state(cfg)
        head = _TeacherHead(copy.deepcopy(model.prompt_encoder), copy.deepcopy(model.mask_decoder))
        head.load_state_dict(dec, strict=True)
        self.head = head.requires_grad_(False).eval()
        if not self.resuming:  # EdgeSAM: the student's prompt encoder and mask decoder start as the teacher's
            model.load_state_dict({**{f"image_encoder.{k}": v for k, v in model.image_encoder.state_dict().items()},
                                   **dec}, strict=True)
            if cfg.init:
                enc = _encoder_state(cfg.init)
                if enc is not None:
                    model.image_encoder.load_state_dict(enc, strict=True)
                    _log.info("student encoder initialised from %s", cfg.init)
                else:
                    res = model.image_encoder.load_trunk(cfg.init, strict=True)
                    _log.info("student trunk initialised from %s (%s format)", cfg.init, res.source_format)
        model.prompt_encoder.requires_grad_(False)
        model.mask_decoder.iou_prediction_head.requires_grad_(False)  # no loss reaches the IoU head
        if not cfg.train_decoder:
            model.mask_decoder.requires_grad_(False)
        self.settings = LoopSettings.from_config(cfg)
        return model

    def prepare(self, model: nn.Module, data, device: torch.device) -> None:
        self.head.to(device)

    def train_step(self, model: nn.Module, batch: Any, device: torch.device) -> tuple[torch.Tensor, int]:
        x, emb, hw, _, masks = batch
        kinds = self.settings.prompt_types
        kind = kinds[0] if len(kinds) == 1 else kinds[int(torch.randint(len(kinds), ()).item())]
        loss, _ = model(x.to(device, non_blocking=True), emb.to(device, non_blocking=True), hw.to(device),
                        self.head, self.settings, kind, _to(masks, device))
        return loss, x.shape[0]

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader, device: torch.device) -> dict[str, Any]:
        """On fixed prompts (drawn from a generator seeded by the image's index, so every student and every run
        sees the same ones): ``cfg.eval_prompts`` boxes and as many points per held-out image (from its annotated
        masks when the run uses them, fewer when it has fewer), decoded once.
        ``mask_loss`` is the training loss's first decode (BCE 5 + Dice 5 by default), ``miou`` the IoU of the
        student's and the teacher's best masks, ``mse`` the embedding MSE of phase 1."""
        was_training = model.training
        model.eval()
        cfg = self.cfg
        n = cfg.eval_prompts if cfg is not None else 8
        bce_w, dice_w = (cfg.bce_weight, cfg.dice_weight) if cfg is not None else (5.0, 5.0)
        use_amp = bool(cfg and cfg.amp)
        dtype = amp_dtype(cfg.amp_dtype if cfg else None)
        sums = torch.zeros(7, dtype=torch.float64)  # loss, bce, dice, iou, decodes, masks, sq err; images below
        sq_elems, images = 0.0, 0
        for x, temb, hw, idx, masks in loader:
            x, temb, hw, masks = x.to(device), temb.to(device).float(), hw.to(device), _to(masks, device)
            with autocast_context(device, use_amp, dtype):
                emb = model.image_encoder(x)
            emb = emb.float()
            sums[6] += (emb - temb).pow(2).sum().item()
            sq_elems += emb.numel()
            images += x.shape[0]
            side = 4 * emb.shape[-1]
            valid = low_res_valid(hw, side, model.img_size)
            for b in range(x.shape[0]):
                g = torch.Generator().manual_seed(1_000_003 * int(idx[b]) + 17)
                for kind in ("box", "point"):
                    if masks is None:
                        points, boxes = sample_prompts(self.head, temb[b:b + 1], valid[b], hw[b], n, kind,
                                                       model.img_size, g)
                    else:
                        points, boxes = sample_mask_prompts(*masks[b], n, kind, model.img_size, g)
                    s_m, _ = decode_masks(model.prompt_encoder, model.mask_decoder, emb[b:b + 1], points, boxes)
                    t_m, t_iou = decode_masks(self.head.prompt_encoder, self.head.mask_decoder, temb[b:b + 1], points,
                                              boxes)
                    loss, bce, dice = mask_distill_loss(s_m, t_m, valid[b], bce_w, dice_w)
                    ar = torch.arange(s_m.shape[0], device=device)
                    best = t_iou.argmax(1)
                    iou = _mask_iou(s_m[ar, best] > 0, t_m[ar, best] > 0, valid[b])
                    sums[:6] += torch.tensor([loss.item(), bce.item(), dice.item(), iou.sum().item(), 1, len(ar)],
                                             dtype=torch.float64)
        model.train(was_training)
        extra = all_reduce_sum(torch.tensor([sq_elems, images], dtype=torch.float64))
        sums = all_reduce_sum(sums)
        d = max(sums[4].item(), 1.0)
        loss = sums[0].item() / d
        mse = sums[6].item() / max(extra[0].item(), 1.0)
        return {"mask_loss": loss, "neg_mask_loss": -loss, "loss": loss, "bce": sums[1].item() / d,
                "dice": sums[2].item() / d, "miou": sums[3].item() / max(sums[5].item(), 1.0), "mse": mse,
                "images": int(extra[1].item())}

    def describe(self, metrics: dict[str, Any]) -> str:
        if "mask_loss" not in metrics:
            return ""
        return f"val mask loss {metrics['mask_loss']:.4f}  mIoU vs teacher {metrics['miou']:.3f}"


def __getattr__(name: str):
    # moved to repvit.sam.evaluate (which imports this module), still importable from here
    if name == "evaluate_prompt_distill":
        from .evaluate import evaluate_prompt_distill

        return evaluate_prompt_distill
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
