"""Compatibility path: the engine's config lives in :mod:`repvit.engine.config`, classification's
:class:`TrainConfig` (and :func:`load_config` defaulting to it) in :mod:`repvit.classification.config`."""

from repvit.classification.config import TrainConfig, load_config
from repvit.engine.config import EngineConfig, find_recipe, parse_overrides, recipe_dir

__all__ = ["EngineConfig", "TrainConfig", "load_config", "parse_overrides", "find_recipe", "recipe_dir"]
