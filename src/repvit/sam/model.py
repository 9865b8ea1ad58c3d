"""``build_repvit_sam``: a ``segment_anything`` ``Sam`` whose image encoder is RepViT.

Only the image encoder is ours; the prompt encoder, the mask decoder (two-way transformer) and the pixel mean/std
are ``segment_anything``'s, built with SAM's published hyper-parameters, so ``SamPredictor``,
``SamAutomaticMaskGenerator`` and ``SamOnnxModel`` work on the result unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch.nn as nn

import repvit.weights
from repvit.io import CheckpointError
from repvit.runtime import require

from .checkpoint import SamCheckpoint, match_state_dict, read_sam_checkpoint, read_sam_decoder
from .encoder import RepViTSamConfig, RepViTSamEncoder, get_sam_config

__all__ = ["build_repvit_sam", "build_sam_from_encoder", "encoder_config", "is_fused_sam", "PROMPT_EMBED_DIM",
           "SAM_WEIGHT_NAMES", "resolve_sam_checkpoint"]

PROMPT_EMBED_DIM = 256  # SAM's prompt / decoder width
# published weights build_repvit_sam takes by name (resolved by repvit.weights.resolve_weights)
SAM_WEIGHT_NAMES = ("edge_sam", "edge_sam_3x", "repvit_sam")


def resolve_sam_checkpoint(
    checkpoint: str | os.PathLike | Mapping[str, Any],
) -> Path | Mapping[str, Any]:
    """``checkpoint`` itself when it is a dict; otherwise its local file through :func:`repvit.weights.resolve_weights`
    (a path, a URL, or a published SAM weight name: ``edge_sam``, ``edge_sam_3x``, ``repvit_sam``).

    Raises:
        CheckpointError: a missing file, or an encoder variant name passed as a checkpoint.
        ValueError: an unknown name, or published weights that are not SAM's.
    """
    if isinstance(checkpoint, Mapping):
        return checkpoint
    try:
        found = repvit.weights.lookup(checkpoint, kind="sam")
    except repvit.weights.UnknownWeightsError:
        try:
            get_sam_config(str(checkpoint))
        except (ValueError, KeyError):
            is_variant = False
        else:
            is_variant = True
        if not is_variant:
            raise
        raise CheckpointError(f"{checkpoint!r} is an encoder variant, not a checkpoint: pass variant={checkpoint!r} "
                              f"(CLI: --variant) for random weights, or a weight name "
                              f"({', '.join(SAM_WEIGHT_NAMES)}).") from None
    if getattr(found, "layout", None) == "edgetam":
        raise CheckpointError(f"{checkpoint!r} is EdgeTAM (SAM 2 family): build it with repvit.sam.build_edgetam "
                              "(CLI: repvit sam predict|track --checkpoint edgetam).")
    return repvit.weights.resolve_weights(checkpoint)


def build_sam_from_encoder(encoder: nn.Module) -> nn.Module:
    """Wrap an image encoder (with ``img_size``, output ``(N, 256, img_size/16, img_size/16)``) in SAM: its
    ``PromptEncoder``, ``MaskDecoder`` with a depth-2 ``TwoWayTransformer`` (dim 256, MLP 2048, 8 heads), 3
    multimask outputs, IoU head depth 3 / width 256, and ``Sam``'s default pixel mean/std."""
    sa = require("segment_anything", "RepViT-SAM")
    from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer

    img = int(encoder.img_size)
    side = img // 16
    sam = sa.modeling.Sam(
        image_encoder=encoder,
        prompt_encoder=PromptEncoder(embed_dim=PROMPT_EMBED_DIM, image_embedding_size=(side, side),
                                     input_image_size=(img, img), mask_in_chans=16),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=PROMPT_EMBED_DIM, mlp_dim=2048, num_heads=8),
            transformer_dim=PROMPT_EMBED_DIM,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
    )  # pixel_mean / pixel_std: Sam's own defaults
    return sam.eval()


