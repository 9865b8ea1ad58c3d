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


def load_segmenter(name_or_path, *, fused: bool = False):
    """A Semantic FPN (eval mode) from a file or a published name: the authors' mmseg files (``repvit_m1_1_ade20k``,
    ...) or ``repvit segment train`` checkpoints. ``fused``: the deploy form (same logits).

    See :func:`repvit.dense.authors.load_segmenter`.
    """
    from .dense.authors import load_segmenter as _load

    return _load(name_or_path, fused=fused)


def load_detector(name_or_path, *, fused: bool = False):
    """A torchvision detector (eval mode) from a file or a published name: the authors' mmdet Mask R-CNN files
    (``repvit_m1_1_coco``, ...) or ``repvit detect train`` checkpoints. ``fused``: re-parameterized backbone.

    See :func:`repvit.dense.authors.load_detector`.
    """
    from .dense.authors import load_detector as _load

    return _load(name_or_path, fused=fused)


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
