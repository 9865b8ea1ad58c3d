"""The authors' mmdet 2.x Mask R-CNN files (``repvit_{m1_1,m1_5,m2_3}_coco.pth``) as torchvision's ``MaskRCNN``
(stage taps) with MMDetection's test settings, and the public detection loader :func:`load_detector`
(``repvit.load_detector``: theirs or ours, by file or published name).

The backbone goes through the authors' classifier layout (``backbone.features.N``); ``_MMDET_RULES`` rename the
neck, the RPN and the RoI heads (docs/detection.md tables them). mmdet puts the background class last in
``fc_cls`` and has no background block in ``fc_reg`` / ``conv_logits``; torchvision puts it first: row 0 of
``cls_score`` is mmdet's row ``K``, row ``k`` is mmdet's row ``k - 1``; the background blocks of ``bbox_pred`` and
``mask_fcn_logits`` (never used at inference) are zero.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn

from repvit.io import CheckpointError

from ..checkpoint import DenseCheckpoint, backbone_model_name, load_mapped, open_dense_model, split_backbone

__all__ = ["maskrcnn_from_mmdet", "mmdet_detector_spec", "coco_categories", "open_detector", "load_detector"]


_MMDET_RULES = (
    (r"^neck\.lateral_convs\.(\d+)\.conv\.", r"backbone.fpn.inner_blocks.\1.0."),
    (r"^neck\.fpn_convs\.(\d+)\.conv\.", r"backbone.fpn.layer_blocks.\1.0."),
    (r"^rpn_head\.rpn_conv\.", "rpn.head.conv.0.0."),
    (r"^rpn_head\.rpn_cls\.", "rpn.head.cls_logits."),
    (r"^rpn_head\.rpn_reg\.", "rpn.head.bbox_pred."),
    (r"^roi_head\.bbox_head\.shared_fcs\.0\.", "roi_heads.box_head.fc6."),
    (r"^roi_head\.bbox_head\.shared_fcs\.1\.", "roi_heads.box_head.fc7."),
    (r"^roi_head\.bbox_head\.fc_cls\.", "roi_heads.box_predictor.cls_score."),
    (r"^roi_head\.bbox_head\.fc_reg\.", "roi_heads.box_predictor.bbox_pred."),
    (r"^roi_head\.mask_head\.convs\.(\d+)\.conv\.", r"roi_heads.mask_head.\1.0."),
    (r"^roi_head\.mask_head\.upsample\.", "roi_heads.mask_predictor.conv5_mask."),
    (r"^roi_head\.mask_head\.conv_logits\.", "roi_heads.mask_predictor.mask_fcn_logits."),
)


def coco_categories(num_classes: int):
    """The :class:`~repvit.dense.detection.coco.CategoryMap` of an mmdet head with ``num_classes`` (80: COCO's
    category ids and names in id order, as mmdet's ``CocoDataset`` orders its labels; else ids ``1..K``)."""
    from .coco import CategoryMap

    if num_classes == 80:
        from torchvision.models.detection import MaskRCNN_ResNet50_FPN_Weights

        names = MaskRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"]  # index = COCO category id
        cats = [(i, n) for i, n in enumerate(names) if n not in ("__background__", "N/A")]
        return CategoryMap(tuple(i for i, _ in cats), tuple(n for _, n in cats))
    return CategoryMap(tuple(range(1, num_classes + 1)), tuple(str(i) for i in range(1, num_classes + 1)))


def mmdet_detector_spec(state_dict: Mapping[str, torch.Tensor], model_name: str):
    """The :class:`~repvit.dense.detection.DetectorSpec` of an mmdet 2.x Mask R-CNN (sizes read from the tensors,
    the authors' ``test_cfg``: RPN 1000 per level before NMS 0.7, 1000 after; boxes score > 0.05, NMS 0.5, 100 per
    image; test resize 1333 x 800 keeping the ratio; anchors 8 x stride, unrounded, at fixed strides; aligned
    RoIAlign, adaptive sampling)."""
    from .model import DetectorSpec

    mask_convs = {int(m.group(1)) for k in state_dict if (m := re.match(r"roi_head\.mask_head\.convs\.(\d+)\.", k))}
    return DetectorSpec(
        model=model_name, detector="maskrcnn", taps="stage", frozen_bn=True,
        fpn_channels=int(state_dict["neck.lateral_convs.0.conv.weight"].shape[0]), min_size=800, max_size=1333,
        rpn_pre_nms_top_n_test=1000, rpn_post_nms_top_n_test=1000,
        box_head_dim=int(state_dict["roi_head.bbox_head.shared_fcs.0.weight"].shape[0]),
        mask_head_channels=int(state_dict["roi_head.mask_head.upsample.weight"].shape[1]),
        mask_head_convs=len(mask_convs), roi_sampling_ratio=0, anchor_scale=8, box_score_thresh=0.05,
        box_nms_thresh=0.5, detections_per_img=100, mmdet_anchors=True, mmdet_roi_align=True)


def _background_first(v: torch.Tensor, num_fg: int, key: str) -> torch.Tensor:
    """mmdet's class-dependent rows (background last or absent) in torchvision's order (background first)."""
    if key.startswith("roi_heads.box_predictor.cls_score."):
        if v.shape[0] != num_fg + 1:
            raise CheckpointError(f"fc_cls has {v.shape[0]} rows; expected {num_fg} classes + background.")
        return torch.cat([v[num_fg:], v[:num_fg]])
    if key.startswith("roi_heads.box_predictor.bbox_pred."):
        if v.shape[0] == 4:  # reg_class_agnostic: one box for every class
            return v.repeat(num_fg + 1, *([1] * (v.dim() - 1)))
        if v.shape[0] != 4 * num_fg:
            raise CheckpointError(f"fc_reg has {v.shape[0]} rows; expected 4 x {num_fg} (class-specific).")
        return torch.cat([torch.zeros_like(v[:4]), v])
    if key.startswith("roi_heads.mask_predictor.mask_fcn_logits."):
        if v.shape[0] != num_fg:
            raise CheckpointError(f"conv_logits has {v.shape[0]} rows; expected {num_fg} (class-specific masks).")
        return torch.cat([torch.zeros_like(v[:1]), v])
    return v


def maskrcnn_from_mmdet(state_dict: Mapping[str, torch.Tensor], *, where: str = "the mmdet state dict"):
    """torchvision's ``MaskRCNN`` (eval mode) holding an mmdet 2.x Mask R-CNN state dict (see the module table).

    The model gets ``class_names`` (index = label; 0 is the background) and ``categories`` (a CategoryMap).
    """
    from .model import build_detector

    bb, rest = split_backbone(state_dict)
    for k in ("roi_head.bbox_head.fc_cls.weight", "roi_head.bbox_head.shared_fcs.0.weight",
              "roi_head.mask_head.conv_logits.weight", "roi_head.mask_head.upsample.weight",
              "neck.lateral_convs.0.conv.weight", "rpn_head.rpn_cls.weight"):
        if k not in rest:
            raise CheckpointError(f"{where} has no {k!r}; it is not an mmdet 2.x Mask R-CNN (FPN, RPNHead, "
                                  "Shared2FCBBoxHead, FCNMaskHead).")
    if rest["rpn_head.rpn_cls.weight"].shape[0] != 3:
        raise CheckpointError(f"{where}: rpn_cls has {rest['rpn_head.rpn_cls.weight'].shape[0]} outputs; repvit maps "
                              "the sigmoid RPN with 3 anchors per location (mmdet's Mask R-CNN default).")
    num_fg = int(rest["roi_head.bbox_head.fc_cls.weight"].shape[0]) - 1
    name = backbone_model_name(bb)
    spec = mmdet_detector_spec(rest, name)
    model = build_detector(spec, num_fg + 1)
    load_mapped(model, bb, rest, backbone_prefix="backbone.backbone.", rules=_MMDET_RULES, where=where,
                convert=lambda v, key: _background_first(v, num_fg, key))
    cats = coco_categories(num_fg)
    model.categories = cats
    model.class_names = ["__background__", *cats.names]
    model.spec = spec
    return model.eval()


def _from_mmdet(ckpt: DenseCheckpoint) -> tuple[nn.Module, dict[str, Any]]:
    model = maskrcnn_from_mmdet(ckpt.state_dict, where=str(ckpt.path))
    return model, {"num_classes": len(model.class_names), **model.categories.to_meta()}


def open_detector(name_or_path: str | os.PathLike) -> tuple[nn.Module, DenseCheckpoint, dict[str, Any]]:
    """``(model in eval mode, the checkpoint read, meta)``; meta holds ``num_classes``, ``category_ids``,
    ``class_names``, ``layout`` and, for ours, ``config`` (the :class:`DetectConfig`)."""
    from .model import load_detector_checkpoint

    return open_dense_model(name_or_path, "detect", from_authors=_from_mmdet, from_ours=load_detector_checkpoint)


def load_detector(name_or_path: str | os.PathLike, *, fused: bool = False) -> nn.Module:
    """A torchvision detector from a file or a published name, in eval mode (``fused``: re-parameterized backbone).

    Accepts the authors' mmdet Mask R-CNN files (``repvit_m1_1_coco``, ...) and ``repvit detect train``
    checkpoints. The model takes a list of float images in [0, 1] (it normalises and resizes them itself) and
    returns torchvision's detections with labels ``1..K`` (``model.class_names[label]``).
    """
    from .model import fuse_detector

    model, _, meta = open_detector(name_or_path)
    model.class_names = ["__background__", *(meta.get("class_names") or [])]
    return fuse_detector(model, inplace=True) if fused else model.eval()
