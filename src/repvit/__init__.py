"""repvit: RepViT (CVPR 2024) models, checkpoints, fusing, training and deployment."""

# the roadmap_* models are registered when the registry is first asked for them (repvit.models.registry), so
# ``import repvit`` does not import the roadmap package
from .models import (
    CheckpointError,
    CheckpointMismatchError,
    RepViT,
    RepViTConfig,
    RepViTFeatures,
    create_model,
    fuse_model,
    get_model_entry,
    list_models,
    load_checkpoint,
    save_checkpoint,
)

__version__ = "0.1.0"
__all__ = [
    "CheckpointError",
    "CheckpointMismatchError",
    "RepViT",
    "RepViTConfig",
    "RepViTFeatures",
    "create_model",
    "fuse_model",
    "get_model_entry",
    "list_models",
    "load_checkpoint",
    "save_checkpoint",
    "__version__",
]
