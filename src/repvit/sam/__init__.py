"""The segment-anything model library: RepViT-SAM and EdgeSAM, SAM (``segment-anything``) with a
re-parameterizable RepViT image encoder.

The encoder is built here from repvit's modules; the prompt encoder, mask decoder, predictor and automatic mask
generator are ``segment-anything``'s own.

* :mod:`.encoder`    — :class:`RepViTSamEncoder` (RepViT trunk + neck), the variant tables
* :mod:`.checkpoint` — the checkpoint formats (the authors' RepViT-SAM, EdgeSAM, SAM's decoder, ours)
* :mod:`.model`      — :func:`build_repvit_sam`, :func:`build_sam_from_encoder`
* :mod:`.preprocess` — SAM's resize, normalisation and padding
* :mod:`.prompts`    — point and box prompts: parsing and checks
* :mod:`.predict`    — prompted and automatic masks, overlays, PNGs
* :mod:`.session`    — :class:`SamSession`: an embedding cache, clicks on cached embeddings
* :mod:`.export`     — ONNX (encoder, prompt decoder) and Core ML
* :mod:`.app`        — the Gradio page (``repvit sam app``)
* :mod:`.sam2`       — the SAM 2 family (EdgeTAM)

Training the encoders (``repvit sam distill``) is a task of its own: :mod:`repvit.sam_distill`.
"""

from .checkpoint import SamCheckpoint, read_sam_checkpoint, read_sam_decoder, save_repvit_sam
from .encoder import EDGE_SAM_VARIANTS, SAM_VARIANTS, RepViTSamConfig, RepViTSamEncoder, get_sam_config
from .model import SAM_WEIGHT_NAMES, build_repvit_sam, build_sam_from_encoder, encoder_config, is_fused_sam
from .sam2 import (
    EdgeTAM,
    EdgeTamImagePredictor,
    EdgeTamVideoPredictor,
    build_edgetam,
    build_edgetam_video_predictor,
)

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
    "EdgeTAM",
    "EdgeTamImagePredictor",
    "EdgeTamVideoPredictor",
    "build_edgetam",
    "build_edgetam_video_predictor",
]
