"""Segmentation data: the ADE20K-layout reader, the joint transforms (torchvision.transforms.v2), the collate, and
:func:`build_segment_datasets` (a run's data sets: ``digits`` scenes or an ADE20K-layout folder).

Labels everywhere are int64 maps with ``IGNORE_INDEX`` (255) for pixels that do not count (ADE20K's label 0
"other" after ``reduce_zero_label``, crop padding).

ADE20K layout (``--data PATH``)::

    PATH/images/training/*.jpg        PATH/annotations/training/*.png      (same file stem)
    PATH/images/validation/*.jpg      PATH/annotations/validation/*.png

A label PNG is single-channel with values ``0..N`` (0 = "other") or 255. With ``reduce_zero_label`` (as mmseg
does for ADE20K) 0 becomes 255 and ``v`` becomes ``v - 1``, so the ``N`` classes are ``0..N-1`` (``--num-classes
N``, 150 for ADE20K). Without it, the values must be ``0..N-1`` or 255. Every bad file raises an error naming it.

Training transform (mmseg's ADE20K pipeline, with torchvision's v2 transforms): resize the shorter side to
``img_size × r``, ``r ~ U(scale_min, scale_max)`` (``RandomResize``), random ``img_size`` crop padded with 0 /
ignore (``RandomCrop``), horizontal flip, ``RandomPhotometricDistort``, then float and ImageNet normalisation.
mmseg's ``cat_max_ratio`` crop retries are not reproduced. Evaluation: the image's shorter side resized to
``img_size`` (longer side at most ``4 × img_size``), the label kept at its original size; predictions are resized
back to it (whole-image, single-scale, as in the paper).

:class:`AlignResize` is the authors' test pipeline for their mmseg checkpoints (``img_scale=(2048, 512)``,
``AlignResize(keep_ratio=True, size_divisor=32)``): rescale keeping the ratio so that the short side is at most 512
and the long side at most 2048, then resize again so both sides are multiples of 32; both steps bilinear without
antialiasing on 8-bit images (as OpenCV's ``INTER_LINEAR``), then ImageNet normalisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from timm.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from repvit.data import IMAGE_EXTENSIONS, is_digits

__all__ = ["IGNORE_INDEX", "IMAGENET_MEAN", "IMAGENET_STD", "ADE20KSegmentation", "SegmentationView",
           "build_segment_datasets", "train_transform", "eval_transform", "segment_collate", "resize_logits",
           "AlignResize"]

IGNORE_INDEX = 255
IMAGENET_MEAN, IMAGENET_STD = IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD  # timm's constants, under this module's names
_SPLITS = {"train": "training", "val": "validation", "training": "training", "validation": "validation"}


def _read_image(path: Path) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_image

    try:
        return decode_image(str(path), mode=ImageReadMode.RGB)
    except Exception as e:  # noqa: BLE001 - every decoder failure becomes one error naming the file
        raise ValueError(f"cannot read image {path}: {e}") from None


def _read_label(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P", "I", "I;16"):
                raise ValueError(f"label {path} is a {im.mode} image; labels must be single-channel PNGs "
                                 "(mode L or P) holding class indices.")
            return np.asarray(im).astype(np.int64)
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"cannot read label {path}: {e}") from None


class ADE20KSegmentation(Dataset):
    """A split of a folder in ADE20K's layout; items are ``(image, {"semantic": mask})`` like :class:`DigitScenes`.

    Args:
        root: the folder holding ``images/`` and ``annotations/``.
        split: ``"training"`` / ``"train"`` or ``"validation"`` / ``"val"``.
        num_classes: classes after the reduction (150 for ADE20K).
        reduce_zero_label: map 0 ("other") to the ignore index and shift the others down by one.
        transform: a joint transform ``transform(image, target)``.
    """

    def __init__(self, root: str | Path, split: str = "training", *, num_classes: int,
                 reduce_zero_label: bool = True, transform=None):
        if split not in _SPLITS:
            raise ValueError(f"split must be 'training' or 'validation', got {split!r}.")
        if num_classes is None or not 1 <= int(num_classes) <= 255:
            raise ValueError(f"--num-classes must be given for --data {root} (1..255; ADE20K: 150), "
                             f"got {num_classes}.")
        root, split = Path(root), _SPLITS[split]
        self.img_dir, self.ann_dir = root / "images" / split, root / "annotations" / split
        for d in (self.img_dir, self.ann_dir):
            if not d.is_dir():
                raise FileNotFoundError(
                    f"{d} does not exist: --data {root} must be in ADE20K's layout "
                    "(images/{training,validation}/*.jpg, annotations/{training,validation}/*.png).")
        self.images = sorted(p for p in self.img_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not self.images:
            raise ValueError(f"empty split: {self.img_dir} holds no images (.jpg/.png).")
        self.labels = [self.ann_dir / f"{p.stem}.png" for p in self.images]
        missing = [(i, lab) for i, lab in zip(self.images, self.labels) if not lab.is_file()]
        if missing:
            img, lab = missing[0]
            more = f" (and {len(missing) - 1} more images without labels)" if len(missing) > 1 else ""
            raise FileNotFoundError(f"missing label file {lab} for image {img}{more}.")
        self.num_classes, self.reduce_zero_label, self.transform = int(num_classes), reduce_zero_label, transform
        self.classes = [str(i) for i in range(self.num_classes)]

    def __len__(self) -> int:
        return len(self.images)

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Image ``(3, H, W)`` uint8 and the checked, reduced label ``(H, W)`` int64."""
        img_path, lab_path = self.images[index], self.labels[index]
        img, lab = _read_image(img_path), _read_label(lab_path)
        if tuple(img.shape[-2:]) != lab.shape[:2]:
            raise ValueError(f"image {img_path} is {img.shape[-1]}x{img.shape[-2]} but its label {lab_path} is "
                             f"{lab.shape[1]}x{lab.shape[0]}; they must have the same size.")
        top = self.num_classes if self.reduce_zero_label else self.num_classes - 1
        values = np.unique(lab)
        bad = values[((values < 0) | (values > top)) & (values != IGNORE_INDEX)]
        if bad.size:
            raise ValueError(f"label {lab_path} has values {bad[:8].tolist()} outside [0, {top}] (and not the ignore "
                             f"value {IGNORE_INDEX}); check --num-classes ({self.num_classes}"
                             f"{', after reduce_zero_label' if self.reduce_zero_label else ''}).")
        if self.reduce_zero_label:
            lab = np.where((lab == 0) | (lab == IGNORE_INDEX), IGNORE_INDEX, lab - 1)
        return img, torch.from_numpy(lab)

    def __getitem__(self, index: int):
        img, lab = self.load(index)
        image, target = tv_tensors.Image(img), {"semantic": tv_tensors.Mask(lab), "image_id": index}
        if self.transform is not None:
            return self.transform(image, target)
        return image, target


