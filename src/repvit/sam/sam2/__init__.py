"""EdgeTAM (SAM 2 with a RepViT trunk and a spatial perceiver): the model, its builder and checkpoint reader, and
the image predictor."""

from .build import build_edgetam, fuse_edgetam, is_fused_edgetam
from .checkpoint import read_edgetam_checkpoint, save_edgetam
from .config import EdgeTamConfig
from .image_predictor import EdgeTamImagePredictor
from .model import EdgeTAM

__all__ = [
    "EdgeTAM",
    "EdgeTamConfig",
    "EdgeTamImagePredictor",
    "build_edgetam",
    "fuse_edgetam",
    "is_fused_edgetam",
    "read_edgetam_checkpoint",
    "save_edgetam",
]
