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


# the dense loaders, imported on first use so that ``import repvit`` does not import the dense packages
_DENSE_LOADERS = {"load_segmenter": "repvit.dense.segmentation.authors",
                  "load_detector": "repvit.dense.detection.authors"}


def __getattr__(name: str):
    if name in _DENSE_LOADERS:
        import importlib

        return getattr(importlib.import_module(_DENSE_LOADERS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    "load_detector",
    "load_segmenter",
    "save_checkpoint",
    "__version__",
]
