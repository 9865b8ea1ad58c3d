"""Semantic segmentation: Semantic FPN on RepViT (the paper's ADE20K baseline), trained on the shared engine.

* :mod:`.model`     — :class:`SemanticFPNHead`, :class:`SemanticFPN`, :func:`build_semantic_fpn`
* :mod:`.data`      — the ADE20K-layout reader, joint v2 transforms, the collate
* :mod:`.metrics`   — mIoU / pixel accuracy / per-class IoU from a confusion matrix
* :mod:`.task`      — :class:`SegmentConfig`, :class:`SegmentTask`, :func:`train` (the entry point), checkpoints
* :mod:`.predict`   — checkpoint evaluation and prediction to PNGs
* :mod:`.export`    — fused ONNX export with dynamic height and width, ONNX Runtime parity
"""

from .model import SemanticFPN, SemanticFPNHead, build_semantic_fpn

__all__ = ["SemanticFPN", "SemanticFPNHead", "build_semantic_fpn", "train"]


def __getattr__(name: str):
    # the entry point, imported on first use so that importing the package stays light
    if name == "train":
        from .task import train

        return train
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
