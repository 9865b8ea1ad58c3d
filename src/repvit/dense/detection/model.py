"""Detectors on RepViT: torchvision's ``MaskRCNN``, ``FasterRCNN`` and ``RetinaNet`` over :class:`RepViTFPN`.

A detector is a composition (as in torchvision): the RepViT trunk (:class:`~repvit.dense.DenseBackbone`, stage-output
taps, frozen BatchNorm), torchvision's FPN (:class:`~repvit.dense.RepViTFPN`) and torchvision's heads.

Building and loading: :func:`build_detector` from a :class:`DetectorSpec` (:func:`detector_spec` of a
:class:`~repvit.dense.detection.config.DetectConfig`), :func:`init_detector` (a run's initial weights),
:func:`load_detector_weights` and :func:`load_detector_checkpoint` (a trained detector from its checkpoint).

* R-CNNs: FPN P2-P6 (strides 4-64; P6 is a max-pool of P5, ``LastLevelMaxPool``), RPN anchors 32-512 (8 × stride),
  ratios 0.5/1/2, RoIAlign 7 (boxes) and 14 (masks).
* RetinaNet: FPN P3-P7 (P6 and P7 strided 3×3 convs on P5, ``LastLevelP6P7``), torchvision's default anchors.

:class:`DetectorSpec` holds the head sizes. Its defaults are MMDetection 2.x's Mask R-CNN defaults (the paper's
detection setting):
2-FC box head of 1024, four 256-channel mask convs, 512 sampled RoIs, RPN 2000/1000 proposals (train) and
1000/1000 (test). The built-in digits recipe uses leaner heads (see ``configs/detect_digits.yaml``).

Two settings make the R-CNNs compute what MMDetection 2.x computes, for the authors' published Mask R-CNN files
(:func:`repvit.load_detector`): ``mmdet_anchors=True`` places the RPN anchors as MMDetection does (unrounded, at
fixed level strides; :class:`MMDetAnchorGenerator`), and ``mmdet_roi_align=True`` pools RoIs with
``roi_align(aligned=True)`` (the half-pixel-corrected RoIAlign of mmcv's default) and MMDetection's level rule
(``floor(log2(sqrt(area) / 56))``, which picks the same levels as torchvision's). Both default to torchvision's
behaviour, so existing checkpoints give identical results.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
import torchvision
from timm.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes, resize_keypoints
from torchvision.ops import MultiScaleRoIAlign

from repvit.io import CheckpointError, check_task, checkpoint_task, load_torch, strip_prefixes

if TYPE_CHECKING:
    from .config import DetectConfig

__all__ = ["DETECTORS", "DetectorSpec", "build_detector", "fuse_detector", "load_detector_weights",
           "IMAGENET_MEAN", "IMAGENET_STD", "MMDetAnchorGenerator", "AlignedMultiScaleRoIAlign",
           "SeparableMultiScaleRoIAlign", "MaskPasteTransform", "ClassNmsRoIHeads", "paste_masks", "detector_spec",
           "init_detector", "load_detector_checkpoint"]

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
    mmdet_anchors: bool = False  # MMDetection's anchors: unrounded, fixed strides (MMDetAnchorGenerator)
    mmdet_roi_align: bool = False  # RoIAlign aligned=True with MMDetection's level rule (the authors' files)

    def __post_init__(self):
        if self.detector not in DETECTORS:
            raise ValueError(f"detector must be one of {', '.join(DETECTORS)}, got {self.detector!r}.")

    @classmethod
    def from_config(cls, cfg: Any) -> DetectorSpec:
        """The spec from any object (a task config) carrying these field names."""
        return cls(**{f.name: getattr(cfg, f.name) for f in fields(cls) if hasattr(cfg, f.name)})


class MMDetAnchorGenerator(AnchorGenerator):
    """torchvision's ``AnchorGenerator`` placing anchors as MMDetection 2.x does.

    * The cell anchors are not rounded to integers: ``(-w/2, -h/2, w/2, h/2)`` with ``h = size * sqrt(ratio)``,
      ``w = size / sqrt(ratio)``, ratios in order, centred on the top-left corner of each stride cell
      (``center_offset=0``). torchvision rounds them.
    * Each level has its fixed stride (``strides``: 4, 8, 16, 32, 64). torchvision derives a level's stride from
      ``image size // grid size``, which for P6 (a stride-2 max-pool of P5) of a batch padded to a multiple of 32
      but not of 64 gives e.g. 800 // 13 = 61 instead of 64.
    """

    def __init__(self, sizes, aspect_ratios, strides: tuple[int, ...] = (4, 8, 16, 32, 64)):
        super().__init__(sizes, aspect_ratios)
        if len(strides) != len(self.cell_anchors):
            raise ValueError(f"{len(self.cell_anchors)} anchor levels but {len(strides)} strides.")
        self.strides = tuple(int(s) for s in strides)

    def generate_anchors(self, scales: list[int], aspect_ratios: list[float], dtype: torch.dtype = torch.float32,
                         device: torch.device = torch.device("cpu")) -> torch.Tensor:
        scales_t = torch.as_tensor(scales, dtype=dtype, device=device)
        h_ratios = torch.sqrt(torch.as_tensor(aspect_ratios, dtype=dtype, device=device))
        ws = ((1 / h_ratios)[:, None] * scales_t[None, :]).reshape(-1)
        hs = (h_ratios[:, None] * scales_t[None, :]).reshape(-1)
        return torch.stack([-0.5 * ws, -0.5 * hs, 0.5 * ws, 0.5 * hs], dim=1)

    def forward(self, image_list, feature_maps: list[torch.Tensor]) -> list[torch.Tensor]:
        fm = feature_maps[0]
        grid_sizes = [list(f.shape[-2:]) for f in feature_maps]
        strides = [[torch.tensor(s, dtype=torch.int64, device=fm.device)] * 2 for s in self.strides]
        self.set_cell_anchors(fm.dtype, fm.device)
        anchors = torch.cat(self.grid_anchors(grid_sizes, strides))
        return [anchors for _ in image_list.image_sizes]


def _rois(boxes: list[torch.Tensor]) -> torch.Tensor:
    """Per-image boxes as RoIAlign's ``(K, 5)`` rois: image index, x1, y1, x2, y2."""
    return torch.cat([torch.cat([b.new_full((b.shape[0], 1), float(i)), b], 1) for i, b in enumerate(boxes)])


