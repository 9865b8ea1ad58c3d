"""Detectors on RepViT: torchvision's ``MaskRCNN``, ``FasterRCNN`` and ``RetinaNet`` over :class:`RepViTFPN`.

A detector is a composition (as in torchvision): the RepViT trunk (:class:`~repvit.dense.DenseBackbone`, stage-output
taps, frozen BatchNorm), torchvision's FPN (:class:`~repvit.dense.RepViTFPN`) and torchvision's heads.

* R-CNNs: FPN P2-P6 (strides 4-64; P6 is a max-pool of P5, ``LastLevelMaxPool``), RPN anchors 32-512 (8 × stride),
  ratios 0.5/1/2, RoIAlign 7 (boxes) and 14 (masks).
* RetinaNet: FPN P3-P7 (P6 and P7 strided 3×3 convs on P5, ``LastLevelP6P7``), torchvision's default anchors.

:class:`DetectorSpec` holds the head sizes. Its defaults are MMDetection 2.x's Mask R-CNN defaults (the paper's
detection setting):
2-FC box head of 1024, four 256-channel mask convs, 512 sampled RoIs, RPN 2000/1000 proposals (train) and
1000/1000 (test). The built-in digits recipe uses leaner heads (see ``configs/detect_digits.yaml``).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn as nn
from timm.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

__all__ = ["DETECTORS", "DetectorSpec", "build_detector", "fuse_detector", "load_detector_weights",
           "IMAGENET_MEAN", "IMAGENET_STD"]

_log = logging.getLogger(__name__)

DETECTORS = ("maskrcnn", "fasterrcnn", "retinanet")
IMAGENET_MEAN, IMAGENET_STD = IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD  # timm's constants, under this module's names


@dataclass(frozen=True)
class DetectorSpec:
    """What the detector is made of (everything but the class count)."""

    model: str = "repvit_m1_1"
    detector: str = "maskrcnn"
    taps: str = "stage"
    frozen_bn: bool = True
    fpn_channels: int = 256
    min_size: int = 800  # the model's own resize: short side (keeping the aspect ratio) ...
    max_size: int = 1333  # ... long side at most
    rpn_batch_size_per_image: int = 256
    rpn_pre_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_train: int = 1000
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_test: int = 1000
    box_batch_size_per_image: int = 512
    box_head_dim: int = 1024
    mask_head_channels: int = 256
    mask_head_convs: int = 4
    roi_sampling_ratio: int = 2  # RoIAlign samples per bin side (torchvision's default; 1 is 4x cheaper on a CPU)
    anchor_scale: int = 8  # R-CNN anchor side = anchor_scale x stride of the level (MMDetection: 8)
    box_score_thresh: float = 0.05
    box_nms_thresh: float = 0.5
    detections_per_img: int = 100

    def __post_init__(self):
        if self.detector not in DETECTORS:
            raise ValueError(f"detector must be one of {', '.join(DETECTORS)}, got {self.detector!r}.")

    @classmethod
    def from_config(cls, cfg: Any) -> DetectorSpec:
        """The spec from any object (a task config) carrying these field names."""
        return cls(**{f.name: getattr(cfg, f.name) for f in fields(cls) if hasattr(cfg, f.name)})


def _neck(spec: DetectorSpec):
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

    from repvit.dense import DenseBackbone, RepViTFPN

    if spec.detector == "retinanet":
        body = DenseBackbone(spec.model, taps=spec.taps, frozen_bn=spec.frozen_bn, out_indices=(1, 2, 3))
        return RepViTFPN(body, spec.fpn_channels, extra_blocks=LastLevelP6P7(spec.fpn_channels, spec.fpn_channels))
    body = DenseBackbone(spec.model, taps=spec.taps, frozen_bn=spec.frozen_bn, out_indices=(0, 1, 2, 3))
    return RepViTFPN(body, spec.fpn_channels, extra_blocks=LastLevelMaxPool())


def build_detector(spec: DetectorSpec, num_classes: int) -> nn.Module:
    """A torchvision detector on a RepViT backbone with randomly initialised weights.

    Args:
        spec: the architecture and head sizes.
        num_classes: classes including the background (``K + 1`` for labels ``1..K``).
    """
    if num_classes < 2:
        raise ValueError(f"num_classes counts the background too and must be >= 2, got {num_classes}.")
    from torchvision.models.detection import FasterRCNN, MaskRCNN, RetinaNet
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.ops import MultiScaleRoIAlign

    neck = _neck(spec)
    common = dict(min_size=spec.min_size, max_size=spec.max_size, image_mean=list(IMAGENET_MEAN),
                  image_std=list(IMAGENET_STD))
    if spec.detector == "retinanet":
        return RetinaNet(neck, num_classes, score_thresh=spec.box_score_thresh, nms_thresh=spec.box_nms_thresh,
                         detections_per_img=spec.detections_per_img, **common)
    c = neck.out_channels
    rcnn = dict(
        rpn_pre_nms_top_n_train=spec.rpn_pre_nms_top_n_train, rpn_post_nms_top_n_train=spec.rpn_post_nms_top_n_train,
        rpn_pre_nms_top_n_test=spec.rpn_pre_nms_top_n_test, rpn_post_nms_top_n_test=spec.rpn_post_nms_top_n_test,
        rpn_batch_size_per_image=spec.rpn_batch_size_per_image,
        box_batch_size_per_image=spec.box_batch_size_per_image, box_score_thresh=spec.box_score_thresh,
        box_nms_thresh=spec.box_nms_thresh, box_detections_per_img=spec.detections_per_img,
        rpn_anchor_generator=AnchorGenerator(tuple((spec.anchor_scale * s,) for s in (4, 8, 16, 32, 64)),
                                             ((0.5, 1.0, 2.0),) * 5),
        box_roi_pool=MultiScaleRoIAlign(["0", "1", "2", "3"], 7, spec.roi_sampling_ratio),
        box_head=TwoMLPHead(c * 7 * 7, spec.box_head_dim),
        box_predictor=FastRCNNPredictor(spec.box_head_dim, num_classes), **common)
    if spec.detector == "fasterrcnn":
        return FasterRCNN(neck, None, **rcnn)
    layers = [spec.mask_head_channels] * spec.mask_head_convs
    return MaskRCNN(neck, None, mask_roi_pool=MultiScaleRoIAlign(["0", "1", "2", "3"], 14, spec.roi_sampling_ratio),
                    mask_head=MaskRCNNHeads(c, layers, 1),
                    mask_predictor=MaskRCNNPredictor(layers[-1], spec.mask_head_channels, num_classes), **rcnn)


@torch.no_grad()
def fuse_detector(model: nn.Module, inplace: bool = False) -> nn.Module:
    """The detector with its RepViT backbone re-parameterized (deploy form); heads and FPN unchanged, eval mode."""
    model = model if inplace else copy.deepcopy(model)
    model.backbone = model.backbone.fuse(inplace=True)
    return model.eval()


def load_detector_weights(model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str = "checkpoint"
                          ) -> list[str]:
    """Load a detector state dict; class-dependent layers of another shape are re-initialized with a warning.

    Returns the keys that were skipped. Any other mismatch (another backbone or head size) is an error.
    """
    own = model.state_dict()
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state_dict.items()}
    skipped = [k for k, v in sd.items() if k in own and own[k].shape != v.shape]
    class_layers = ("roi_heads.box_predictor.", "roi_heads.mask_predictor.mask_fcn_logits.",
                    "head.classification_head.cls_logits.")
    other = [k for k in skipped if not k.startswith(class_layers)]
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    if other or missing or unexpected:
        raise ValueError(
            f"{source} does not fit this detector: shape differs for {other[:5]}, missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}. Use the same --model and --detector (and head sizes) as the run that wrote it.")
    if skipped:
        _log.warning("%s has another class count: the class-dependent layers %s are re-initialized", source,
                     sorted({k.rsplit('.', 1)[0] for k in skipped}))
    model.load_state_dict({k: v for k, v in sd.items() if k not in skipped}, strict=False)
    return skipped
