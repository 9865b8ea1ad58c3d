"""RepViT-SAM and EdgeSAM: SAM (``segment-anything``) with a re-parameterizable RepViT image encoder.

The encoder is built here from repvit's modules; the prompt encoder, mask decoder, predictor and automatic mask
generator are ``segment-anything``'s own. :func:`train` (:mod:`repvit.sam.task`) distils a student on the shared
training engine (``repvit sam distill``).
"""

from .checkpoint import SamCheckpoint, read_sam_checkpoint, read_sam_decoder, save_repvit_sam
from .encoder import EDGE_SAM_VARIANTS, SAM_VARIANTS, RepViTSamConfig, RepViTSamEncoder, get_sam_config
from .model import SAM_WEIGHT_NAMES, build_repvit_sam, build_sam_from_encoder, encoder_config, is_fused_sam

__all__ = [
    "build_repvit_sam",
    "build_sam_from_encoder",
    "encoder_config",
    "is_fused_sam",
    "SAM_WEIGHT_NAMES",
    "SamCheckpoint",
    "read_sam_checkpoint",
    "read_sam_decoder",
    "save_repvit_sam",
    "RepViTSamConfig",
    "RepViTSamEncoder",
    "SAM_VARIANTS",
    "EDGE_SAM_VARIANTS",
    "get_sam_config",
    "train",
]


def __getattr__(name: str):
    # the entry point, imported on first use so that importing the package stays light
    if name == "train":
        from .task import train

        return train
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
