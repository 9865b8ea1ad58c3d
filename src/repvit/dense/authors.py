"""The authors' published dense checkpoints (mmseg Semantic FPN, mmdet Mask R-CNN) and the public dense loaders.

:func:`load_segmenter` and :func:`load_detector` (exported as ``repvit.load_segmenter`` / ``repvit.load_detector``)
take a file or a published-weights name and return the model in eval mode, unfused or fused:

* the authors' **mmseg 0.30 Semantic FPN** files (``repvit_{m1_1,m1_5,m2_3}_ade20k.pth``: ``{'meta',
  'state_dict'}``) become a :class:`~repvit.dense.segmentation.SemanticFPN` (segment taps) that computes mmseg's
  logits: every tensor is mapped and none is missing.

  ============================================  ===============================================
  mmseg key                                     ours
  ============================================  ===============================================
  ``backbone.features.N.*``                     ``neck.backbone.{stem,stages}.*`` (authors' layout -> timm's)
  ``neck.lateral_convs.i.conv.*``               ``neck.fpn.inner_blocks.i.0.*``
  ``neck.fpn_convs.i.conv.*``                   ``neck.fpn.layer_blocks.i.0.*``
  ``decode_head.scale_heads.i.j.{conv,bn}.*``   ``head.scale_heads.i.j.{0,1}.*``
  ``decode_head.conv_seg.*``                    ``head.classifier.*``
  ============================================  ===============================================

* the authors' **mmdet 2.x Mask R-CNN** files (``repvit_{m1_1,m1_5,m2_3}_coco.pth``) become torchvision's
  ``MaskRCNN`` (stage taps) with MMDetection's test settings. mmdet puts the background class last in ``fc_cls``
  and has no background block in ``fc_reg`` / ``conv_logits``; torchvision puts it first: row 0 of ``cls_score`` is
  mmdet's row ``K``, row ``k`` is mmdet's row ``k - 1``; the background blocks of ``bbox_pred`` and
  ``mask_fcn_logits`` (never used at inference) are zero.

  ============================================  ===============================================
  mmdet key                                     torchvision key
  ============================================  ===============================================
  ``backbone.features.N.*``                     ``backbone.backbone.{stem,stages}.*``
  ``neck.lateral_convs.i.conv.*``               ``backbone.fpn.inner_blocks.i.0.*``
  ``neck.fpn_convs.i.conv.*``                   ``backbone.fpn.layer_blocks.i.0.*``
  ``rpn_head.rpn_conv.*``                       ``rpn.head.conv.0.0.*``
  ``rpn_head.rpn_cls.*`` (sigmoid, 3 anchors)   ``rpn.head.cls_logits.*``
  ``rpn_head.rpn_reg.*``                        ``rpn.head.bbox_pred.*``
  ``roi_head.bbox_head.shared_fcs.{0,1}.*``     ``roi_heads.box_head.{fc6,fc7}.*``
  ``roi_head.bbox_head.fc_cls.*``               ``roi_heads.box_predictor.cls_score.*`` (reordered)
  ``roi_head.bbox_head.fc_reg.*``               ``roi_heads.box_predictor.bbox_pred.*`` (+ background block)
  ``roi_head.mask_head.convs.i.conv.*``         ``roi_heads.mask_head.i.0.*``
  ``roi_head.mask_head.upsample.*``             ``roi_heads.mask_predictor.conv5_mask.*``
  ``roi_head.mask_head.conv_logits.*``          ``roi_heads.mask_predictor.mask_fcn_logits.*`` (+ background)
  ============================================  ===============================================

* our own ``repvit segment train`` / ``repvit detect train`` checkpoints, as the dense commands read them.

A string that is not an existing file is looked up as a published-weights name with
``repvit.weights.resolve_weights`` (which downloads into the cache).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from repvit.models.checkpoint import CheckpointError, CheckpointMismatchError, _torch_load, authors_to_timm

__all__ = ["load_segmenter", "load_detector", "open_segmenter", "open_detector", "resolve_checkpoint",
           "read_dense_checkpoint", "DenseCheckpoint", "semantic_fpn_from_mmseg", "maskrcnn_from_mmdet",
           "mmdet_detector_spec", "coco_categories"]

_CKPT_SUFFIXES = (".pt", ".pth", ".pth.tar", ".bin", ".ckpt", ".safetensors")


# ----------------------------------------------------------------------------------------------------- reading


def resolve_checkpoint(name_or_path: str | os.PathLike) -> Path:
    """An existing file as is; otherwise a published-weights name resolved (downloaded) by ``repvit.weights``.

    Raises:
        FileNotFoundError: the path does not exist and it is not a name the weights registry can resolve (or the
            registry is not available).
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or os.sep in text or "/" in text or text.endswith(_CKPT_SUFFIXES):
        raise FileNotFoundError(f"checkpoint {text} does not exist; pass an existing file or a published-weights "
                                "name such as 'repvit_m1_1_ade20k' or 'repvit_m1_1_coco'.")
    try:
        from repvit.weights import resolve_weights
    except ImportError as e:
        raise FileNotFoundError(f"{text!r} is not an existing file, and published-weights names cannot be resolved "
                                f"here (repvit.weights is not available: {e}); pass the checkpoint's path.") from None
    return Path(resolve_weights(text))


