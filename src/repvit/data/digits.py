"""The built-in data set: scikit-learn's handwritten digits, upscaled, with a fixed held-out split.

``sklearn.datasets.load_digits`` ships 1797 grey 8x8 images of the digits 0-9 inside the scikit-learn package, so
nothing is downloaded. The held-out split (``val``, 25% of the images, stratified by class, seed 0) is fixed: it
never changes between runs or machines and is never trained on.

Preprocessing (the "digits transform"): the 0..16 intensities are scaled to 0..1, the image is upscaled to
``img_size`` with bicubic interpolation, replicated to 3 channels and normalised with mean 0.5 / std 0.5. The same
steps are applied to an image file by :func:`digits_transform`, so ``repvit predict`` can read a scanned digit.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

__all__ = [
    "DIGITS_CLASSES",
    "DIGITS_HELD_OUT_FRACTION",
    "DIGITS_MEAN",
    "DIGITS_STD",
    "DigitsDataset",
    "digits_split_indices",
    "digits_transform",
    "load_digits_split",
]

DIGITS_CLASSES = [str(i) for i in range(10)]
DIGITS_HELD_OUT_FRACTION = 0.25
DIGITS_SPLIT_SEED = 0
DIGITS_MEAN = 0.5
DIGITS_STD = 0.5


_SPLIT_FILE = Path(__file__).with_name("digits_split.json")


@lru_cache(maxsize=1)
def raw_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 images ``(N, 8, 8)`` in 0..1 and labels, read from the file ``sklearn.datasets.load_digits`` reads
    (``sklearn/datasets/data/digits.csv.gz``, shipped with scikit-learn) without importing scikit-learn, whose
    import is a few seconds of a digits run's start-up."""
    from importlib.util import find_spec

    from repvit.runtime import require

    spec = find_spec("sklearn")
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    path = next((p for p in (Path(r) / "datasets" / "data" / "digits.csv.gz" for r in roots) if p.is_file()), None)
    if path is None:  # no scikit-learn (the error names the extra), or a layout without the file
        d = require("sklearn.datasets", "the built-in 'digits' data set").load_digits()
        return d.images.astype(np.float32) / 16.0, d.target.astype(np.int64)
    data = np.loadtxt(path, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8).astype(np.float32) / 16.0, data[:, -1].astype(np.int64)


@lru_cache(maxsize=1)
def digits_split_indices() -> dict[str, np.ndarray]:
    """Indices of the fixed ``train`` and ``val`` (held-out) splits: stratified, seed 0, 25% held out.

    The held-out indices are those of ``sklearn.model_selection.train_test_split(range(1797), test_size=0.25,
    stratify=labels, random_state=0)``, stored in ``digits_split.json`` (a test recomputes them with scikit-learn).
    """
    _, y = raw_digits()
    val = np.asarray(json.loads(_SPLIT_FILE.read_text(encoding="utf-8"))["val"], dtype=np.int64)
    train = np.setdiff1d(np.arange(len(y)), val)
    return {"train": train, "val": np.sort(val)}


def _upscale(x: torch.Tensor, img_size: int, in_chans: int) -> torch.Tensor:
    """(N, h, w) in 0..1 -> (N, C, img_size, img_size) normalised."""
    x = F.interpolate(x[:, None], size=(img_size, img_size), mode="bicubic", align_corners=False).clamp_(0, 1)
    x = (x - DIGITS_MEAN) / DIGITS_STD
    return x.expand(-1, in_chans, -1, -1).contiguous()


def load_digits_split(split: str = "val", img_size: int = 32, in_chans: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """The digits ``train`` or ``val`` (held-out) split as preprocessed tensors.

    Args:
        split: ``"train"`` (1347 images) or ``"val"`` (450 held-out images, never trained on); ``"all"`` gives both.
        img_size: side of the upscaled square images (the models need at least 32).
        in_chans: 3 (grey replicated) or 1.

    Returns:
        ``(images, labels)``: float32 ``(N, in_chans, img_size, img_size)`` normalised with mean/std 0.5, and int64
        labels 0-9.
    """
    x, y = raw_digits()
    if split == "all":
        idx = np.arange(len(y))
    elif split in ("train", "val"):
        idx = digits_split_indices()[split]
    else:
        raise ValueError(f"digits split must be 'train', 'val' or 'all', got {split!r}.")
    if img_size < 8:
        raise ValueError(f"img_size must be at least 8 for digits, got {img_size}.")
    return _upscale(torch.from_numpy(x[idx]), img_size, in_chans), torch.from_numpy(y[idx])


class DigitsDataset(Dataset):
    """A digits split as a map-style data set of ``(image, label)``; ``transform`` acts on the image tensor.

    The images are preprocessed once (they are small); ``transform`` adds augmentation per sample, using torch's
    global RNG, which the training loader seeds per batch (:class:`repvit.data.loader.SeededBatchDataset`) so a
    resumed run sees the same augmentations.
    """

    classes = DIGITS_CLASSES

    def __init__(self, split: str = "train", img_size: int = 32, in_chans: int = 3, transform=None):
        self.split = split
        self.images, self.targets = load_digits_split(split, img_size, in_chans)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        x = self.images[i]
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.targets[i])


def digits_transform(img_size: int = 32, in_chans: int = 3):
    """The digits preprocessing for an image file (PIL): grey, ink-on-white inverted to the data set's polarity.

    The digits data set has bright strokes on a dark background; a scanned digit usually has dark ink on white
    paper, so a mostly-bright image is inverted.
    """

    def _tf(img) -> torch.Tensor:
        arr = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
        if arr.mean() > 0.5:
            arr = 1.0 - arr
        t = torch.from_numpy(arr)[None]
        t = F.interpolate(t[:, None], size=(8, 8), mode="area")[:, 0]  # to the data set's resolution first
        return _upscale(t, img_size, in_chans)[0]

    return _tf
