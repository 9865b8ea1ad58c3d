"""``build_edgetam``: EdgeTAM with random weights or a checkpoint loaded strictly, optionally with a fused trunk."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from repvit.io import CheckpointError
from repvit.models import fuse_model

from .checkpoint import read_edgetam_checkpoint
from .config import EdgeTamConfig
from .model import EdgeTAM

__all__ = ["build_edgetam", "fuse_edgetam", "is_fused_edgetam"]


def fuse_edgetam(model: EdgeTAM) -> EdgeTAM:
    """Re-parameterize the RepViT trunk in place (every BatchNorm folded, RepVGG branches merged); returns
    ``model``. The rest of EdgeTAM has nothing to fuse."""
    body = model.image_encoder.trunk.body
    model.image_encoder.trunk.body = fuse_model(body, inplace=True)
    return model


def is_fused_edgetam(model: EdgeTAM) -> bool:
    """Whether the trunk holds no BatchNorm (its deploy form)."""
    return not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.image_encoder.trunk.modules())


def _has_fused_trunk(sd: Mapping[str, Any]) -> bool:
    trunk = [k for k in sd if k.startswith("image_encoder.trunk.body.")]
    return bool(trunk) and not any(".bn." in k for k in trunk)


def build_edgetam(
    checkpoint: str | os.PathLike | Mapping[str, Any] | None = None,
    *,
    fused: bool = False,
    device: str | torch.device = "cpu",
    config: EdgeTamConfig | None = None,
) -> EdgeTAM:
    """Build EdgeTAM in eval mode. Nothing is downloaded: the trunk starts random, as does everything else.

    Args:
        checkpoint: an ``edgetam.pt`` file (``{"model": state_dict}`` with the authors' names) or such a dict,
            loaded strictly; None keeps the random initialization. A checkpoint saved from a fused model
            (:func:`~repvit.sam.sam2.save_edgetam`) loads into the fused form.
        fused: re-parameterize the trunk for inference (outputs equal within float rounding).
        device: where the model lives.
        config: architecture and tracking settings (default: the published EdgeTAM).

    Raises:
        CheckpointError: the checkpoint is not an EdgeTAM checkpoint or its keys or shapes differ.
    """
    model = EdgeTAM(config)
    if checkpoint is not None:
        sd = read_edgetam_checkpoint(checkpoint)
        if _has_fused_trunk(sd):  # saved from a fused model: load it in deploy form
            fuse_edgetam(model.eval())
        try:
            model.load_state_dict(sd, strict=True)
        except RuntimeError as e:
            raise CheckpointError(f"the checkpoint does not match EdgeTAM's layout: {e}") from None
    model.eval()
    if fused:
        fuse_edgetam(model)
    # channels-last convolutions are faster on CPU (oneDNN); the maps downstream follow the trunk's layout
    model.image_encoder.to(memory_format=torch.channels_last)
    return model.to(device)
