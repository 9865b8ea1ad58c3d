"""Detection data: the built-in digit scenes or a COCO-layout folder, the ``transforms.v2`` pipelines, the collate.

``--data digits``: :class:`~repvit.dense.DigitScenes` (glyphs of the digits train split for training, held-out glyphs
for validation, the same rule as segmentation), classes ``"0".."9"`` as labels 1..10 and category ids 1..10.

``--data PATH``: COCO 2017's layout, ``PATH/{train2017,val2017}`` and ``PATH/annotations/instances_*.json``
(``train_images``, ``val_images``, ``train_annotations``, ``val_annotations`` name other ones), read by
:class:`~repvit.dense.detection.coco.CocoDetectionDataset`.

Augmentation (training only) is torchvision's ``transforms.v2`` on image, boxes and masks together: horizontal flip,
resize keeping the aspect ratio (short side ``min_size``, long side at most ``max_size``; the model's own transform
then leaves the size as it is), degenerate boxes dropped (``SanitizeBoundingBoxes``). Evaluation images keep their
size: the detector resizes them itself and returns boxes and masks in the original image's pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from repvit.data import is_digits

from .coco import CategoryMap, coco_detection_dataset, coco_from_samples, make_coco

__all__ = ["DetectionData", "build_detection_data", "detection_transforms", "detect_collate", "DIGIT_CATEGORIES"]

DIGIT_CATEGORIES = CategoryMap(tuple(range(1, 11)), tuple(str(d) for d in range(10)))


def detection_transforms(train: bool, *, min_size: int, max_size: int, hflip: float = 0.5):
    """The ``transforms.v2`` pipeline on ``(uint8 image, target)``; returns a float image in [0, 1] and plain
    tensors."""
    from torchvision.transforms import v2

    steps: list[Any] = []
    if train:
        if hflip > 0:
            steps.append(v2.RandomHorizontalFlip(hflip))
        steps += [v2.Resize(min_size, max_size=max_size if max_size > min_size else None, antialias=True),
                  v2.SanitizeBoundingBoxes(min_size=1.0)]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.ToPureTensor()]
    return v2.Compose(steps)


def detect_collate(batch: list[tuple[torch.Tensor, dict[str, Any]]]) -> tuple[list[torch.Tensor], list[dict]]:
    """Lists of images and targets (images may differ in size)."""
    images, targets = zip(*batch)
    return list(images), list(targets)


class _Transformed(Dataset):
    """``dataset`` with ``transform(image, target)`` applied; drops the keys detection does not use."""

    _KEEP = ("boxes", "labels", "masks", "image_id")

    def __init__(self, dataset: Dataset, transform, masks: bool):
        self.dataset, self.transform = dataset, transform
        self.keys = self._KEEP if masks else self._KEEP[:2] + self._KEEP[3:]

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, target = self.dataset[index]
        target = {k: v for k, v in target.items() if k in self.keys}
        return self.transform(image, target) if self.transform is not None else (image, target)


@dataclass
class DetectionData:
    """Train and val sets (transformed), the category map, and the ground truth of the val set for COCOeval."""

    train: Dataset
    val: Dataset
    categories: CategoryMap
    val_gt: Any  # pycocotools COCO over the val split (original category and image ids)
    stats: dict[str, Any]


def _subset(ds: Dataset, n: int | None) -> Dataset:
    return Subset(ds, range(min(int(n), len(ds)))) if n else ds


def build_detection_data(cfg: Any, *, train: bool = True) -> DetectionData:
    """The data of a detection run (``cfg``: a :class:`~repvit.dense.detection.config.DetectConfig`).

    With ``train=False`` only the validation side is built (``train`` is then an empty list).
    """
    masks = cfg.detector == "maskrcnn"
    train_tf = detection_transforms(True, min_size=cfg.min_size, max_size=cfg.resolved_max_size, hflip=cfg.hflip)
    val_tf = detection_transforms(False, min_size=cfg.min_size, max_size=cfg.resolved_max_size)
    if is_digits(cfg.data):
        from repvit.dense.scenes import DigitScenes

        kw = dict(size=cfg.scene_size, min_digits=cfg.scene_min_digits, max_digits=cfg.scene_max_digits,
                  scale=(cfg.scene_scale_min, cfg.scene_scale_max))
        val_raw = _subset(DigitScenes("val", num_scenes=cfg.val_scenes, **kw), cfg.val_subset)
        gt = make_coco(coco_from_samples((val_raw[i] for i in range(len(val_raw))), DIGIT_CATEGORIES.names,
                                         category_ids=DIGIT_CATEGORIES.category_ids, masks=masks))
        tr: Dataset | list = []
        if train:
            tr = _Transformed(_subset(DigitScenes("train", num_scenes=cfg.train_scenes, **kw), cfg.train_subset),
                              train_tf, masks)
        return DetectionData(tr, _Transformed(val_raw, val_tf, masks), DIGIT_CATEGORIES, gt,
                             {"train_images": len(tr), "val_images": len(val_raw)})
    val = coco_detection_dataset(cfg.data, "val", masks=masks, train=False, images=cfg.val_images,
                                 annotations=cfg.val_annotations)
    stats = {"val": val.stats}
    tr = []
    if train:
        tr_ds = coco_detection_dataset(cfg.data, "train", masks=masks, train=True, images=cfg.train_images,
                                       annotations=cfg.train_annotations)
        if tr_ds.categories != val.categories:
            raise ValueError(f"the train and val annotation files of {cfg.data} define different categories; "
                             "both splits need the same category list.")
        stats["train"] = tr_ds.stats
        tr = _Transformed(_subset(tr_ds, cfg.train_subset), train_tf, masks)
    return DetectionData(tr, _Transformed(_subset(val, cfg.val_subset), val_tf, masks), val.categories, val.coco,
                         stats)