def _pool_levels(feats: list[torch.Tensor], rois: torch.Tensor, levels: torch.Tensor, scales: list[float],
                 output_size: tuple[int, int], sampling_ratio: int, aligned: bool) -> torch.Tensor:
    """Each roi pooled from the level ``levels`` gives it, at that level's scale
    (:func:`repvit.dense.roi_align.roi_align`).

    Traced (ONNX export), the levels' results are concatenated and put back in roi order by one row gather: torchvision
    merges them with a ``ScatterElements`` whose index has one entry per output element (12.5 M for Mask R-CNN's 1000
    box rois), which ONNX Runtime runs on one thread (0.4 s of a 512 px Mask R-CNN on 2 Zen 3 cores)."""
    from ..roi_align import roi_align

    if torchvision._is_tracing():
        idx = [torch.where(levels == lvl)[0] for lvl in range(len(feats))]
        pooled = [roi_align(feat, rois[i].to(feat.dtype), output_size, scale, sampling_ratio, aligned)
                  for feat, i, scale in zip(feats, idx, scales)]
        return torch.cat(pooled)[torch.argsort(torch.cat(idx))]
    out = feats[0].new_zeros((rois.shape[0], feats[0].shape[1], *output_size))
    for lvl, (feat, scale) in enumerate(zip(feats, scales)):
        idx = torch.where(levels == lvl)[0]
        if idx.numel():
            out[idx] = roi_align(feat, rois[idx].to(feat.dtype), output_size, scale, sampling_ratio, aligned)
    return out


class SeparableMultiScaleRoIAlign(MultiScaleRoIAlign):
    """torchvision's ``MultiScaleRoIAlign`` (its level rule and scales), pooling with
    :func:`repvit.dense.roi_align.roi_align` where its separable CPU backward applies (training on a CPU
    with a fixed ``sampling_ratio``) and, when traced or exported, with the levels merged by one gather
    (:func:`_pool_levels`); everywhere else torchvision's own forward."""

    def forward(self, x: dict[str, torch.Tensor], boxes: list[torch.Tensor],
                image_shapes: list[tuple[int, int]]) -> torch.Tensor:
        from torchvision.ops.poolers import _filter_input, _setup_scales

        from ..roi_align import separable_backward_applies

        feats = _filter_input(x, self.featmap_names)
        if not feats or not (torchvision._is_tracing() or separable_backward_applies(feats[0], self.sampling_ratio)):
            return super().forward(x, boxes, image_shapes)
        if self.scales is None or self.map_levels is None:
            self.scales, self.map_levels = _setup_scales(feats, image_shapes, self.canonical_scale,
                                                         self.canonical_level)
        rois = _rois(boxes)
        levels = self.map_levels(boxes) if len(feats) > 1 else rois.new_zeros(rois.shape[0], dtype=torch.long)
        return _pool_levels(feats, rois, levels, self.scales, self.output_size, self.sampling_ratio, False)


