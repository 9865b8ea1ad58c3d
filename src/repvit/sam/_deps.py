"""The optional dependencies of the SAM library, imported with an error that names the pip extra to install:
``segment-anything`` (the ``sam`` extra) and ``gradio`` (the ``app`` extra)."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require_sam", "require_gradio"]


def _require(module: str, package: str, extra: str, purpose: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"{package} is needed for {purpose} but is not installed: pip install "
                          f"'repvit-pytorch[{extra}]'") from e


def require_sam(purpose: str = "RepViT-SAM") -> ModuleType:
    """Import ``segment_anything`` or raise an ImportError naming the ``sam`` extra."""
    return _require("segment_anything", "segment-anything", "sam", purpose)


def require_gradio(purpose: str = "the RepViT-SAM app") -> ModuleType:
    """Import ``gradio`` or raise an ImportError naming the ``app`` extra."""
    return _require("gradio", "gradio", "app", purpose)
