"""The built-in dense data set: scenes composed from scikit-learn's 8x8 digits (nothing is downloaded).

Each scene is a ``size`` x ``size`` RGB canvas (a dark, noisy background with a faint gradient) holding
``min_digits..max_digits`` digit glyphs, each upscaled (bilinear) to a random side of ``scale`` x ``size``
(with a little aspect jitter), painted in a random bright colour at a random position. Instances are placed
so that they overlap little (a new glyph's box may cover at most ``max_overlap`` of an already placed one's and
vice versa); where they do overlap, the later glyph is on top.

Conventions of an item ``(image, target)``:

* ``image``: ``tv_tensors.Image``, uint8, ``(3, H, W)``.
* ``target["semantic"]``: ``tv_tensors.Mask`` ``(H, W)`` int64: 0 = background, ``1 + d`` = digit ``d``
  (so 11 classes, names in :data:`SCENE_CLASSES`). A pixel belongs to a glyph when the upscaled glyph intensity
  (0..1) is at least ``ink_threshold``.
* ``target["masks"]``: ``tv_tensors.Mask`` ``(N, H, W)`` uint8, the *visible* part of each instance (occluded
  pixels dropped); every instance has a non-empty visible mask, and the semantic map equals the instance masks
  painted with their labels.
* ``target["boxes"]``: ``tv_tensors.BoundingBoxes`` ``(N, 4)`` float32, XYXY in pixel-edge coordinates: the tight
  box of the visible mask, ``x1 = first column, x2 = last column + 1`` (same for y), i.e.
  ``torchvision.ops.masks_to_boxes(masks) + [0, 0, 1, 1]``.
* ``target["labels"]``: int64 ``(N,)`` in ``1..10`` (``1 + digit``; 0 is left for the background, as torchvision's
  detectors expect). ``target["image_id"]``: the item's index (int).

Determinism: scene ``i`` of a split depends only on ``(seed, split, i)`` (and the size/scale arguments), through
``numpy.random.default_rng([seed, split_code, i])``. Train scenes draw glyphs only from the digits ``train`` split
of :mod:`repvit.data.digits`, validation scenes only from its held-out ``val`` split. Scenes are rendered on the fly
(about a millisecond each at 64 px) on first access and, with ``cache=True`` (the default), kept in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision import tv_tensors

from repvit.data.digits import digits_split_indices, raw_digits

__all__ = ["SCENE_CLASSES", "NUM_SCENE_CLASSES", "DigitScenes", "scenes_collate"]

SCENE_CLASSES = ["background"] + [str(d) for d in range(10)]
NUM_SCENE_CLASSES = len(SCENE_CLASSES)  # 11, background included
_SPLIT_CODE = {"train": 0, "val": 1}
_DEFAULT_NUM_SCENES = {"train": 2000, "val": 256}
MIN_VAL_SCENES = 200


class DigitScenes(Dataset):
    """Scenes of scikit-learn digits with semantic labels, boxes and instance masks (see the module docstring).

    Args:
        split: ``"train"`` (glyphs from the digits train split) or ``"val"`` (held-out glyphs only).
        size: canvas side in pixels (at least 32, the RepViT minimum input).
        num_scenes: scenes in the split; defaults to 2000 (train) / 256 (val). Validation needs at least 200.
        seed: scene seed; scene ``i`` is a function of ``(seed, split, i)``.
        min_digits, max_digits: glyphs per scene (fewer when no free place is found).
        scale: glyph side as a fraction of ``size``, drawn uniformly from this range.
        max_overlap: the largest fraction of a placed glyph's box that a new glyph's box may cover.
        ink_threshold: glyph intensity (0..1) from which a pixel counts as the digit.
        transform: optional joint transform called as ``transform(image, target)`` (torchvision.transforms.v2).
        cache: keep rendered scenes in memory (about ``size**2 * (3 + max_digits)`` bytes each).
        instances: build ``boxes``, ``labels`` and ``masks`` too; ``False`` gives only ``semantic`` and
            ``image_id`` (segmentation needs no more, and the per-instance targets cost as much as the render).
    """

    classes = SCENE_CLASSES

    def __init__(
        self,
        split: str = "train",
        *,
        size: int = 64,
        num_scenes: int | None = None,
        seed: int = 0,
        min_digits: int = 1,
        max_digits: int = 4,
        scale: tuple[float, float] = (0.25, 0.5),
        max_overlap: float = 0.1,
        ink_threshold: float = 0.3,
        transform: Callable | None = None,
        cache: bool = True,
        instances: bool = True,
    ):
        if split not in _SPLIT_CODE:
            raise ValueError(f"DigitScenes split must be 'train' or 'val', got {split!r}.")
        num_scenes = _DEFAULT_NUM_SCENES[split] if num_scenes is None else int(num_scenes)
        if num_scenes < 1 or (split == "val" and num_scenes < MIN_VAL_SCENES):
            raise ValueError(f"num_scenes={num_scenes} is too small; validation needs at least {MIN_VAL_SCENES}.")
        if size < 32:
            raise ValueError(f"size must be at least 32 (the RepViT minimum input), got {size}.")
        if not 1 <= min_digits <= max_digits:
            raise ValueError(f"need 1 <= min_digits <= max_digits, got {min_digits}, {max_digits}.")
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must be a range inside (0, 1], got {scale}.")
        self.split, self.size, self.num_scenes, self.seed = split, int(size), num_scenes, int(seed)
        self.min_digits, self.max_digits = int(min_digits), int(max_digits)
        self.scale = (float(scale[0]), float(scale[1]))
        self.max_overlap, self.ink_threshold = float(max_overlap), float(ink_threshold)
        self.transform = transform
        self.instances = bool(instances)
        self._cache: dict[int, tuple[np.ndarray, ...]] | None = {} if cache else None
        images, labels = raw_digits()
        idx = digits_split_indices()[split]
        self._glyphs = torch.from_numpy(images[idx])  # (G, 8, 8) in 0..1
        self._digits = labels[idx]
        self._source = idx

    def __len__(self) -> int:
        return self.num_scenes

    def _place(self, rng: np.random.Generator, boxes: list[tuple[int, int, int, int]], h: int, w: int):
        for _ in range(20):
            y, x = int(rng.integers(0, self.size - h + 1)), int(rng.integers(0, self.size - w + 1))
            ok = True
            for y0, x0, y1, x1 in boxes:
                inter = max(0, min(y1, y + h) - max(y0, y)) * max(0, min(x1, x + w) - max(x0, x))
                if inter > self.max_overlap * min(h * w, (y1 - y0) * (x1 - x0)):
                    ok = False
                    break
            if ok:
                return y, x
        return None

    def render(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Scene ``index`` as arrays: image ``(H, W, 3)`` uint8, visible instance masks ``(N, H, W)`` bool, digits
        ``(N,)`` (0..9) and the glyphs' indices in ``sklearn.datasets.load_digits()`` ``(N,)``."""
        if not 0 <= index < self.num_scenes:
            raise IndexError(f"scene {index} out of range for {self.num_scenes} scenes.")
        rng = np.random.default_rng([self.seed, _SPLIT_CODE[self.split], index])
        s = self.size
        # background: a dark level, a faint linear gradient and noise
        base = rng.uniform(0, 80, size=3)
        ramp = np.linspace(-1, 1, s, dtype=np.float32)
        angle = rng.uniform(0, 2 * np.pi)
        grad = (np.cos(angle) * ramp[None, :] + np.sin(angle) * ramp[:, None]) * rng.uniform(0, 25)
        img = base[None, None, :] + grad[..., None] + rng.normal(0, 6, size=(s, s, 3))
        masks, digits, glyphs, boxes = [], [], [], []
        for _ in range(int(rng.integers(self.min_digits, self.max_digits + 1))):
            side = rng.uniform(*self.scale) * s
            h = int(np.clip(round(side * rng.uniform(0.85, 1.15)), 8, s))
            w = int(np.clip(round(side * rng.uniform(0.85, 1.15)), 8, s))
            g = int(rng.integers(len(self._digits)))
            color = rng.uniform(140, 255, size=3)
            pos = self._place(rng, boxes, h, w)
            if pos is None:
                continue
            y, x = pos
            boxes.append((y, x, y + h, x + w))
            glyph = F.interpolate(self._glyphs[g][None, None], size=(h, w), mode="bilinear", align_corners=False)
            glyph = glyph[0, 0].clamp_(0, 1).numpy()
            a = glyph[..., None]
            img[y:y + h, x:x + w] = img[y:y + h, x:x + w] * (1 - a) + color * a
            m = np.zeros((s, s), dtype=bool)
            m[y:y + h, x:x + w] = glyph >= self.ink_threshold
            for prev in masks:  # the new glyph is on top
                prev &= ~m
            masks.append(m)
            digits.append(int(self._digits[g]))
            glyphs.append(int(self._source[g]))
        keep = [i for i, m in enumerate(masks) if m.any()]
        image = np.clip(img, 0, 255).round().astype(np.uint8)
        inst = np.stack([masks[i] for i in keep]) if keep else np.zeros((0, s, s), dtype=bool)
        return (image, inst, np.asarray([digits[i] for i in keep], dtype=np.int64),
                np.asarray([glyphs[i] for i in keep], dtype=np.int64))

    def __getitem__(self, index: int) -> tuple[tv_tensors.Image, dict[str, Any]]:
        if self._cache is None:
            image, inst, digits, _ = self.render(index)
        else:
            if index not in self._cache:
                self._cache[index] = self.render(index)
            image, inst, digits, _ = self._cache[index]
        s = self.size
        masks = torch.from_numpy(inst)
        labels = torch.from_numpy(digits) + 1
        semantic = torch.zeros((s, s), dtype=torch.int64)
        for m, lab in zip(masks, labels):
            semantic[m] = lab
        img = tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1).contiguous())
        if not self.instances:
            target: dict[str, Any] = {"semantic": tv_tensors.Mask(semantic), "image_id": int(index)}
            return self.transform(img, target) if self.transform is not None else (img, target)
        boxes = torch.zeros((len(labels), 4), dtype=torch.float32)
        for i, m in enumerate(masks):
            ys, xs = torch.where(m)
            boxes[i] = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
        target = {
            "semantic": tv_tensors.Mask(semantic),
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(s, s)),
            "labels": labels,
            "masks": tv_tensors.Mask(masks.to(torch.uint8)),
            "image_id": int(index),
        }
        if self.transform is not None:
            return self.transform(img, target)
        return img, target


def scenes_collate(batch: list[tuple[torch.Tensor, dict[str, Any]]]) -> tuple[list[torch.Tensor], list[dict]]:
    """Collate for detection-style loaders: lists of images and targets (sizes may differ after transforms)."""
    images, targets = zip(*batch)
    return list(images), list(targets)