class AlignedMultiScaleRoIAlign(MultiScaleRoIAlign):
    """Multi-level RoIAlign as MMDetection 2.x's ``SingleRoIExtractor`` with mmcv's ``RoIAlign`` (aligned).

    A box of side ``s = sqrt(w * h)`` is pooled from level ``floor(log2(s / finest_scale + 1e-6))`` (clamped to
    the levels), with torchvision's ``roi_align(..., aligned=True)`` at ``1 / stride``. A drop-in replacement for
    torchvision's ``MultiScaleRoIAlign`` (a subclass, as its R-CNN heads require): ``forward(features, boxes,
    image_shapes)``.

    Args:
        featmap_names: the feature keys, finest first.
        output_size: the pooled size (7 for boxes, 14 for masks).
        sampling_ratio: samples per bin side; 0 is adaptive (``ceil(roi_size / output_size)``, MMDetection's).
        strides: the strides of the levels.
        finest_scale: the box side mapped to the second level's lower bound over two (56 in MMDetection).
    """

    def __init__(self, featmap_names: list[str], output_size: int, sampling_ratio: int,
                 strides: tuple[int, ...] = (4, 8, 16, 32), finest_scale: float = 56.0):
        if len(featmap_names) != len(strides):
            raise ValueError(f"{len(featmap_names)} feature maps but {len(strides)} strides.")
        super().__init__(list(featmap_names), int(output_size), int(sampling_ratio))
        self.output_size = (int(output_size), int(output_size))
        self.strides = [int(s) for s in strides]
        self.finest_scale = float(finest_scale)

    def forward(self, x: dict[str, torch.Tensor], boxes: list[torch.Tensor],
                image_shapes: list[tuple[int, int]]) -> torch.Tensor:
        feats = [x[n] for n in self.featmap_names]
        rois = _rois(boxes)
        side = torch.sqrt((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2]))
        levels = torch.floor(torch.log2(side / self.finest_scale + 1e-6)).clamp(0, len(feats) - 1).long()
        return _pool_levels(feats, rois, levels, [1.0 / s for s in self.strides], self.output_size,
                            self.sampling_ratio, True)


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
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

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
        rpn_anchor_generator=(MMDetAnchorGenerator if spec.mmdet_anchors else AnchorGenerator)(
            tuple((spec.anchor_scale * s,) for s in (4, 8, 16, 32, 64)), ((0.5, 1.0, 2.0),) * 5),
        box_roi_pool=_roi_pool(spec, 7),
        box_head=TwoMLPHead(c * 7 * 7, spec.box_head_dim),
        box_predictor=FastRCNNPredictor(spec.box_head_dim, num_classes), **common)
    if spec.detector == "fasterrcnn":
        det = FasterRCNN(neck, None, **rcnn)
    else:
        layers = [spec.mask_head_channels] * spec.mask_head_convs
        det = MaskRCNN(neck, None, mask_roi_pool=_roi_pool(spec, 14),
                       mask_head=MaskRCNNHeads(c, layers, 1),
                       mask_predictor=MaskRCNNPredictor(layers[-1], spec.mask_head_channels, num_classes), **rcnn)
        det.transform = MaskPasteTransform(**common)
    det.roi_heads.__class__ = ClassNmsRoIHeads  # torchvision builds its RoIHeads itself; the subclass adds no state
    return det


class _ClassNms(torch.autograd.Function):
    """NMS of each class's boxes on its own: ``boxes`` (C, N, 4), ``scores`` (C, 1, N) with the boxes that must not
    be kept scored -1; the selected ``(class, 0, box)`` triples (K, 3), each class's in decreasing score, at most
    ``max_per_class`` per class. Exported as ONNX's ``NonMaxSuppression`` with the classes as its batch axis."""

    @staticmethod
    def forward(ctx, boxes, scores, max_per_class: int, iou: float):
        from torchvision.ops import nms

        out = []
        for c in range(boxes.shape[0]):
            idx = torch.where(scores[c, 0] >= 0)[0]
            keep = idx[nms(boxes[c, idx], scores[c, 0, idx], iou)][:max_per_class]
            out.append(torch.stack([torch.full_like(keep, c), torch.zeros_like(keep), keep], 1))
        return torch.cat(out)

    @staticmethod
    def symbolic(g, boxes, scores, max_per_class: int, iou: float):
        return g.op("NonMaxSuppression", boxes, scores,
                    g.op("Constant", value_t=torch.tensor([max_per_class], dtype=torch.long)),
                    g.op("Constant", value_t=torch.tensor([iou], dtype=torch.float)),
                    g.op("Constant", value_t=torch.tensor([-0.5], dtype=torch.float)))


