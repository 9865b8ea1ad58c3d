"""Bundled class names: ImageNet-1k (the order of the published checkpoints' heads)."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

__all__ = ["imagenet_class_names"]


@lru_cache(maxsize=1)
def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names, in class-index order."""
    text = resources.files("repvit.data").joinpath("imagenet_classes.json").read_text(encoding="utf-8")
    names = json.loads(text)
    if len(names) != 1000:
        raise RuntimeError(f"bundled imagenet_classes.json has {len(names)} names, expected 1000; reinstall repvit.")
    return names
