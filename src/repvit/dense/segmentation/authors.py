"""The authors' mmseg 0.30 Semantic FPN files (``repvit_{m1_1,m1_5,m2_3}_ade20k.pth``: ``{'meta', 'state_dict'}``)
as our :class:`~repvit.dense.segmentation.SemanticFPN` (segment taps), and the public segmentation loader
:func:`load_segmenter` (``repvit.load_segmenter``: theirs or ours, by file or published name).

The backbone goes through the authors' classifier layout (``backbone.features.N``); ``_MMSEG_RULES`` rename the
neck and the head (docs/dense.md lists them). The mapped model computes mmseg's logits: every tensor of the file
is used and every tensor of the model is set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn

from repvit.io import CheckpointError

from ..checkpoint import DenseCheckpoint, backbone_model_name, load_mapped, open_dense_model, split_backbone

__all__ = ["semantic_fpn_from_mmseg", "mmseg_class_names", "open_segmenter", "load_segmenter"]


_MMSEG_RULES = (
    (r"^neck\.lateral_convs\.(\d+)\.conv\.", r"neck.fpn.inner_blocks.\1.0."),
    (r"^neck\.fpn_convs\.(\d+)\.conv\.", r"neck.fpn.layer_blocks.\1.0."),
    (r"^decode_head\.scale_heads\.(\d+)\.(\d+)\.conv\.", r"head.scale_heads.\1.\2.0."),
    (r"^decode_head\.scale_heads\.(\d+)\.(\d+)\.bn\.", r"head.scale_heads.\1.\2.1."),
    (r"^decode_head\.conv_seg\.", r"head.classifier."),
)


def semantic_fpn_from_mmseg(state_dict: Mapping[str, torch.Tensor], *, where: str = "the mmseg state dict",
                            taps: str = "segment"):
    """A :class:`~repvit.dense.segmentation.SemanticFPN` (eval mode) holding an mmseg 0.30 Semantic FPN state dict.

    The sizes (backbone variant, FPN width, head width, classes) are read from the tensors; ``taps`` is the
    authors' segmentation convention. Every tensor must map and every model tensor must be given.
    """
    from .model import build_semantic_fpn

    bb, rest = split_backbone(state_dict)
    name = backbone_model_name(bb)
    for k in ("decode_head.conv_seg.weight", "neck.lateral_convs.0.conv.weight"):
        if k not in rest:
            raise CheckpointError(f"{where} has no {k!r}; it is not an mmseg Semantic FPN (FPN neck + FPNHead).")
    cls_w = rest["decode_head.conv_seg.weight"]
    model = build_semantic_fpn(name, num_classes=int(cls_w.shape[0]), taps=taps,
                               fpn_channels=int(rest["neck.lateral_convs.0.conv.weight"].shape[0]),
                               head_channels=int(cls_w.shape[1]), dropout=0.1)
    load_mapped(model, bb, rest, backbone_prefix="neck.backbone.", rules=_MMSEG_RULES, where=where)
    model.build_info = {"model_name": name, "source": "mmseg", "taps": taps}
    return model.eval()


def mmseg_class_names(ckpt: DenseCheckpoint, num_classes: int) -> list[str]:
    """The class names an mmseg file keeps in ``meta['CLASSES']`` when they fit ``num_classes``, else ``"0".."K-1"``."""
    meta = ckpt.obj.get("meta")
    classes = meta.get("CLASSES") if isinstance(meta, Mapping) else None
    if classes and len(classes) == num_classes:
        return [str(c) for c in classes]
    return [str(i) for i in range(num_classes)]


def _from_mmseg(ckpt: DenseCheckpoint) -> tuple[nn.Module, dict[str, Any]]:
    model = semantic_fpn_from_mmseg(ckpt.state_dict, where=str(ckpt.path))
    return model, {"num_classes": model.num_classes, "class_names": mmseg_class_names(ckpt, model.num_classes),
                   "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "reduce_zero_label": True}


def open_segmenter(name_or_path: str | os.PathLike) -> tuple[nn.Module, DenseCheckpoint, dict[str, Any]]:
    """``(model in eval mode, the checkpoint read, meta)``; meta holds ``num_classes``, ``class_names``, ``mean``,
    ``std``, ``layout`` and, for ours, ``config`` (the :class:`SegmentConfig`)."""
    from .model import load_segmenter_checkpoint

    return open_dense_model(name_or_path, "segment", from_authors=_from_mmseg, from_ours=load_segmenter_checkpoint)


def load_segmenter(name_or_path: str | os.PathLike, *, fused: bool = False) -> nn.Module:
    """A Semantic FPN from a file or a published name, in eval mode (``fused``: the deploy form, same logits).

    Accepts the authors' mmseg files (``repvit_m1_1_ade20k``, ...) and ``repvit segment train`` checkpoints. The
    model takes normalised images ``(N, 3, H, W)`` (ImageNet mean and std) and returns logits at the input size.
    """
    model, _, meta = open_segmenter(name_or_path)
    model.class_names = list(meta.get("class_names") or [])
    return model.fuse() if fused else model.eval()