class ClassNmsRoIHeads(RoIHeads):
    """torchvision's ``RoIHeads``; traced (ONNX export), the detections are chosen by an NMS per class
    (:class:`_ClassNms`: ONNX ``NonMaxSuppression`` with the classes as its batch axis, at most
    ``detections_per_img`` per class), which selects what torchvision's does. torchvision exports its class-aware
    NMS as one NMS over every (proposal, class) pair with per-class offsets: with 80 classes and the score threshold
    at 0 that is 80,000 boxes, 4.5 s in ONNX Runtime where eager PyTorch runs one NMS per class."""

    def postprocess_detections(self, class_logits, box_regression, proposals, image_shapes):
        from torchvision.ops import boxes as box_ops

        if not torchvision._is_tracing():
            return super().postprocess_detections(class_logits, box_regression, proposals, image_shapes)
        boxes_per_image = [b.shape[0] for b in proposals]
        pred_boxes = self.box_coder.decode(box_regression, proposals).split(boxes_per_image, 0)
        pred_scores = torch.softmax(class_logits, -1).split(boxes_per_image, 0)
        all_boxes, all_scores, all_labels = [], [], []
        for boxes, scores, image_shape in zip(pred_boxes, pred_scores, image_shapes):
            boxes = box_ops.clip_boxes_to_image(boxes, image_shape)[:, 1:].transpose(0, 1)  # (C - 1, N, 4)
            scores = scores[:, 1:].transpose(0, 1)  # (C - 1, N), the background dropped
            wide = ((boxes[..., 2] - boxes[..., 0]) >= 1e-2) & ((boxes[..., 3] - boxes[..., 1]) >= 1e-2)
            masked = torch.where((scores > self.score_thresh) & wide, scores, torch.full_like(scores, -1.0))
            sel = _ClassNms.apply(boxes, masked[:, None], int(self.detections_per_img), float(self.nms_thresh))
            cls, idx = sel[:, 0], sel[:, 2]
            kept = scores[cls, idx]
            order = torch.sort(kept, descending=True)[1][: self.detections_per_img]
            cls, idx = cls[order], idx[order]
            all_boxes.append(boxes[cls, idx])
            all_scores.append(kept[order])
            all_labels.append(cls + 1)
        return all_boxes, all_scores, all_labels


def paste_masks(masks: torch.Tensor, boxes: torch.Tensor, image_size: tuple[int, int],
                padding: int = 1) -> torch.Tensor:
    """torchvision's ``paste_masks_in_image`` (the same padding, box rounding and bilinear resize) as one batched
    product: each mask ``m`` (M x M after padding) becomes ``R m C^T`` with ``R`` (H x M) and ``C`` (W x M) the
    bilinear weights of its box's rows and columns (two per image row or column inside the box, none outside).

    Args:
        masks: (N, 1, M, M) mask probabilities.
        boxes: (N, 4) boxes x1, y1, x2, y2 in the image's pixels.
        image_size: the image's (H, W).

    Returns:
        (N, 1, H, W) masks in the image.
    """
    from torchvision.models.detection.roi_heads import expand_boxes, expand_masks

    masks, scale = expand_masks(masks, padding=padding)
    boxes = expand_boxes(boxes, scale).to(dtype=torch.int64)
    side = masks.shape[-1]

    def weights(lo: torch.Tensor, hi: torch.Tensor, size) -> torch.Tensor:
        # image pixels lo..hi (inclusive) show the mask resized to hi - lo + 1 pixels (align_corners=False)
        pos = torch.arange(size, device=masks.device)[None, :] - lo[:, None]  # (N, size): pixel within the box
        n = (hi - lo + 1).clamp(min=1).to(masks.dtype)[:, None]
        src = ((pos.to(masks.dtype) + 0.5) * (side / n) - 0.5).clamp(min=0)
        i0 = src.floor()
        frac = src - i0
        i1 = (i0 + 1).clamp(max=side - 1)
        cols = torch.arange(side, device=masks.device, dtype=masks.dtype)
        w = (1 - frac)[..., None] * (cols == i0[..., None]) + frac[..., None] * (cols == i1[..., None])
        inside = (pos >= 0) & (pos <= (hi - lo)[:, None])
        return w * inside[..., None].to(masks.dtype)  # (N, size, M)

    rows = weights(boxes[:, 1], boxes[:, 3], image_size[0])
    cols = weights(boxes[:, 0], boxes[:, 2], image_size[1])
    return torch.matmul(torch.matmul(rows, masks[:, 0]), cols.transpose(1, 2))[:, None]