def build_repvit_sam(
    checkpoint: str | os.PathLike | Mapping[str, Any] | None = None,
    fused: bool = False,
    variant: str | RepViTSamConfig | None = None,
    *,
    img_size: int | None = None,
    decoder_checkpoint: str | os.PathLike | None = None,
    drop_path_rate: float = 0.0,
    upsample_mode: str | None = None,
) -> nn.Module:
    """Build RepViT-SAM, optionally loading a checkpoint, and return a ``segment_anything.modeling.Sam``.

    Args:
        checkpoint: the authors' ``repvit_sam.pt``, EdgeSAM's ``edge_sam.pth`` (recognised by its keys), ours
            (``.safetensors`` from :func:`save_repvit_sam` or ``repvit sam export``), a ``repvit sam distill``
            training checkpoint (encoder only), or a published weight name (``edge_sam``, ``edge_sam_3x``,
            ``repvit_sam``; see :func:`resolve_sam_checkpoint`). Loading is strict.
        fused: return the re-parameterized (deploy-form) encoder; needed for fused checkpoints.
        variant: the encoder (``repvit_sam_m2_3``, ``m0_9``, ``edge_sam``, a :class:`RepViTSamConfig`); by default
            the checkpoint's, else RepViT-M2.3 (the authors' model).
        img_size: input side (default the checkpoint's, else 1024); smaller sizes make small, fast models.
        decoder_checkpoint: a SAM checkpoint whose prompt encoder and mask decoder are used (e.g. the teacher's
            ``sam_vit_h.pth``); required when ``checkpoint`` holds only an encoder, and replaces its decoder otherwise.
        drop_path_rate: stochastic depth in the trunk (training).
        upsample_mode: the fusion neck's upsampling (EdgeSAM: ``"bicubic"``, the default; ``"bilinear"`` as in its
            exports).

    Raises:
        CheckpointError: an unreadable file or unknown layout; a fused checkpoint without ``fused=True``.
        CheckpointMismatchError: keys or shapes that do not match the model (listed in the message).
    """
    ckpt = None if checkpoint is None else read_sam_checkpoint(resolve_sam_checkpoint(checkpoint))
    if ckpt is not None and ckpt.cfg is not None and variant is None:
        cfg = get_sam_config(ckpt.cfg, img_size=img_size, upsample_mode=upsample_mode)
    else:
        cfg = get_sam_config(variant, img_size=img_size, upsample_mode=upsample_mode)
    sam = build_sam_from_encoder(RepViTSamEncoder(cfg, drop_path_rate=drop_path_rate))
    if ckpt is None:
        if decoder_checkpoint is not None:
            match_state_dict(_DecoderView(sam), read_sam_decoder(decoder_checkpoint), "the decoder checkpoint")
    else:
        _load_checkpoint(sam, ckpt, fused, decoder_checkpoint)
    if fused and (ckpt is None or not ckpt.fused):  # a fused checkpoint was loaded into a fused encoder
        sam.image_encoder.fuse(inplace=True)
    return sam.eval()


def _load_checkpoint(sam: nn.Module, ckpt: SamCheckpoint, fused: bool,
                     decoder_checkpoint: str | os.PathLike | None) -> None:
    """Load ``ckpt`` strictly into ``sam`` (fusing its encoder first when the checkpoint is fused), with the prompt
    encoder and mask decoder from ``decoder_checkpoint`` when given."""
    if ckpt.fused and not fused:
        raise CheckpointError("this RepViT-SAM checkpoint holds a fused (deploy-form) encoder; pass fused=True "
                              "(CLI: --fused) to build the model it belongs to.")
    if ckpt.fused:
        sam.image_encoder.fuse(inplace=True)
    sd = dict(ckpt.state_dict)
    if decoder_checkpoint is not None:
        sd = {k: v for k, v in sd.items() if k.startswith("image_encoder.")}
        sd.update(read_sam_decoder(decoder_checkpoint))
    elif ckpt.encoder_only:
        raise CheckpointError(
            f"this {ckpt.source_format} checkpoint holds only the image encoder; pass decoder_checkpoint= (CLI: "
            "--decoder-checkpoint) with a SAM checkpoint (e.g. the teacher's sam_vit_h.pth) for the prompt encoder "
            "and mask decoder.")
    match_state_dict(sam, sd, f"the {ckpt.source_format} checkpoint")


class _DecoderView(nn.Module):
    """The prompt encoder and mask decoder of a Sam, for loading just those."""

    def __init__(self, sam: nn.Module):
        super().__init__()
        self.prompt_encoder, self.mask_decoder = sam.prompt_encoder, sam.mask_decoder


def encoder_config(sam: nn.Module) -> RepViTSamConfig:
    """The :class:`RepViTSamConfig` of a RepViT-SAM ``Sam``."""
    cfg = getattr(sam.image_encoder, "cfg", None)
    if not isinstance(cfg, RepViTSamConfig):
        raise TypeError("expected a Sam whose image_encoder is a RepViTSamEncoder (see build_repvit_sam).")
    return cfg


def is_fused_sam(sam: nn.Module) -> bool:
    """Whether a RepViT-SAM's encoder is in deploy form."""
    from repvit.models import is_fused

    return is_fused(sam.image_encoder)
