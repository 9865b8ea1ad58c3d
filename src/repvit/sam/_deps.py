"""The ``segment-anything`` dependency, imported with an error that names the ``sam`` extra."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require_sam"]


def require_sam(purpose: str = "RepViT-SAM") -> ModuleType:
    """Import ``segment_anything`` or raise an ImportError saying how to install it."""
    try:
        return importlib.import_module("segment_anything")
    except ImportError as e:
        raise ImportError(
            f"segment-anything is needed for {purpose} but is not installed: pip install 'repvit-pytorch[sam]'"
        ) from e
