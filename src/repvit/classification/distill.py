"""Knowledge distillation (DeiT style): a loss wrapper around the base criterion, loading the teacher, and
:func:`build_criterion` (a run's loss: cross-entropy, label smoothing or Mixup/CutMix targets, wrapped).

``loss = (1 - alpha) · base(cls_logits, labels) + alpha · distill(dist_logits, teacher)`` where ``distill`` is the
cross-entropy with the teacher's argmax (``hard``, the paper) or the temperature-scaled KL divergence (``soft``).
Only the distillation head learns from the teacher.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import TrainConfig

__all__ = ["DistillationLoss", "load_teacher", "build_criterion"]


class DistillationLoss(nn.Module):
    """Wrap ``base_criterion`` with a teacher.

    Args:
        base_criterion: the loss for the class head (e.g. timm's ``SoftTargetCrossEntropy``).
        teacher: a frozen model in eval mode (or ``None`` with ``kind="none"``).
        kind: ``none``, ``hard`` or ``soft``.
        alpha: weight of the distillation term.
        tau: temperature of soft distillation.
    """

    def __init__(self, base_criterion: nn.Module, teacher: nn.Module | None, kind: str = "none",
                 alpha: float = 0.5, tau: float = 1.0):
        super().__init__()
        if kind not in ("none", "hard", "soft"):
            raise ValueError(f"distillation kind must be none, hard or soft, got {kind!r}.")
        if kind != "none" and teacher is None:
            raise ValueError(f"{kind} distillation needs a teacher model.")
        self.base_criterion = base_criterion
        self.teacher = teacher
        self.kind, self.alpha, self.tau = kind, alpha, tau

    def forward(self, inputs: torch.Tensor, outputs, labels: torch.Tensor) -> torch.Tensor:
        """``outputs`` is the model's output: a tensor, or ``(cls, dist)`` logits from a distillation model."""
        dist_out = None
        if isinstance(outputs, (tuple, list)):
            outputs, dist_out = outputs
        base = self.base_criterion(outputs, labels)
        if self.kind == "none":
            return base
        if dist_out is None:
            raise ValueError("distillation needs a model with a distillation head (create_model(distillation=True)).")
        with torch.no_grad():
            t_out = self.teacher(inputs)
            if isinstance(t_out, (tuple, list)):
                t_out = t_out[0]
        t_out = t_out.float()
        if self.kind == "soft":
            tau = self.tau
            d = F.kl_div(F.log_softmax(dist_out.float() / tau, dim=1), F.log_softmax(t_out / tau, dim=1),
                         reduction="sum", log_target=True) * (tau * tau) / dist_out.numel()
        else:
            d = F.cross_entropy(dist_out.float(), t_out.argmax(dim=1))
        return base * (1 - self.alpha) + d * self.alpha


def _is_repvit_name(name: str) -> bool:
    from repvit.models import get_model_entry

    try:
        get_model_entry(name)
    except ValueError:
        return False
    return True


def load_teacher(name: str, checkpoint: str | None, num_classes: int, in_chans: int,
                 device: torch.device) -> nn.Module:
    """A frozen teacher in eval mode: a repvit checkpoint path, or a timm model name with a local weights file.

    Nothing is downloaded: a timm teacher is built with ``pretrained=False`` and its weights read from
    ``checkpoint`` (``weights_only=True``).
    """
    from repvit.models import create_model

    if Path(name).is_file():
        teacher = create_model(checkpoint=name)
    elif _is_repvit_name(name):
        if checkpoint is None:
            raise ValueError(f"teacher {name!r} needs weights: --teacher-checkpoint PATH (nothing is downloaded).")
        teacher = create_model(name, checkpoint=checkpoint)
    else:
        import timm

        if checkpoint is None:
            raise ValueError(f"teacher {name!r} needs a local weights file: --teacher-checkpoint PATH "
                             "(repvit never downloads weights).")
        try:
            teacher = timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans)
        except RuntimeError as e:
            raise ValueError(f"unknown teacher {name!r}: not a repvit checkpoint nor a timm model ({e}).") from None
        from timm.models import load_checkpoint as timm_load

        try:
            timm_load(teacher, checkpoint, strict=True, weights_only=True)
        except RuntimeError as e:
            detail = " ".join(str(e).split())[:300]
            raise ValueError(f"teacher weights {checkpoint} do not fit timm {name!r} with {num_classes} classes "
                             f"(the data's class count): {detail}") from None
    t_classes = getattr(teacher, "num_classes", num_classes)
    if t_classes != num_classes:
        raise ValueError(f"the teacher predicts {t_classes} classes but the data has {num_classes}.")
    teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def build_criterion(cfg: TrainConfig, num_classes: int, teacher: nn.Module | None):
    """The loss (with distillation when asked) and timm's Mixup/CutMix (or None)."""
    from timm.data import Mixup
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

    mixup_fn = None
    if cfg.mixup > 0 or cfg.cutmix > 0:
        mixup_fn = Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, prob=cfg.mixup_prob,
                         switch_prob=cfg.mixup_switch_prob, label_smoothing=cfg.smoothing, num_classes=num_classes)
        base = SoftTargetCrossEntropy()
    elif cfg.smoothing > 0:
        base = LabelSmoothingCrossEntropy(cfg.smoothing)
    else:
        base = nn.CrossEntropyLoss()
    return DistillationLoss(base, teacher, cfg.distillation, cfg.distillation_alpha, cfg.distillation_tau), mixup_fn
