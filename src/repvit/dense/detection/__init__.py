"""Object detection and instance segmentation on RepViT: torchvision's Mask R-CNN, Faster R-CNN and RetinaNet.

* :mod:`.config`   — :class:`DetectConfig`.
* :mod:`.model`    — the detectors on :class:`~repvit.dense.RepViTFPN`, fusing, weight and checkpoint loading.
* :mod:`.coco`     — COCO-layout data (torchvision's CocoDetection), category-id maps, the COCO writer.
* :mod:`.data`     — the built-in digit scenes or COCO data with ``transforms.v2`` augmentation.
* :mod:`.metrics`  — COCO results and COCOeval (pycocotools).
* :mod:`.evaluate` — :func:`evaluate_detector` (over a loader), :func:`evaluate_checkpoint`.
* :mod:`.task`     — the ``detect`` task on the shared training engine, :func:`train` (the entry point).
* :mod:`.predict`, :mod:`.export` — drawn predictions, ONNX export with ONNX Runtime parity.
* :mod:`.authors`  — the authors' mmdet Mask R-CNN files as our detector.
"""

from .model import DETECTORS, DetectorSpec, build_detector, fuse_detector

__all__ = ["DETECTORS", "DetectorSpec", "build_detector", "fuse_detector", "train"]


def __getattr__(name: str):
    # the entry point, imported on first use so that importing the package stays light
    if name == "train":
        from .task import train

        return train
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
