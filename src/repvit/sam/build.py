"""The older path of :mod:`repvit.sam.model` (the SAM builders), kept so that existing imports work."""

from .model import (  # noqa: F401
    PROMPT_EMBED_DIM,
    SAM_WEIGHT_NAMES,
    build_repvit_sam,
    build_sam_from_encoder,
    encoder_config,
    is_fused_sam,
    resolve_sam_checkpoint,
)
from .model import __all__ as __all__  # noqa: F401
