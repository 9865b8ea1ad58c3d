"""Annotated masks for phase 2's prompts: COCO instances files or SA-1B's per-image JSON next to the images.

EdgeSAM's phase 2 draws its box and point prompts from SA-1B's masks.
:class:`~repvit.sam_distill.task.SamPromptDistillTask` draws them from the teacher's masks on unlabeled images, or,
when the image folder carries annotations, from these:

* **COCO layout**: ``instances*.json`` in the image folder or in its ``annotations/`` folder (COCO's names, e.g.
  ``annotations/instances_train2017.json``); an image is matched by its path relative to the folder or, failing
  that, by its file name. Masks are the annotations' ``segmentation`` (polygons, RLE or uncompressed RLE); crowd
  regions (``iscrowd: 1``) are not objects and give no prompts.
* **SA-1B layout**: ``NAME.json`` next to ``NAME.jpg``, holding ``{"image": {...}, "annotations": [{"segmentation":
  {"size": [h, w], "counts": "..."}, "bbox": [x, y, w, h], ...}]}``.

Masks are decoded with ``pycocotools.mask``. The loss stays the student's against the teacher's mask logits; only
the prompts change. Images without masks (not in any instances file, or with none but crowd regions, or without
their JSON) are counted and left out of phase 2; a JSON without any mask is an error naming the file.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch

__all__ = ["MaskAnnotationError", "ImageMasks", "MaskAnnotations", "find_mask_annotations", "low_res_prompt_masks",
           "PROMPT_MASKS"]

PROMPT_MASKS = ("auto", "teacher", "annotations")  # where phase 2's prompts come from


class MaskAnnotationError(ValueError):
    """Annotations that cannot give prompts (no masks, malformed JSON, a size that is not the image's)."""


def _mask_utils():
    try:
        import pycocotools.mask as mask_utils
    except ImportError as e:
        raise ImportError("prompts from COCO / SA-1B masks need pycocotools: pip install 'repvit-pytorch[dense]'") \
            from e
    return mask_utils


@dataclass
class ImageMasks:
    """One image's annotated masks as in the file: ``segmentations`` (polygons or RLE), ``boxes`` ``[x, y, w, h]``
    in image pixels, the image's ``height`` and ``width``, and the ``source`` file (for error messages)."""

    height: int
    width: int
    segmentations: list[Any] = field(default_factory=list)
    boxes: list[list[float]] = field(default_factory=list)
    source: str = ""

    def rle(self, i: int) -> dict[str, Any]:
        """The ``i``-th mask as compressed RLE (what ``pycocotools.mask.decode`` reads)."""
        mu = _mask_utils()
        seg = self.segmentations[i]
        if isinstance(seg, list):  # polygons
            return mu.merge(mu.frPyObjects(seg, self.height, self.width))
        if isinstance(seg, dict) and isinstance(seg.get("counts"), list):  # uncompressed RLE
            return mu.frPyObjects(seg, *seg["size"])
        return seg


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MaskAnnotationError(f"cannot read annotation file {path} ({e}); re-download or re-export it.") from None


def _has_mask(seg: Any) -> bool:
    return (isinstance(seg, list) and any(len(p) >= 6 for p in seg)) or \
        (isinstance(seg, dict) and "counts" in seg and "size" in seg)


def _sa1b_masks(path: Path) -> ImageMasks:
    """One SA-1B per-image JSON; a file without masks is an error naming it."""
    d = _read_json(path)
    anns = d.get("annotations") if isinstance(d, dict) else None
    if not isinstance(anns, list) or not isinstance(d.get("image"), dict):
        raise MaskAnnotationError(f"{path} is not an SA-1B annotation file (it needs 'image' and 'annotations'); "
                                  "fix or remove it, or move it out of the image folder to use the teacher's masks.")
    segs = [a.get("segmentation") for a in anns if isinstance(a, dict)]
    masks = [(s, a) for s, a in zip(segs, anns) if _has_mask(s)]
    if not masks:
        raise MaskAnnotationError(f"{path} holds no masks (annotations need 'segmentation': {{'size': [h, w], "
                                  "'counts': RLE}); fix it, or remove the image and its JSON from the folder.")
    mu = _mask_utils()
    h, w = d["image"].get("height"), d["image"].get("width")
    if h is None or w is None:
        h, w = masks[0][0]["size"] if isinstance(masks[0][0], dict) else (None, None)
    if h is None:
        raise MaskAnnotationError(f"{path}: 'image' lacks 'height' and 'width'.")
    out = ImageMasks(int(h), int(w), source=str(path))
    for s, a in masks:
        out.segmentations.append(s)
        box = a.get("bbox")
        out.boxes.append([float(v) for v in box] if isinstance(box, list) and len(box) == 4
                         else mu.toBbox(out.rle(len(out.segmentations) - 1)).tolist())
    return out


def _coco_masks(path: Path) -> tuple[dict[str, ImageMasks], dict[str, int]]:
    """``file_name -> ImageMasks`` of one COCO instances file (images with at least one non-crowd mask) and counts
    of what was left out (``crowd``, ``no_segmentation``, ``images_without_masks``)."""
    from repvit.data.coco import CocoFormatError, load_coco_json

    try:
        d = load_coco_json(path)
    except CocoFormatError as e:
        raise MaskAnnotationError(f"{e} Fix the file, or move it out of the image folder to use the teacher's "
                                  "masks.") from None
    anns = d["annotations"]
    if anns and not any(_has_mask(a.get("segmentation")) for a in anns):
        raise MaskAnnotationError(f"{path} has annotations but no masks (no 'segmentation' polygons or RLE: a "
                                  "box-only file?). Prompts from annotations need instance masks: use an instances "
                                  "file with segmentations, or move this one out of the image folder to use the "
                                  "teacher's masks.")
    images = {im["id"]: im for im in d["images"]}
    out: dict[str, ImageMasks] = {}
    counts = {"crowd": 0, "no_segmentation": 0, "images_without_masks": 0}
    for a in anns:
        if a.get("iscrowd", 0):
            counts["crowd"] += 1
            continue
        if not _has_mask(a.get("segmentation")):
            counts["no_segmentation"] += 1
            continue
        im = images[a["image_id"]]
        if "height" not in im or "width" not in im:
            raise MaskAnnotationError(f"{path}: image {im['id']} ({im['file_name']}) lacks 'height' and 'width'.")
        m = out.setdefault(im["file_name"], ImageMasks(int(im["height"]), int(im["width"]), source=str(path)))
        m.segmentations.append(a["segmentation"])
        m.boxes.append([float(v) for v in a["bbox"]])
    counts["images_without_masks"] = len(images) - len(out)
    return out, counts


class MaskAnnotations:
    """The annotated masks of the images of a folder (``files``: paths relative to ``root``, as
    :func:`~repvit.sam_distill.embed_cache.training_images` lists them).

    Attributes:
        layout: ``"coco"`` or ``"sa1b"``; sources: the COCO instances files (empty for SA-1B);
        missing: the ``files`` without masks; left_out: COCO annotations that give no prompt, by reason.
    """

    def __init__(self, root: Path, layout: str, sources: list[Path], coco: dict[str, ImageMasks] | None,
                 files: list[str], left_out: dict[str, int] | None = None):
        self.root, self.layout, self.sources = Path(root), layout, list(sources)
        self._coco = coco
        self.left_out = dict(left_out or {})
        self.missing = [f for f in files if not self.has_masks(f)]

    def _coco_key(self, file: str) -> str | None:
        if file in self._coco:
            return file
        name = PurePosixPath(file).name
        return name if name in self._coco else None

    def has_masks(self, file: str) -> bool:
        if self.layout == "coco":
            return self._coco_key(file) is not None
        return (self.root / file).with_suffix(".json").is_file()

    def masks(self, file: str) -> ImageMasks:
        """The masks of ``file`` (an error naming the file and the fix when it has none)."""
        if not self.has_masks(file):
            where = ", ".join(str(s) for s in self.sources) if self.layout == "coco" else \
                str((self.root / file).with_suffix(".json"))
            raise MaskAnnotationError(f"image {self.root / file} has no annotated masks (looked in {where}); add "
                                      "them, or remove the image from the folder.")
        if self.layout == "coco":
            return self._coco[self._coco_key(file)]
        return _sa1b_masks((self.root / file).with_suffix(".json"))

    def describe(self) -> dict[str, Any]:
        """Plain data for logs and checkpoints: layout, files, image counts and what was left out."""
        return {"source": "annotations", "layout": self.layout, "files": [str(s) for s in self.sources],
                "images_without_masks": len(self.missing), "left_out": self.left_out}


def find_mask_annotations(root: str | Path, files: list[str]) -> MaskAnnotations | None:
    """COCO (``instances*.json`` in ``root`` or ``root/annotations``) or SA-1B (a JSON next to an image) annotations
    of the images ``files`` under ``root``, or None when there are neither."""
    root = Path(root)
    coco_files = sorted(root.glob("instances*.json")) + sorted((root / "annotations").glob("instances*.json"))
    per_image = sum((root / f).with_suffix(".json").is_file() for f in files)
    if coco_files and per_image:
        raise MaskAnnotationError(f"{root} holds both COCO instances files ({coco_files[0].name}) and per-image "
                                  "SA-1B JSON files; keep one layout in the image folder.")
    if per_image:
        ann = MaskAnnotations(root, "sa1b", [], None, files)
        first = next(f for f in files if f not in ann.missing)
        ann.masks(first)  # a wrong layout fails here, not hours into training; the other files are read when used
        return ann
    if not coco_files:
        return None
    merged: dict[str, ImageMasks] = {}
    left_out = {"crowd": 0, "no_segmentation": 0, "images_without_masks": 0}
    for path in coco_files:
        masks, counts = _coco_masks(path)
        for name, m in masks.items():
            if name in merged:
                raise MaskAnnotationError(f"image {name} has masks in both {merged[name].source} and {path}; "
                                          "keep one instances file per image set.")
            merged[name] = m
        left_out = {k: left_out[k] + counts[k] for k in left_out}
    by_name: dict[str, list[str]] = {}
    for f in files:
        by_name.setdefault(PurePosixPath(f).name, []).append(f)
    for f in files:
        if f not in merged and PurePosixPath(f).name in merged and len(by_name[PurePosixPath(f).name]) > 1:
            raise MaskAnnotationError(f"the COCO file name {PurePosixPath(f).name} matches several images "
                                      f"({', '.join(by_name[PurePosixPath(f).name][:3])}); give file_name as the "
                                      f"path relative to {root}.")
    return MaskAnnotations(root, "coco", coco_files, merged, files, left_out)


def low_res_prompt_masks(masks: ImageMasks, image_hw: tuple[int, int], img_size: int,
                         image_path: str | Path = "") -> tuple[torch.Tensor, torch.Tensor]:
    """An image's masks in the frame of SAM's low-resolution masks and its boxes in the input frame.

    The image (``image_hw`` = its real (H, W)) is resized so that its longer side is ``img_size`` and padded at the
    bottom and right, as SAM's preprocessing does; the low-resolution masks are ``img_size / 4`` square. A
    low-resolution pixel is in an object when the image pixel under its centre is, so a point drawn from it lies
    inside the annotated mask.

    Returns:
        ``masks`` (M, img_size / 4, img_size / 4) bool (padding False) and ``boxes`` (M, 4) ``x0, y0, x1, y1`` in
        the input frame (the annotations' ``bbox`` resized, as SAM's ``apply_boxes`` does).
    """
    from segment_anything.utils.transforms import ResizeLongestSide

    H, W = (int(v) for v in image_hw)
    if (masks.height, masks.width) != (H, W):
        raise MaskAnnotationError(f"{masks.source} gives image {image_path} the size {masks.height}x{masks.width}, "
                                  f"but it is {H}x{W}; the annotations belong to another (resized?) copy of it.")
    h, w = ResizeLongestSide.get_preprocess_shape(H, W, img_size)
    side = img_size // 4
    step = img_size / side
    rows = np.minimum(np.floor((np.arange(math.ceil(h / step)) + 0.5) * step * H / h), H - 1).astype(np.int64)
    cols = np.minimum(np.floor((np.arange(math.ceil(w / step)) + 0.5) * step * W / w), W - 1).astype(np.int64)
    mu = _mask_utils()
    out = torch.zeros(len(masks.segmentations), side, side, dtype=torch.bool)
    for i in range(len(masks.segmentations)):
        rle = masks.rle(i)
        if list(rle["size"]) != [H, W]:
            raise MaskAnnotationError(f"{masks.source}: mask {i} of image {image_path} has size {rle['size']}, the "
                                      f"image is {H}x{W}.")
        full = mu.decode(rle)
        out[i, :len(rows), :len(cols)] = torch.from_numpy(full[np.ix_(rows, cols)] > 0)
    b = torch.tensor(masks.boxes, dtype=torch.float32).reshape(-1, 4)
    sx, sy = w / W, h / H
    boxes = torch.stack([b[:, 0] * sx, b[:, 1] * sy, (b[:, 0] + b[:, 2]) * sx, (b[:, 1] + b[:, 3]) * sy], 1)
    return out, boxes
