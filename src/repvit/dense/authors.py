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

from .checkpoint import DenseCheckpoint, read_dense_checkpoint, resolve_checkpoint
from .detection.authors import coco_categories, load_detector, maskrcnn_from_mmdet, mmdet_detector_spec, open_detector
from .segmentation.authors import load_segmenter, open_segmenter, semantic_fpn_from_mmseg

__all__ = ["load_segmenter", "load_detector", "open_segmenter", "open_detector", "resolve_checkpoint",
           "read_dense_checkpoint", "DenseCheckpoint", "semantic_fpn_from_mmseg", "maskrcnn_from_mmdet",
           "mmdet_detector_spec", "coco_categories"]
