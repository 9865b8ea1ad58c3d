"""ImageFolder trees (``DATA/train/CLASS/*.jpg``, ``DATA/val/CLASS/*.jpg``) with clear errors and bad-image handling.

Built on :class:`torchvision.datasets.ImageFolder`. An image that cannot be read is either skipped and counted
(default: the sample comes back as a :class:`BadSample` marker that :func:`skip_bad_collate` drops, so the count
survives worker processes) or, with ``strict=True``, raises an error naming the file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import default_collate
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

__all__ = ["BadSample", "RobustImageFolder", "check_image_folder", "skip_bad_collate"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BadSample:
    """Returned instead of ``(image, label)`` for an unreadable image when not strict."""

    path: str
    error: str


class RobustImageFolder(ImageFolder):
    """:class:`~torchvision.datasets.ImageFolder` that skips unreadable images (or raises with ``strict``)."""

    def __init__(self, root: str | Path, transform=None, strict: bool = False):
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"data directory {root} does not exist.")
        try:
            super().__init__(str(root), transform=transform)
        except FileNotFoundError as e:  # torchvision: no class folders, or no images in them
            raise FileNotFoundError(
                f"{root} holds no images: expected one sub-folder per class with image files "
                f"({', '.join(sorted(IMG_EXTENSIONS)[:5])}, ...). torchvision said: {e}"
            ) from None
        self.strict = strict

    def __getitem__(self, index: int):
        path, target = self.samples[index]
        try:
            img = self.loader(path)
            if self.transform is not None:
                img = self.transform(img)
        except Exception as e:  # noqa: BLE001 - any decode failure of a user's file
            if self.strict:
                raise RuntimeError(
                    f"cannot read image {path} ({type(e).__name__}: {e}); fix or delete it, or drop --strict-data "
                    "to skip unreadable images."
                ) from e
            return BadSample(path, f"{type(e).__name__}: {e}")
        return img, target


def skip_bad_collate(batch: list) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Collate ``(image, label)`` pairs, dropping :class:`BadSample` markers; returns ``(x, y, bad_paths)``."""
    good = [b for b in batch if not isinstance(b, BadSample)]
    bad = [b.path for b in batch if isinstance(b, BadSample)]
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.long), bad
    x, y = default_collate(good)
    return x, y, bad


def check_image_folder(root: str | Path, splits: tuple[str, ...] = ("train", "val")) -> dict[str, Path]:
    """Check that ``root`` has the given split folders and return them.

    Raises:
        FileNotFoundError: a missing ``root`` or split folder, or one without class folders.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(
            f"data directory {root} does not exist. Give an ImageFolder tree with {'/ and '.join(splits)}/ "
            "sub-folders, or --data digits for the built-in set."
        )
    if not root.is_dir():
        raise FileNotFoundError(f"--data {root} is a file; give a directory with {'/ and '.join(splits)}/ inside.")
    out = {}
    for s in splits:
        d = root / s
        if not d.is_dir():
            raise FileNotFoundError(f"{root} has no {s}/ folder; expected {root}/{s}/CLASS_NAME/IMAGE files.")
        if not any(p.is_dir() for p in d.iterdir()):
            raise FileNotFoundError(f"{d} is empty: expected one sub-folder per class, each holding images.")
        out[s] = d
    return out
