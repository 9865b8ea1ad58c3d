"""RepViT models: layers, the network, the variant table, the registry, fusing and checkpoint formats."""

from repvit.io import CheckpointError

from .checkpoint import (
    CheckpointMismatchError,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from .config import PUBLISHED, VARIANTS, BlockConfig, PublishedInfo, RepViTConfig
from .factory import create_model
from .fuse import fuse_model, is_fused
from .registry import ModelEntry, UnknownModelError, get_model_entry, list_models, register_model
from .repvit import RepViT, RepViTFeatures

__all__ = [
    "CheckpointError",
    "CheckpointMismatchError",
    "load_checkpoint",
    "read_checkpoint",
    "save_checkpoint",
    "create_model",
    "PUBLISHED",
    "VARIANTS",
    "BlockConfig",
    "PublishedInfo",
    "RepViTConfig",
    "fuse_model",
    "is_fused",
    "ModelEntry",
    "UnknownModelError",
    "get_model_entry",
    "list_models",
    "register_model",
    "RepViT",
    "RepViTFeatures",
]
