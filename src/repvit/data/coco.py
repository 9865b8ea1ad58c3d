"""The COCO instances file format, shared by every task that reads it (detection's datasets, SAM distillation's
annotated prompts): reading a json and checking that its images, annotations and categories hang together."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["CocoFormatError", "load_coco_json"]


class CocoFormatError(ValueError):
    """A COCO annotation file that cannot be used (malformed json, missing fields, missing images or masks)."""


def load_coco_json(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a COCO instances json: ``images``, ``annotations`` and ``categories`` with their ids."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"COCO annotation file {path} does not exist (COCO layout: "
                                "ROOT/annotations/instances_{train,val}2017.json; or name the file with an option).")
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CocoFormatError(f"{path} is not valid JSON ({e}); re-export or re-download the annotation file.") \
            from None
    if not isinstance(d, dict):
        raise CocoFormatError(f"{path} must hold a JSON object with images, annotations and categories.")
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(d.get(k), list)]
    if missing:
        raise CocoFormatError(f"{path} lacks the list(s) {missing}: not a COCO instances file.")
    for kind, keys in (("images", ("id", "file_name")), ("categories", ("id",)),
                       ("annotations", ("id", "image_id", "category_id", "bbox"))):
        for i, item in enumerate(d[kind]):
            bad = [k for k in keys if not isinstance(item, dict) or k not in item]
            if bad:
                raise CocoFormatError(f"{path}: {kind}[{i}] lacks {bad}.")
    if not d["categories"]:
        raise CocoFormatError(f"{path} has no categories.")
    cats = {c["id"] for c in d["categories"]}
    imgs = {im["id"] for im in d["images"]}
    for i, a in enumerate(d["annotations"]):
        if a["category_id"] not in cats or a["image_id"] not in imgs:
            raise CocoFormatError(f"{path}: annotations[{i}] names category {a['category_id']} / image "
                                  f"{a['image_id']}, which the file does not define.")
        if not (isinstance(a["bbox"], list) and len(a["bbox"]) == 4):
            raise CocoFormatError(f"{path}: annotations[{i}].bbox must be [x, y, width, height].")
    return d
