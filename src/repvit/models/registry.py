"""Model registry: every buildable network has a name, a builder and its metadata."""

from __future__ import annotations

import difflib
import fnmatch
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn

__all__ = ["ModelEntry", "register_model", "list_models", "get_model_entry", "UnknownModelError"]


class UnknownModelError(ValueError):
    """Raised for a model name that is not registered; the message lists the closest names."""


@dataclass(frozen=True)
class ModelEntry:
    """A registered model.

    Attributes:
        name: registry name, e.g. ``repvit_m0_9``.
        builder: ``builder(**kwargs) -> nn.Module``; accepts at least ``num_classes``, ``in_chans``,
            ``distillation``, ``drop_rate`` and ``drop_path_rate``.
        config: the architecture config (a frozen dataclass with ``to_dict``).
        description: one line for ``repvit list``.
        published: published figures (see :class:`repvit.models.config.PublishedInfo`), if any.
        supports_features: whether ``features_only=True`` is supported.
    """

    name: str
    builder: Callable[..., nn.Module]
    config: Any
    description: str = ""
    published: Any = None
    supports_features: bool = True
    tags: tuple[str, ...] = field(default_factory=tuple)


_REGISTRY: dict[str, ModelEntry] = {}

# Packages above the model library that register more models when imported, imported here by name on first need
# (list_models, or a lookup the RepViT variants do not answer): ``import repvit`` does not import them, and the model
# library has no import-time dependency on them.
_LAZY_PACKAGES: tuple[str, ...] = ("repvit.roadmap",)
_lazy_loaded = False


def register_model(entry: ModelEntry) -> ModelEntry:
    """Add ``entry`` to the registry. Registering a name twice is an error."""
    if entry.name in _REGISTRY:
        raise ValueError(f"model {entry.name!r} is already registered; pick another name.")
    _REGISTRY[entry.name] = entry
    return entry


def _ensure_loaded(everything: bool = True) -> None:
    """Register the RepViT variants (importing :mod:`.variants`) and, with ``everything``, the models of
    :data:`_LAZY_PACKAGES` (the roadmap_* models)."""
    global _lazy_loaded
    from . import variants  # noqa: F401

    if everything and not _lazy_loaded:
        _lazy_loaded = True
        for package in _LAZY_PACKAGES:
            importlib.import_module(package)


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching the shell-style ``pattern`` (e.g. ``'repvit_m1*'``), sorted."""
    _ensure_loaded(everything=not pattern.startswith("repvit_"))
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def get_model_entry(name: str) -> ModelEntry:
    """The registry entry for ``name``; ``m0_9`` is accepted for ``repvit_m0_9``."""
    if not isinstance(name, str):
        raise TypeError(f"model name must be a string, got {type(name).__name__}.")
    key = name.strip().lower().replace("-", "_").replace(".", "_")
    for everything in (False, True):  # the RepViT variants first; the other packages only when they are asked for
        _ensure_loaded(everything)
        for candidate in (key, f"repvit_{key}"):
            if candidate in _REGISTRY:
                return _REGISTRY[candidate]
    close = difflib.get_close_matches(key, list(_REGISTRY), n=5, cutoff=0.5)
    close += [n for n in difflib.get_close_matches(f"repvit_{key}", list(_REGISTRY), n=5, cutoff=0.6) if n not in close]
    hint = f" Did you mean: {', '.join(close[:5])}?" if close else ""
    raise UnknownModelError(f"unknown model {name!r}.{hint} Run `repvit list` to see all {len(_REGISTRY)} models.")
