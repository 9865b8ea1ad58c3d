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
            loaded strictly; None keeps the random initialization.
        fused: re-parameterize the trunk for inference (outputs equal within float rounding).
        device: where the model lives.
        config: architecture and tracking settings (default: the published EdgeTAM).

    Raises:
        CheckpointError: the checkpoint is not an EdgeTAM checkpoint or its keys or shapes differ.
    """
    model = EdgeTAM(config)
    if checkpoint is not None:
        sd = read_edgetam_checkpoint(checkpoint)
        try:
            model.load_state_dict(sd, strict=True)
        except RuntimeError as e:
            raise CheckpointError(f"the checkpoint does not match EdgeTAM's layout: {e}") from None
    model.eval()
    if fused:
        fuse_edgetam(model)
    return model.to(device)
