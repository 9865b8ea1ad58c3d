"""Semantic segmentation: Semantic FPN on RepViT (the paper's ADE20K baseline), trained on the shared engine.

* :mod:`.config`    — :class:`SegmentConfig`
* :mod:`.model`     — :class:`SemanticFPNHead`, :class:`SemanticFPN`, :func:`build_semantic_fpn`, loading weights and
  checkpoints (:func:`load_segmentation_weights`, :func:`load_segmenter_checkpoint`)
* :mod:`.data`      — the ADE20K-layout reader, joint v2 transforms, the collate, :func:`build_segment_datasets`
* :mod:`.metrics`   — mIoU / pixel accuracy / per-class IoU from a confusion matrix
* :mod:`.evaluate`  — :func:`evaluate_segmenter` (over a loader), :func:`evaluate_checkpoint`
* :mod:`.predict`   — prediction on image files to PNGs
* :mod:`.task`      — :class:`SegmentTask`, :func:`train` (the entry point)
* :mod:`.export`    — fused ONNX export with dynamic height and width, ONNX Runtime parity
* :mod:`.authors`   — the authors' mmseg files as a :class:`SemanticFPN`
"""

from .model import SemanticFPN, SemanticFPNHead, build_semantic_fpn

__all__ = ["SemanticFPN", "SemanticFPNHead", "build_semantic_fpn", "train"]


def __getattr__(name: str):
    # the entry point, imported on first use so that importing the package stays light
    if name == "train":
        from .task import train

        return train
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
