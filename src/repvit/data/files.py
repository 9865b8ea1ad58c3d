"""Image files on disk: :func:`list_images`, the inputs of every ``predict`` command."""

from __future__ import annotations

import os
from pathlib import Path

from torchvision.datasets.folder import IMG_EXTENSIONS

__all__ = ["IMAGE_EXTENSIONS", "list_images"]

# the image files every command reads: torchvision's ImageFolder extensions and GIF (PIL reads its first frame)
IMAGE_EXTENSIONS: tuple[str, ...] = (*IMG_EXTENSIONS, ".gif")


def list_images(path: str | os.PathLike) -> list[Path]:
    """``path`` itself if it is a file, else the image files under the directory (recursively, sorted)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p} does not exist.")
    if p.is_file():
        return [p]
    files = sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_EXTENSIONS and q.is_file())
    if not files:
        raise FileNotFoundError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) under {p}.")
    return files
