"""Dense prediction on RepViT: the shared base (backbone, FPN neck, built-in scenes) and the task packages.

* :mod:`repvit.dense.backbone`  — :class:`DenseBackbone` (both tap conventions, frozen BN, fusing),
  :func:`load_backbone_checkpoint`, :class:`RepViTFPN` (torchvision's FPN).
* :mod:`repvit.dense.scenes`    — :class:`DigitScenes`, the built-in data set (semantic labels, boxes, masks).
* :mod:`repvit.dense.roi_align` — RoIAlign with a separable CPU backward (the R-CNN heads' poolers train with it).
* :mod:`repvit.dense.checkpoint` — reading dense checkpoints (the authors' mmseg/mmdet files or ours, by path or
  published name) and the helpers both tasks' loaders use.
* :mod:`repvit.dense.segmentation` — Semantic FPN.
* :mod:`repvit.dense.detection`    — Mask R-CNN, Faster R-CNN, RetinaNet.
"""

from .backbone import TAPS, DenseBackbone, RepViTFPN, load_backbone_checkpoint

__all__ = ["TAPS", "DenseBackbone", "RepViTFPN", "load_backbone_checkpoint"]
