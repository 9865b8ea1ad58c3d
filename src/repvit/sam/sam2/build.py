"""``build_edgetam``: EdgeTAM with random weights or a checkpoint loaded strictly, optionally with a fused trunk."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

import repvit.weights
from repvit.io import CheckpointError
from repvit.models import fuse_model

from .checkpoint import read_edgetam_checkpoint
from .config import EdgeTamConfig
from .model import EdgeTAM

__all__ = ["build_edgetam", "fuse_edgetam", "is_fused_edgetam", "resolve_edgetam_checkpoint"]


def fuse_edgetam(model: EdgeTAM) -> EdgeTAM:
    """Re-parameterize EdgeTAM for inference in place; returns ``model``.

    The RepViT trunk loses every BatchNorm and RepVGG branch (:func:`repvit.models.fuse_model`). The neck's 1x1
    convolutions of the stride-4 and stride-8 maps are followed only by the mask decoder's 1x1 ``conv_s0`` /
    ``conv_s1`` (no top-down sum reaches those levels), so each pair becomes one convolution straight to the
    decoder's width (48 -> 32 and 96 -> 64 channels instead of 48 -> 256 -> 32 and 96 -> 256 -> 64) and the
    decoder's convolutions become identities.
    """
    body = model.image_encoder.trunk.body
    model.image_encoder.trunk.body = fuse_model(body, inplace=True)
    _fold_high_res_projections(model)
    return model


@torch.no_grad()
def _fold_high_res_projections(model: EdgeTAM) -> None:
    neck, dec = model.image_encoder.neck, model.sam_mask_decoder
    if not getattr(dec, "use_high_res_features", False) or {0, 1} & set(neck.fpn_top_down_levels):
        return
    last = len(neck.convs) - 1
    for level, name in ((0, "conv_s0"), (1, "conv_s1")):
        second = getattr(dec, name)
        if not isinstance(second, torch.nn.Conv2d):
            continue  # folded already
        first = neck.convs[last - level].conv
        w2 = second.weight.flatten(1)
        conv = torch.nn.Conv2d(first.in_channels, second.out_channels, kernel_size=1).to(first.weight)
        conv.weight.copy_((w2 @ first.weight.flatten(1)).view_as(conv.weight))
        conv.bias.copy_(w2 @ first.bias + second.bias)
        neck.convs[last - level].conv = conv
        setattr(dec, name, torch.nn.Identity())


def is_fused_edgetam(model: EdgeTAM) -> bool:
    """Whether the trunk holds no BatchNorm (its deploy form)."""
    return not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.image_encoder.trunk.modules())


def _has_fused_trunk(sd: Mapping[str, Any]) -> bool:
    trunk = [k for k in sd if k.startswith("image_encoder.trunk.body.")]
    return bool(trunk) and not any(".bn." in k for k in trunk)


def resolve_edgetam_checkpoint(checkpoint: str | os.PathLike | Mapping[str, Any]) -> Path | Mapping[str, Any]:
    """``checkpoint`` itself when it is a dict; otherwise its local file through :func:`repvit.weights.resolve_weights`
    (a path, a URL, or the published name ``edgetam``, downloaded once and cached).

    Raises:
        CheckpointError: published weights of another SAM model (``edge_sam``, ``repvit_sam``), or a missing file.
        ValueError: an unknown name, or published weights that are not SAM's.
    """
    if isinstance(checkpoint, Mapping):
        return checkpoint
    found = repvit.weights.lookup(checkpoint, kind="sam")
    if isinstance(found, repvit.weights.WeightsEntry) and found.layout not in (None, "edgetam"):
        raise CheckpointError(f"{checkpoint!r} is {found.description.split(' (')[0]}, not EdgeTAM: load it with "
                              "repvit.sam.build_repvit_sam; EdgeTAM's published weights are 'edgetam'.")
    return repvit.weights.resolve_weights(checkpoint)


def build_edgetam(
    checkpoint: str | os.PathLike | Mapping[str, Any] | None = None,
    *,
    fused: bool = False,
    device: str | torch.device = "cpu",
    config: EdgeTamConfig | None = None,
) -> EdgeTAM:
    """Build EdgeTAM in eval mode. Nothing is downloaded: the trunk starts random, as does everything else.

    Args:
        checkpoint: the published name ``edgetam``, an ``edgetam.pt`` file or URL (``{"model": state_dict}`` with
            the authors' names) or such a dict, loaded strictly; None keeps the random initialization. A
            checkpoint saved from a fused model (:func:`~repvit.sam.sam2.save_edgetam`) loads into the fused form.
        fused: re-parameterize the trunk for inference (outputs equal within float rounding).
        device: where the model lives.
        config: architecture and tracking settings (default: the published EdgeTAM).

    Raises:
        CheckpointError: the checkpoint is not an EdgeTAM checkpoint or its keys or shapes differ.
    """
    model = EdgeTAM(config)
    if checkpoint is not None:
        sd = read_edgetam_checkpoint(resolve_edgetam_checkpoint(checkpoint))
        if _has_fused_trunk(sd):  # saved from a fused model: load it in deploy form
            fuse_edgetam(model.eval())
        try:
            model.load_state_dict(sd, strict=True)
        except RuntimeError as e:
            raise CheckpointError(f"the checkpoint does not match EdgeTAM's layout: {e}") from None
    model.eval()
    if fused:
        fuse_edgetam(model)
    # channels-last convolutions are faster on CPU (oneDNN), and LayerNorm2d over channels-last maps is one fused
    # layer_norm; the maps downstream follow their inputs' layout
    model.image_encoder.to(memory_format=torch.channels_last)
    model.memory_encoder.to(memory_format=torch.channels_last)
    return model.to(device)