@dataclass
class DenseCheckpoint:
    """A dense checkpoint file as read: its path, its layout and the loaded object.

    ``layout``: ``"mmseg"`` (the authors' Semantic FPN), ``"mmdet"`` (the authors' Mask R-CNN), ``"segment"`` /
    ``"detect"`` (ours, from ``repvit segment|detect train``).
    """

    path: Path
    layout: str
    obj: Any = field(repr=False)

    @property
    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.obj["state_dict"] if self.layout in ("mmseg", "mmdet") else self.obj["model"]


def _mm_layout(sd: Mapping[str, Any]) -> str | None:
    keys = list(sd)
    if not any(k.startswith("backbone.") for k in keys):
        return None
    if any(k.startswith("decode_head.") for k in keys):
        return "mmseg"
    if any(k.startswith(("rpn_head.", "roi_head.")) for k in keys):
        return "mmdet"
    return None


def _numpy_globals() -> list:
    """NumPy scalars and arrays as plain data for ``weights_only`` loading: mmcv's ``meta`` may hold them (e.g.
    an evaluation hook's best score). Both module names are listed: NumPy 1.x pickles say ``numpy.core``."""
    import numpy as np

    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # NumPy 1.x
        from numpy.core.multiarray import _reconstruct, scalar
    dtypes = {type(np.dtype(t)) for t in ("f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "b1")}
    out: list = [scalar, _reconstruct, np.ndarray, np.dtype, *dtypes]
    for name, obj in (("scalar", scalar), ("_reconstruct", _reconstruct)):
        for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            if f"{obj.__module__}.{obj.__name__}" != f"{module}.{name}":
                out.append((obj, f"{module}.{name}"))
    return out


def read_dense_checkpoint(name_or_path: str | os.PathLike) -> DenseCheckpoint:
    """Read a dense checkpoint (``weights_only=True``) and tell its layout; see :class:`DenseCheckpoint`."""
    path = resolve_checkpoint(name_or_path)
    with torch.serialization.safe_globals(_numpy_globals()):
        obj = _torch_load(path)
    if isinstance(obj, Mapping):
        if obj.get("task") in ("segment", "detect") and isinstance(obj.get("model"), Mapping):
            return DenseCheckpoint(path, str(obj["task"]), obj)
        sd = obj.get("state_dict")
        if isinstance(sd, Mapping):
            sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
            layout = _mm_layout(sd)
            if layout:
                return DenseCheckpoint(path, layout, {**obj, "state_dict": sd})
    keys = list(obj)[:6] if isinstance(obj, Mapping) else type(obj).__name__
    raise CheckpointError(
        f"{path} is not a dense checkpoint repvit knows (found {keys}). Expected the authors' mmseg/mmdet file "
        "({'meta', 'state_dict'} with backbone.features.N keys and decode_head.* or rpn_head./roi_head.* keys) or "
        "a checkpoint written by `repvit segment train` / `repvit detect train`.")


# ---------------------------------------------------------------------------------------------------- backbone


def _split_backbone(sd: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``(backbone in our layout, the other keys)``; the authors' ``features.N`` keys are renamed (a classifier
    head inside the backbone, which the dense models never run, is left out)."""
    bb = {k[len("backbone."):]: v for k, v in sd.items() if k.startswith("backbone.")}
    rest = {k: v for k, v in sd.items() if not k.startswith("backbone.")}
    if not any(k.startswith("features.") for k in bb):
        raise CheckpointError(f"the backbone keys are not the authors' RepViT layout (first: {list(bb)[:4]}); "
                              "expected backbone.features.N...")
    try:
        bb = authors_to_timm(bb)
    except CheckpointError as e:
        raise CheckpointError(f"backbone: {e}") from None
    # a classifier left in the backbone is not used by mmseg/mmdet either (their loaders are not strict)
    return {k: v for k, v in bb.items() if not k.startswith("head.")}, rest


def _model_name(bb: Mapping[str, torch.Tensor]) -> str:
    """The registered RepViT whose architecture the backbone state dict (our layout) has."""
    from repvit.models.checkpoint import infer_config
    from repvit.models.registry import get_model_entry, list_models

    cfg, extra = infer_config(bb)
    if extra["fused"]:
        raise CheckpointError("the backbone in this file is in fused (deploy) form; the authors' dense files are "
                              "unfused. Pass the unfused file (load_segmenter/load_detector(fused=True) fuses it).")
    names = [n for n in list_models("repvit_*") if get_model_entry(n).config == cfg]
    if not names:
        raise CheckpointError(f"the backbone (widths {list(cfg.widths)}, depths {list(cfg.depths)}) is not a "
                              "registered RepViT variant (see `repvit list`).")
    return sorted(names, key=len)[0]


def _load_strict(model: nn.Module, sd: Mapping[str, torch.Tensor], where: str,
                 origin: Mapping[str, str] | None = None) -> None:
    """Load ``sd`` (model key names) requiring every tensor to be used and none missing; ``origin`` maps a model
    key to the file's key, so the error names the file's keys."""
    own = model.state_dict()
    name = dict(origin or {})
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(name.get(k, k) for k in set(sd) - set(own))
    mismatched = [f"{name.get(k, k)}: file {tuple(sd[k].shape)} vs model {k} {tuple(own[k].shape)}"
                  for k in sd if k in own and sd[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(
            f"{where} does not map onto the model exactly: model tensors the file lacks {missing[:6]} "
            f"({len(missing)}), file tensors the model has no place for {unexpected[:6]} ({len(unexpected)}), shape "
            f"differences {mismatched[:4]}. Is it the authors' unmodified file?", missing, unexpected, mismatched)
    model.load_state_dict({k: v.to(own[k].dtype) if v.is_floating_point() else v for k, v in sd.items()})


def _rename(key: str, rules: tuple[tuple[str, str], ...], where: str) -> str:
    for pattern, repl in rules:
        new, n = re.subn(pattern, repl, key)
        if n:
            return new
    raise CheckpointError(f"{where}: unexpected key {key!r} (not part of the layout repvit maps).")


# -------------------------------------------------------------------------------------------------- segmentation

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
    from .segmentation.model import build_semantic_fpn

    bb, rest = _split_backbone(state_dict)
    name = _model_name(bb)
    for k in ("decode_head.conv_seg.weight", "neck.lateral_convs.0.conv.weight"):
        if k not in rest:
            raise CheckpointError(f"{where} has no {k!r}; it is not an mmseg Semantic FPN (FPN neck + FPNHead).")
    cls_w = rest["decode_head.conv_seg.weight"]
    model = build_semantic_fpn(name, num_classes=int(cls_w.shape[0]), taps=taps,
                               fpn_channels=int(rest["neck.lateral_convs.0.conv.weight"].shape[0]),
                               head_channels=int(cls_w.shape[1]), dropout=0.1)
    sd = {f"neck.backbone.{k}": v for k, v in bb.items()}
    origin = {_rename(k, _MMSEG_RULES, where): k for k in rest}
    sd.update({new: rest[old] for new, old in origin.items()})
    _load_strict(model, sd, where, origin)
    model.build_info = {"model_name": name, "source": "mmseg", "taps": taps}
    return model.eval()


# ----------------------------------------------------------------------------------------------------- detection

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
    from .detection.coco import CategoryMap

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
    from .detection.model import DetectorSpec

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
    from .detection.model import build_detector

    bb, rest = _split_backbone(state_dict)
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
    name = _model_name(bb)
    spec = mmdet_detector_spec(rest, name)
    model = build_detector(spec, num_fg + 1)
    sd = {f"backbone.backbone.{k}": v for k, v in bb.items()}
    origin = {}
    for k, v in rest.items():
        new = _rename(k, _MMDET_RULES, where)
        sd[new], origin[new] = _background_first(v, num_fg, new), k
    _load_strict(model, sd, where, origin)
    cats = coco_categories(num_fg)
    model.categories = cats
    model.class_names = ["__background__", *cats.names]
    model.spec = spec
    return model.eval()


# ------------------------------------------------------------------------------------------------ public loaders


def open_segmenter(name_or_path: str | os.PathLike) -> tuple[nn.Module, DenseCheckpoint, dict[str, Any]]:
    """``(model in eval mode, the checkpoint read, meta)``; meta holds ``num_classes``, ``class_names``, ``mean``,
    ``std``, ``layout`` and, for ours, ``config`` (the :class:`SegmentConfig`)."""
    ckpt = read_dense_checkpoint(name_or_path)
    if ckpt.layout == "mmseg":
        model = semantic_fpn_from_mmseg(ckpt.state_dict, where=str(ckpt.path))
        classes = (ckpt.obj.get("meta") or {}).get("CLASSES") if isinstance(ckpt.obj.get("meta"), Mapping) else None
        names = [str(c) for c in classes] if classes and len(classes) == model.num_classes else \
            [str(i) for i in range(model.num_classes)]
        meta = {"num_classes": model.num_classes, "class_names": names, "mean": [0.485, 0.456, 0.406],
                "std": [0.229, 0.224, 0.225], "layout": "mmseg", "reduce_zero_label": True}
        return model, ckpt, meta
    if ckpt.layout == "segment":
        from .segmentation.task import load_segmenter as load_ours

        model, cfg, meta = load_ours(ckpt.path)
        return model, ckpt, {**meta, "layout": "segment", "config": cfg}
    raise CheckpointError(f"{ckpt.path} is a {'detection' if ckpt.layout in ('mmdet', 'detect') else ckpt.layout} "
                          "checkpoint, not a segmentation one; use repvit.load_detector for it.")


def open_detector(name_or_path: str | os.PathLike) -> tuple[nn.Module, DenseCheckpoint, dict[str, Any]]:
    """``(model in eval mode, the checkpoint read, meta)``; meta holds ``num_classes``, ``category_ids``,
    ``class_names``, ``layout`` and, for ours, ``config`` (the :class:`DetectConfig`)."""
    ckpt = read_dense_checkpoint(name_or_path)
    if ckpt.layout == "mmdet":
        model = maskrcnn_from_mmdet(ckpt.state_dict, where=str(ckpt.path))
        return model, ckpt, {"num_classes": len(model.class_names), **model.categories.to_meta(), "layout": "mmdet"}
    if ckpt.layout == "detect":
        from .detection.task import load_detector_checkpoint

        model, cfg, meta = load_detector_checkpoint(ckpt.path)
        return model, ckpt, {**meta, "layout": "detect", "config": cfg}
    raise CheckpointError(f"{ckpt.path} is a segmentation checkpoint, not a detection one; use "
                          "repvit.load_segmenter for it.")


def load_segmenter(name_or_path: str | os.PathLike, *, fused: bool = False) -> nn.Module:
    """A Semantic FPN from a file or a published name, in eval mode (``fused``: the deploy form, same logits).

    Accepts the authors' mmseg files (``repvit_m1_1_ade20k``, ...) and ``repvit segment train`` checkpoints. The
    model takes normalised images ``(N, 3, H, W)`` (ImageNet mean and std) and returns logits at the input size.
    """
    model, _, meta = open_segmenter(name_or_path)
    model.class_names = list(meta.get("class_names") or [])
    return model.fuse() if fused else model.eval()


def load_detector(name_or_path: str | os.PathLike, *, fused: bool = False) -> nn.Module:
    """A torchvision detector from a file or a published name, in eval mode (``fused``: re-parameterized backbone).

    Accepts the authors' mmdet Mask R-CNN files (``repvit_m1_1_coco``, ...) and ``repvit detect train``
    checkpoints. The model takes a list of float images in [0, 1] (it normalises and resizes them itself) and
    returns torchvision's detections with labels ``1..K`` (``model.class_names[label]``).
    """
    from .detection.model import fuse_detector

    model, _, meta = open_detector(name_or_path)
    model.class_names = ["__background__", *(meta.get("class_names") or [])]
    return fuse_detector(model, inplace=True) if fused else model.eval()