class MaskPasteTransform(GeneralizedRCNNTransform):
    """torchvision's ``GeneralizedRCNNTransform``; traced (ONNX export), the masks are pasted by :func:`paste_masks`,
    where torchvision's export pastes them in a ``Loop`` of one full-image mask per detection and concatenates them
    (0.86 s of a 512 px Mask R-CNN with 100 detections in ONNX Runtime on 2 Zen 3 cores)."""

    def postprocess(self, result, image_shapes, original_image_sizes):
        if self.training or not torchvision._is_tracing():
            return super().postprocess(result, image_shapes, original_image_sizes)
        for i, (pred, im_s, o_im_s) in enumerate(zip(result, image_shapes, original_image_sizes)):
            result[i]["boxes"] = resize_boxes(pred["boxes"], im_s, o_im_s)
            if "masks" in pred:
                result[i]["masks"] = paste_masks(pred["masks"], result[i]["boxes"], o_im_s)
            if "keypoints" in pred:
                result[i]["keypoints"] = resize_keypoints(pred["keypoints"], im_s, o_im_s)
        return result


def _roi_pool(spec: DetectorSpec, size: int) -> nn.Module:
    names = ["0", "1", "2", "3"]
    if spec.mmdet_roi_align:
        return AlignedMultiScaleRoIAlign(names, size, spec.roi_sampling_ratio)
    return SeparableMultiScaleRoIAlign(names, size, spec.roi_sampling_ratio)


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
    sd = strip_prefixes(dict(state_dict))
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


def detector_spec(cfg: DetectConfig) -> DetectorSpec:
    """The detector architecture a config asks for."""
    return dataclasses.replace(DetectorSpec.from_config(cfg), min_size=cfg.img_size, max_size=cfg.resolved_max_size)


def init_detector(model: nn.Module, path: str | os.PathLike) -> None:
    """Initial weights: a detection checkpoint of ours (whole detector; class layers of another class count are
    re-initialized with a warning), else backbone weights from any classification or downstream checkpoint."""
    from repvit.dense import load_backbone_checkpoint

    obj = None
    try:
        obj = load_torch(path)
    except CheckpointError:  # safetensors and others: the backbone reader names the problem
        obj = None
    if checkpoint_task(obj) == "detect":
        load_detector_weights(model, obj["model"], source=str(path))
        _log.info("initialized the detector from %s", path)
        return
    res = load_backbone_checkpoint(model.backbone.backbone, path)
    _log.info("initialized the backbone from %s (%s format)", path, res.source_format)


def load_detector_checkpoint(path: str | os.PathLike, *, weights: str = "model",
                             overrides: dict[str, Any] | None = None) -> tuple[nn.Module, DetectConfig, dict[str, Any]]:
    """The detector of a ``repvit detect train`` checkpoint (eval mode), its config and meta.

    ``weights``: ``model`` (the trained weights) or ``ema`` (the EMA copy, when the run kept one). ``overrides``
    change config keys that do not alter the weights (score threshold, detections per image, data keys).
    """
    from repvit.engine.checkpoint import load_train_checkpoint

    from .config import DetectConfig

    ckpt = load_train_checkpoint(path)
    check_task(ckpt, "detect", path)
    cfg = DetectConfig.from_dict(ckpt["config"])
    if overrides:
        cfg = cfg.replace(**overrides)
    meta = dict(ckpt.get("meta") or {})
    model = build_detector(detector_spec(cfg), int(meta["num_classes"]))
    sd = ckpt.get(weights)
    if sd is None:
        raise ValueError(f"{path} holds no {weights!r} weights (EMA was off in that run); use the model weights.")
    try:
        model.load_state_dict(sd)
    except RuntimeError as e:
        raise ValueError(f"{path}: the weights do not fit the detector its config describes "
                         f"(were architecture keys overridden?): {str(e)[:300]}") from None
    return model.eval(), cfg, meta