def train_transform(img_size: int, *, scale: tuple[float, float] = (0.5, 2.0), hflip: float = 0.5,
                    photometric: bool = True, mean: Sequence[float] = IMAGENET_MEAN,
                    std: Sequence[float] = IMAGENET_STD) -> v2.Compose:
    """The joint training transform on ``(image, {"semantic": mask})`` (see the module docstring)."""
    lo, hi = int(round(img_size * scale[0])), int(round(img_size * scale[1]))
    steps: list[Any] = [
        v2.RandomResize(lo, max(hi, lo + 1)),
        v2.RandomCrop(img_size, pad_if_needed=True, fill={tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX}),
    ]
    if hflip > 0:
        steps.append(v2.RandomHorizontalFlip(hflip))
    if photometric:
        steps.append(v2.RandomPhotometricDistort())
    steps += [v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True), v2.Normalize(mean, std)]
    return v2.Compose(steps)


def eval_transform(img_size: int, *, mean: Sequence[float] = IMAGENET_MEAN,
                   std: Sequence[float] = IMAGENET_STD) -> v2.Compose:
    """The evaluation transform on the image alone: shorter side to ``img_size``, then float and normalisation."""
    return v2.Compose([v2.Resize(img_size, max_size=4 * img_size + 1), v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize(mean, std)])


