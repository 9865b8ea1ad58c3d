"""Image files on disk: :func:`list_images`, the inputs of every ``predict`` command."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["IMAGE_EXTENSIONS", "list_images"]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})


def list_images(path: str | os.PathLike) -> list[Path]:
    """``path`` itself if it is a file, else the image files under the directory (recursively, sorted)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p} does not exist.")
    if p.is_file():
        return [p]
    files = sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_EXTENSIONS and q.is_file())
    if not files:
        raise FileNotFoundError(f"no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) under {p}.")
    return files
