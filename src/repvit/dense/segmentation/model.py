"""Semantic FPN on RepViT (the paper's segmentation baseline).

``SemanticFPN = DenseBackbone (segment taps, frozen BN) -> torchvision FPN (256) -> SemanticFPNHead (128)``.

The head, as in the Panoptic-FPN semantic branch the paper uses: for the FPN level at stride ``s``, ``max(1,
log2(s / 4))`` stages of 3x3 conv - BatchNorm - ReLU, each followed (for levels coarser than stride 4) by a x2
bilinear upsampling, so every level arrives at stride 4; the levels are summed, then dropout (channel-wise, 0.1)
and a 1x1 classifier give stride-4 logits, bilinearly upsampled (``align_corners=False``) to the input size.

The model takes normalised images ``(N, 3, H, W)`` (any ``H, W >= 32``; maps that do not divide evenly are resized
to the stride-4 level before the sum) and returns logits ``(N, num_classes, H, W)``. :meth:`SemanticFPN.fuse` gives
the deploy form: the backbone re-parameterized and every head conv+BN folded into one conv (torch's
``fuse_conv_bn_eval``), with the same outputs.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.ops import Conv2dNormActivation

from repvit.io import check_task

from ..backbone import DenseBackbone, RepViTFPN, load_backbone_checkpoint
from .config import SegmentConfig

__all__ = ["SemanticFPNHead", "SemanticFPN", "build_semantic_fpn", "load_segmentation_weights",
           "load_segmenter_checkpoint"]


class SemanticFPNHead(nn.Module):
    """The Semantic FPN decoder: per-level conv-BN-ReLU (+ x2 upsampling) towers to stride 4, summed, classified.

    Args:
        in_channels: the FPN width.
        channels: the tower width (128 in the paper).
        num_classes: output classes.
        strides: the FPN levels' strides, finest first.
        dropout: channel dropout before the classifier.
    """

    def __init__(self, in_channels: int = 256, channels: int = 128, num_classes: int = 150,
                 strides: Sequence[int] = (4, 8, 16, 32), dropout: float = 0.1):
        super().__init__()
        if num_classes < 1 or channels < 1:
            raise ValueError(f"num_classes and channels must be >= 1, got {num_classes}, {channels}.")
        self.strides = [int(s) for s in strides]
        self.num_classes = num_classes
        self.scale_heads = nn.ModuleList()
        for s in self.strides:
            n = max(1, int(round(math.log2(s) - math.log2(self.strides[0]))))
            layers: list[nn.Module] = []
            for k in range(n):
                layers.append(Conv2dNormActivation(in_channels if k == 0 else channels, channels, 3,
                                                   norm_layer=nn.BatchNorm2d, activation_layer=nn.ReLU))
                if s != self.strides[0]:
                    layers.append(nn.Upsample(scale_factor=2.0, mode="bilinear", align_corners=False))
            self.scale_heads.append(nn.Sequential(*layers))
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        out = self.scale_heads[0](feats[0])
        for i, head in enumerate(self.scale_heads):
            if i > 0:
                y = head(feats[i])
                out = out + F.interpolate(y, size=out.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(self.dropout(out))

    @torch.no_grad()
    def fuse(self, inplace: bool = False) -> SemanticFPNHead:
        """Fold every conv+BN of the towers into one conv (eval-mode statistics)."""
        head = self if inplace else copy.deepcopy(self)
        head.eval()
        for tower in head.scale_heads:
            for i, m in enumerate(tower):
                if isinstance(m, Conv2dNormActivation) and isinstance(m[1], nn.BatchNorm2d):
                    tower[i] = nn.Sequential(fuse_conv_bn_eval(m[0], m[1]), m[2])
        return head


class SemanticFPN(nn.Module):
    """Backbone + FPN neck + Semantic FPN head; ``forward`` returns logits at the input size."""

    def __init__(self, neck: RepViTFPN, head: SemanticFPNHead):
        super().__init__()
        self.neck = neck
        self.head = head
        self.num_classes = head.num_classes

    @property
    def backbone(self) -> DenseBackbone:
        return self.neck.backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = list(self.neck(x).values())
        logits = self.head(feats)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)

    @torch.no_grad()
    def fuse(self, inplace: bool = False) -> SemanticFPN:
        """The deploy form: re-parameterized backbone, head conv+BN folded; same logits, in eval mode."""
        model = self if inplace else copy.deepcopy(self)
        model.neck = model.neck.fuse(inplace=True)
        model.head = model.head.fuse(inplace=True)
        return model.eval()

    @torch.jit.ignore
    def reset_classifier(self, num_classes: int) -> None:
        """A freshly initialised 1x1 classifier for ``num_classes`` (fine-tuning on another label set)."""
        ref = self.head.classifier.weight
        self.head.classifier = nn.Conv2d(ref.shape[1], num_classes, 1).to(ref.device, ref.dtype)
        self.head.num_classes = self.num_classes = num_classes


def build_semantic_fpn(
    model: str = "repvit_m0_6",
    *,
    num_classes: int,
    taps: str = "segment",
    frozen_bn: bool = True,
    fpn_channels: int = 256,
    head_channels: int = 128,
    dropout: float = 0.1,
    drop_path_rate: float = 0.0,
    backbone_checkpoint: str | None = None,
) -> SemanticFPN:
    """A Semantic FPN on a registered RepViT (the paper: segment taps, frozen BN, FPN 256, head 128, dropout 0.1).

    ``backbone_checkpoint``: any file :func:`repvit.dense.load_backbone_checkpoint` reads (classification
    checkpoints of every supported format, the authors' mmseg/mmdet files, our dense checkpoints).
    """
    backbone = DenseBackbone(model, taps=taps, frozen_bn=frozen_bn, drop_path_rate=drop_path_rate)
    if backbone_checkpoint:
        load_backbone_checkpoint(backbone, backbone_checkpoint)
    neck = RepViTFPN(backbone, fpn_channels)
    head = SemanticFPNHead(fpn_channels, head_channels, num_classes, backbone.strides, dropout)
    return SemanticFPN(neck, head)


def load_segmentation_weights(model: SemanticFPN, path: str | Path) -> None:
    """Load a segmentation checkpoint of ours into ``model`` for fine-tuning.

    A classifier with another class count is not loaded: it is re-initialised, with a warning naming the file.
    """
    from repvit.engine.checkpoint import load_train_checkpoint

    ckpt = load_train_checkpoint(path)
    check_task(ckpt, "segment", path, "To start from a classifier use --backbone-checkpoint.")
    sd = dict(ckpt["model"])
    cls_w = sd.get("head.classifier.weight")
    if cls_w is not None and cls_w.shape[0] != model.num_classes:
        warnings.warn(f"{path} has a {cls_w.shape[0]}-class head but the model has {model.num_classes} classes: "
                      "the classifier is re-initialised (fine-tuning).", stacklevel=2)
        sd = {k: v for k, v in sd.items() if not k.startswith("head.classifier.")}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.startswith("head.classifier.")]
    if missing or unexpected:
        raise ValueError(f"{path} does not fit this model ({model.backbone.build_info.get('model_name')}): missing "
                         f"{missing[:5]}, unexpected {unexpected[:5]}; use the model it was trained with (--model).")


def _model_from_cfg(cfg: SegmentConfig, num_classes: int, backbone_checkpoint: str | None) -> SemanticFPN:
    return build_semantic_fpn(cfg.model, num_classes=num_classes, taps=cfg.taps, frozen_bn=cfg.frozen_bn,
                              fpn_channels=cfg.fpn_channels, head_channels=cfg.head_channels, dropout=cfg.dropout,
                              drop_path_rate=cfg.drop_path, backbone_checkpoint=backbone_checkpoint)


def load_segmenter_checkpoint(path: str | Path, *, use_ema: bool = False
                              ) -> tuple[SemanticFPN, SegmentConfig, dict[str, Any]]:
    """Rebuild the trained model from a ``repvit segment train`` checkpoint: ``(model in eval mode, config, meta)``
    (``use_ema``: the EMA weights, when the checkpoint has them)."""
    from repvit.engine.checkpoint import load_train_checkpoint

    ckpt = load_train_checkpoint(path)
    check_task(ckpt, "segment", path)
    cfg = SegmentConfig.from_dict(ckpt["config"])
    meta = dict(ckpt.get("meta") or {})
    model = _model_from_cfg(cfg, int(meta["num_classes"]), None)
    sd = ckpt["ema"] if use_ema and ckpt.get("ema") is not None else ckpt["model"]
    model.load_state_dict(sd)
    return model.eval(), cfg, meta
