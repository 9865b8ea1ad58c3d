"""One entry point for the data a run uses: ``digits`` (built-in) or an ImageFolder tree with train/ and val/."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from .digits import DIGITS_CLASSES, DigitsDataset
from .folder import RobustImageFolder, check_image_folder
from .transforms import DEFAULT_CROP_PCT, digits_train_transform, eval_transform, train_transform

__all__ = ["DataBundle", "build_datasets", "build_eval_dataset", "is_digits"]


def is_digits(data: str | Path) -> bool:
    """Whether ``data`` names the built-in digits set."""
    return str(data).strip().lower() == "digits"


@dataclass
class DataBundle:
    """The datasets of a run and what the model needs to know about them."""

    train: Dataset | None
    val: Dataset
    class_names: list[str]
    is_digits: bool

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def build_eval_dataset(data: str | Path, img_size: int = 224, in_chans: int = 3, crop_pct: float = DEFAULT_CROP_PCT,
                       interpolation: str = "bicubic", strict: bool = False, split: str = "val") -> DataBundle:
    """The held-out split only (``digits`` val, or ``DATA/val``; ``DATA`` itself if it holds class folders)."""
    if is_digits(data):
        return DataBundle(None, DigitsDataset(split, img_size, in_chans), list(DIGITS_CLASSES), True)
    root = Path(data)
    if not root.exists():
        raise FileNotFoundError(f"data directory {root} does not exist; give an ImageFolder tree or 'digits'.")
    val_dir = root / split if (root / split).is_dir() else root
    if val_dir is root and not root.is_dir():
        raise FileNotFoundError(f"--data {root} is not a directory.")
    ds = RobustImageFolder(val_dir, eval_transform(img_size, crop_pct, interpolation), strict=strict)
    return DataBundle(None, ds, list(ds.classes), False)


def build_datasets(data: str | Path, *, img_size: int = 224, in_chans: int = 3, strict: bool = False,
                   aug: dict[str, Any] | None = None, crop_pct: float = DEFAULT_CROP_PCT,
                   interpolation: str = "bicubic") -> DataBundle:
    """Train and val datasets for ``data``.

    Args:
        data: ``"digits"`` or a directory with ``train/`` and ``val/`` ImageFolder trees.
        img_size: model input side.
        in_chans: input channels (digits: 1 or 3; ImageFolder images are RGB, 3).
        strict: raise on an unreadable image instead of skipping it.
        aug: keyword arguments for :func:`train_transform` (or :func:`digits_train_transform` for digits).
        crop_pct: eval centre-crop fraction.
        interpolation: resize interpolation.

    Raises:
        FileNotFoundError: missing or empty data directory.
        ValueError: train and val trees with different classes.
    """
    aug = dict(aug or {})
    if is_digits(data):
        return DataBundle(DigitsDataset("train", img_size, in_chans, transform=digits_train_transform(**aug)),
                          DigitsDataset("val", img_size, in_chans), list(DIGITS_CLASSES), True)
    if in_chans != 3:
        raise ValueError(f"ImageFolder data is read as RGB; in_chans must be 3, got {in_chans}.")
    dirs = check_image_folder(data)
    train = RobustImageFolder(dirs["train"], train_transform(img_size, interpolation=interpolation, **aug), strict)
    val = RobustImageFolder(dirs["val"], eval_transform(img_size, crop_pct, interpolation), strict)
    if train.classes != val.classes:
        only_t = sorted(set(train.classes) - set(val.classes))
        only_v = sorted(set(val.classes) - set(train.classes))
        raise ValueError(
            f"train/ and val/ in {data} have different classes (train-only: {only_t[:10]}, val-only: {only_v[:10]}); "
            "both must hold the same class folders so label indices agree."
        )
    return DataBundle(train, val, list(train.classes), False)
