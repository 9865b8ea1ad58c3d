"""COCO-layout detection data: reading it with torchvision, writing it from any detection samples.

Reading (:func:`coco_detection_dataset`) is torchvision's :class:`~torchvision.datasets.CocoDetection` wrapped by
:func:`~torchvision.datasets.wrap_dataset_for_transforms_v2`, so polygons and RLE masks are decoded by pycocotools
and boxes come out as ``tv_tensors.BoundingBoxes``. On top of it, as COCO training does:

* category ids need not be contiguous: :class:`CategoryMap` maps them to labels ``1..K`` (0 is background) and back;
* crowd annotations are left out of training targets (COCOeval uses them when evaluating);
* images without annotations are kept, with empty targets, as negatives;
* degenerate boxes (zero width or height) are dropped, and their number is logged.

Every sample is ``(image, target)``: a ``uint8`` ``tv_tensors.Image`` (3, H, W) and a dict with ``boxes`` (XYXY
``BoundingBoxes``), ``labels`` (int64, 1..K), ``masks`` ((N, H, W) uint8 ``Mask``, when asked for) and
``image_id`` (the COCO image id), the same layout as the built-in digit scenes.

Writing (:func:`coco_from_samples`, :func:`write_coco_split`) turns samples of that layout into a COCO json with RLE
masks, so the built-in scenes can be evaluated by COCOeval and exported to disk.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.datasets import CocoDetection
from torchvision.datasets.vision import VisionDataset

from repvit.data.coco import CocoFormatError, load_coco_json
from repvit.runtime import require

__all__ = ["CategoryMap", "CocoDetectionDataset", "coco_detection_dataset", "make_coco", "coco_from_samples",
           "write_coco_split", "mask_to_rle", "empty_target"]

_log = logging.getLogger(__name__)


def _need_pycocotools():
    require("pycocotools.coco", "COCO data and evaluation")


def make_coco(dataset: Mapping[str, Any]):
    """A ``pycocotools.coco.COCO`` index over an in-memory COCO dict (without pycocotools' prints)."""
    _need_pycocotools()
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = dict(dataset)
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


@dataclass(frozen=True)
class CategoryMap:
    """Contiguous training labels ``1..K`` <-> the data set's category ids (sorted), with their names."""

    category_ids: tuple[int, ...]
    names: tuple[str, ...]

    @classmethod
    def from_categories(cls, categories: Sequence[Mapping[str, Any]]) -> CategoryMap:
        cats = sorted(categories, key=lambda c: int(c["id"]))
        return cls(tuple(int(c["id"]) for c in cats), tuple(str(c.get("name", c["id"])) for c in cats))

    @property
    def num_classes(self) -> int:
        """Classes including the background (label 0): the detector's ``num_classes``."""
        return len(self.category_ids) + 1

    def label(self, category_id: int) -> int:
        """The training label (1..K) of a category id."""
        try:
            return self.category_ids.index(int(category_id)) + 1
        except ValueError:
            raise KeyError(f"category id {category_id} is not one of {list(self.category_ids)}.") from None

    def category_id(self, label: int) -> int:
        return self.category_ids[int(label) - 1]

    def to_meta(self) -> dict[str, Any]:
        return {"category_ids": list(self.category_ids), "class_names": list(self.names)}

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> CategoryMap:
        return cls(tuple(int(i) for i in meta["category_ids"]), tuple(str(n) for n in meta["class_names"]))


def empty_target(height: int, width: int, image_id: int, masks: bool) -> dict[str, Any]:
    """The target of an image without objects (a negative)."""
    from torchvision import tv_tensors

    t = {"boxes": tv_tensors.BoundingBoxes(torch.zeros(0, 4), format="XYXY", canvas_size=(height, width)),
         "labels": torch.zeros(0, dtype=torch.int64), "image_id": int(image_id)}
    if masks:
        t["masks"] = tv_tensors.Mask(torch.zeros(0, height, width, dtype=torch.uint8))
    return t


class _FilteredCocoDetection(CocoDetection):
    """CocoDetection over an already-checked COCO index; leaves crowd (training) and degenerate boxes out."""

    def __init__(self, root: str, coco, *, keep_crowd: bool):
        VisionDataset.__init__(self, root)
        self.coco, self.keep_crowd = coco, keep_crowd
        self.ids = sorted(coco.imgs.keys())

    def _load_target(self, id: int) -> list[Any]:
        anns = super()._load_target(id)
        return [a for a in anns if a["bbox"][2] > 0 and a["bbox"][3] > 0
                and (self.keep_crowd or not a.get("iscrowd", 0))]


class CocoDetectionDataset(Dataset):
    """A COCO-layout split as ``(uint8 image, target)`` samples with contiguous labels (see the module doc).

    Args:
        root: the image folder (``PATH/train2017``).
        ann_file: the instances json.
        masks: decode instance masks (Mask R-CNN); every annotation then needs a ``segmentation``.
        train: leave crowd annotations out of the targets (training, as COCO does).
        transforms: a ``transforms.v2`` callable on ``(image, target)``.
        check_files: check that every image file exists (a clear error listing the first missing ones).
    """

    def __init__(self, root: str | os.PathLike, ann_file: str | os.PathLike, *, masks: bool, train: bool,
                 transforms=None, check_files: bool = True):
        _need_pycocotools()
        from torchvision.datasets import wrap_dataset_for_transforms_v2

        self.root, self.ann_file = Path(root), Path(ann_file)
        d = load_coco_json(self.ann_file)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {self.root} (for {self.ann_file.name}) does not exist.")
        if check_files:
            missing = [im["file_name"] for im in d["images"] if not (self.root / im["file_name"]).is_file()]
            if missing:
                raise FileNotFoundError(
                    f"{len(missing)} of the {len(d['images'])} images named in {self.ann_file} are missing under "
                    f"{self.root}: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}. Check the image "
                    "folder (or the --set train_images/val_images options).")
        self.categories = CategoryMap.from_categories(d["categories"])
        self.masks, self.train, self.transforms = masks, train, transforms
        degenerate = [a for a in d["annotations"] if not (a["bbox"][2] > 0 and a["bbox"][3] > 0)]
        crowd = sum(1 for a in d["annotations"] if a.get("iscrowd", 0))
        if masks:
            dropped = {id(a) for a in degenerate}
            no_seg = [a["id"] for a in d["annotations"] if id(a) not in dropped and not a.get("segmentation")]
            if no_seg:
                raise CocoFormatError(
                    f"Mask R-CNN needs instance masks, but {len(no_seg)} annotations in {self.ann_file} have no "
                    f"segmentation (ids {no_seg[:5]}); use --detector fasterrcnn or retinanet for boxes only.")
        self.coco = make_coco(d)
        with_anns = {a["image_id"] for a in d["annotations"]}
        self.stats = {"images": len(d["images"]), "annotations": len(d["annotations"]),
                      "degenerate_dropped": len(degenerate), "crowd": crowd,
                      "empty_images": sum(1 for im in d["images"] if im["id"] not in with_anns)}
        if degenerate:
            _log.warning("%s: dropped %d degenerate boxes (zero width or height), e.g. annotation ids %s",
                         self.ann_file.name, len(degenerate), [a["id"] for a in degenerate[:5]])
        _log.info("%s: %d images (%d without annotations, kept as negatives), %d annotations, %d crowd%s",
                  self.ann_file.name, self.stats["images"], self.stats["empty_images"], self.stats["annotations"],
                  crowd, " (left out of training)" if train else "")
        keys = {"image_id", "boxes", "labels"} | ({"masks"} if masks else set())
        base = _FilteredCocoDetection(str(self.root), self.coco, keep_crowd=not train)
        self._ds = wrap_dataset_for_transforms_v2(base, target_keys=keys)

    @property
    def ids(self) -> list[int]:
        return self._ds.ids

    def __len__(self) -> int:
        return len(self._ds)

    def __getitem__(self, index: int):
        from torchvision import tv_tensors
        from torchvision.transforms.v2 import functional as F

        image, target = self._ds[index]
        image = tv_tensors.Image(F.pil_to_tensor(image))
        h, w = image.shape[-2:]
        out = empty_target(h, w, self._ds.ids[index], self.masks)
        if "boxes" in target:
            out["boxes"] = target["boxes"]
            out["labels"] = torch.tensor([self.categories.label(c) for c in target["labels"].tolist()],
                                         dtype=torch.int64)
            if self.masks:
                out["masks"] = tv_tensors.Mask(target["masks"].to(torch.uint8))
        if self.transforms is not None:
            image, out = self.transforms(image, out)
        return image, out


def coco_detection_dataset(root: str | os.PathLike, split: str, *, masks: bool, train: bool, transforms=None,
                           images: str | None = None, annotations: str | None = None) -> CocoDetectionDataset:
    """``ROOT/{split}2017`` with ``ROOT/annotations/instances_{split}2017.json`` (``images``/``annotations``
    name other folders or files, relative to ``root`` or absolute)."""
    root = Path(root)
    img_dir = root / (images or f"{split}2017")
    ann = root / (annotations or f"annotations/instances_{split}2017.json")
    return CocoDetectionDataset(img_dir, ann, masks=masks, train=train, transforms=transforms)


# ------------------------------------------------------------------------------------------------------- writing


def mask_to_rle(mask: np.ndarray | torch.Tensor) -> dict[str, Any]:
    """A binary (H, W) mask as COCO compressed RLE with a ``str`` counts field (JSON-able)."""
    _need_pycocotools()
    from pycocotools import mask as mask_util

    m = mask.numpy() if isinstance(mask, torch.Tensor) else mask
    rle = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def coco_from_samples(samples: Iterable[tuple[Any, Mapping[str, Any]]], class_names: Sequence[str], *,
                      category_ids: Sequence[int] | None = None, file_names: Sequence[str] | None = None,
                      masks: bool = True) -> dict[str, Any]:
    """A COCO instances dict from ``(image, target)`` samples in our layout (labels ``1..K``).

    Masks become RLE and ``area`` is the mask's pixel count (the box area without masks). ``category_ids`` gives the
    COCO id of each label (default ``1..K``); ``file_names`` the image file names (default ``{image_id:012d}.png``).
    """
    cat_ids = list(category_ids) if category_ids is not None else list(range(1, len(class_names) + 1))
    if len(cat_ids) != len(class_names):
        raise ValueError(f"{len(cat_ids)} category ids for {len(class_names)} class names.")
    images, anns = [], []
    for i, (image, target) in enumerate(samples):
        h, w = (int(s) for s in image.shape[-2:])
        image_id = int(target["image_id"])
        name = file_names[i] if file_names is not None else f"{image_id:012d}.png"
        images.append({"id": image_id, "file_name": name, "height": h, "width": w})
        boxes = torch.as_tensor(target["boxes"]).reshape(-1, 4).tolist()
        for j, (box, label) in enumerate(zip(boxes, torch.as_tensor(target["labels"]).tolist())):
            x0, y0, x1, y1 = box
            ann = {"id": len(anns) + 1, "image_id": image_id, "category_id": cat_ids[int(label) - 1],
                   "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": 0, "area": (x1 - x0) * (y1 - y0)}
            if masks:
                m = torch.as_tensor(target["masks"][j])
                ann["segmentation"] = mask_to_rle(m)
                ann["area"] = float(m.sum())
            anns.append(ann)
    cats = [{"id": c, "name": str(n), "supercategory": "object"} for c, n in zip(cat_ids, class_names)]
    return {"images": images, "annotations": anns, "categories": cats}


def write_coco_split(samples: Iterable[tuple[Any, Mapping[str, Any]]], root: str | os.PathLike, split: str,
                     class_names: Sequence[str], *, category_ids: Sequence[int] | None = None,
                     masks: bool = True) -> Path:
    """Write samples in COCO 2017's layout: ``ROOT/{split}2017/*.png`` and
    ``ROOT/annotations/instances_{split}2017.json`` (RLE masks). Returns the json path."""
    from PIL import Image

    root = Path(root)
    img_dir = root / f"{split}2017"
    img_dir.mkdir(parents=True, exist_ok=True)
    kept = []
    for image, target in samples:
        arr = torch.as_tensor(image).permute(1, 2, 0).contiguous().numpy().astype(np.uint8)
        Image.fromarray(arr).save(img_dir / f"{int(target['image_id']):012d}.png")
        kept.append((image, target))
    d = coco_from_samples(kept, class_names, category_ids=category_ids, masks=masks)
    ann = root / "annotations" / f"instances_{split}2017.json"
    ann.parent.mkdir(parents=True, exist_ok=True)
    ann.write_text(json.dumps(d), encoding="utf-8")
    return ann