class AlignResize:
    """The authors' mmseg test resize (``AlignResize``): keep-ratio rescale into ``scale``, then align to a multiple
    of ``size_divisor``; takes a ``(3, H, W)`` uint8 image and returns the normalised float image.

    Args:
        scale: ``(long side, short side)`` limits (mmseg's ``img_scale=(2048, 512)``).
        size_divisor: both output sides are multiples of it.
        mean: per-channel mean (of images in [0, 1]).
        std: per-channel std.
    """

    def __init__(self, scale: tuple[int, int] = (2048, 512), size_divisor: int = 32,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        self.long, self.short = max(scale), min(scale)
        self.size_divisor = int(size_divisor)
        self.mean = torch.tensor(mean).view(3, 1, 1) * 255
        self.std = torch.tensor(std).view(3, 1, 1) * 255

    def sizes(self, height: int, width: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """``((h, w) after the rescale, (h, w) after the alignment)`` for an image of ``height x width``."""
        s = min(self.long / max(height, width), self.short / min(height, width))
        h, w = int(height * s + 0.5), int(width * s + 0.5)
        d = self.size_divisor
        return (h, w), (int(np.ceil(h / d)) * d, int(np.ceil(w / d)) * d)

    @staticmethod
    def _resize_u8(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if tuple(x.shape[-2:]) == tuple(size):
            return x
        y = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False, antialias=False)[0]
        return y.round_().clamp_(0, 255)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        x = image.as_subclass(torch.Tensor) if isinstance(image, torch.Tensor) else torch.as_tensor(image)
        if x.dtype != torch.uint8:
            raise TypeError(f"AlignResize takes a uint8 image, got {x.dtype}.")
        first, aligned = self.sizes(*x.shape[-2:])
        x = self._resize_u8(self._resize_u8(x.float(), first), aligned)
        return (x - self.mean) / self.std


class SegmentationView(Dataset):
    """``(image, target)`` items of a dense data set as ``(image tensor, label map)`` for segmentation.

    Training: ``transform`` acts jointly on the image and the semantic mask. Evaluation (``train=False``):
    ``transform`` acts on the image only and the label stays at its original size.
    """

    def __init__(self, dataset: Dataset, transform, train: bool):
        self.dataset, self.transform, self.train = dataset, transform, train

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, target = self.dataset[index]
        mask = target["semantic"]
        if self.train:
            image, mask = self.transform(image, mask)
        else:
            image = self.transform(image)
        return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor).long()


def segment_collate(batch: list[tuple[torch.Tensor, torch.Tensor]]):
    """Stack a batch, padding images (with 0) and labels (with the ignore index) to the largest size.

    Returns ``(images (B, 3, H, W), labels (B, h, w), sizes (B, 4))``, ``sizes`` holding each item's image height
    and width, then label height and width (they differ in evaluation, where images are resized and labels not).
    """
    images, labels = [b[0] for b in batch], [b[1] for b in batch]
    sizes = torch.tensor([[*im.shape[-2:], *lab.shape[-2:]] for im, lab in zip(images, labels)], dtype=torch.int64)
    h, w, lh, lw = (int(v) for v in sizes.max(0).values)
    x = torch.stack([F.pad(im, (0, w - im.shape[-1], 0, h - im.shape[-2])) for im in images])
    y = torch.stack([F.pad(lab, (0, lw - lab.shape[-1], 0, lh - lab.shape[-2]), value=IGNORE_INDEX) for lab in labels])
    return x, y, sizes


def resize_logits(logits: torch.Tensor, sizes: torch.Tensor) -> list[torch.Tensor]:
    """Per item: the logits of its image region, resized (bilinear) to its label's size."""
    out = []
    for lg, (h, w, lh, lw) in zip(logits, sizes.tolist()):
        lg = lg[:, :h, :w]
        if (h, w) != (lh, lw):
            lg = F.interpolate(lg[None], size=(lh, lw), mode="bilinear", align_corners=False)[0]
        out.append(lg)
    return out


def build_segment_datasets(cfg, *, train: bool = True) -> tuple[Any, Any, dict[str, Any]]:
    """``(train set or None, val set, meta)`` for ``cfg.data`` (``digits`` or an ADE20K-layout folder); ``cfg`` is a
    :class:`~repvit.dense.segmentation.config.SegmentConfig`."""
    if is_digits(cfg.data):
        from ..scenes import SCENE_CLASSES, DigitScenes

        if cfg.num_classes is not None and cfg.num_classes != len(SCENE_CLASSES):
            raise ValueError(f"--num-classes {cfg.num_classes} does not fit --data digits "
                             f"({len(SCENE_CLASSES)} classes: background and the ten digits).")
        kw = dict(size=cfg.img_size, seed=cfg.scenes_seed, scale=(cfg.scene_scale_min, cfg.scene_scale_max),
                  min_digits=cfg.scene_min_digits, max_digits=cfg.scene_max_digits, instances=False)
        # rendered scenes are cached (size**2 * (3 + max_digits) bytes each: 49 MB for 2000 scenes of 64 px); the
        # random augmentation is still drawn afresh on every access
        tr = DigitScenes("train", num_scenes=cfg.train_scenes, **kw) if train else None
        va = DigitScenes("val", num_scenes=cfg.val_scenes, **kw)
        names, ignore_bg = list(SCENE_CLASSES), False
    else:
        root = Path(cfg.data)
        if not root.is_dir():
            raise FileNotFoundError(f"--data {cfg.data}: not 'digits' and not a directory (ADE20K layout expected).")
        kw = dict(num_classes=cfg.num_classes, reduce_zero_label=cfg.reduce_zero_label)
        tr = ADE20KSegmentation(root, "training", **kw) if train else None
        va = ADE20KSegmentation(root, "validation", **kw)
        names, ignore_bg = list(va.classes), cfg.reduce_zero_label
    if tr is not None:
        tr = SegmentationView(tr, train_transform(cfg.img_size, scale=(cfg.scale_min, cfg.scale_max),
                                                  hflip=cfg.hflip, photometric=cfg.photometric), train=True)
    va = SegmentationView(va, eval_transform(cfg.img_size), train=False)
    meta = {"num_classes": len(names), "class_names": names, "ignore_index": IGNORE_INDEX,
            "reduce_zero_label": ignore_bg, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
            "data": "digits" if is_digits(cfg.data) else "ade20k-layout"}
    return tr, va, meta
