"""Re-parameterization: turn a trained multi-branch model into its deploy form."""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from .layers import FusableMixin

__all__ = ["fuse_model", "is_fused"]


def _fuse_children(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, FusableMixin):
            setattr(module, name, child.fuse())
        else:
            _fuse_children(child)


@torch.no_grad()
def fuse_model(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Return the deploy form of ``model``: every conv+BN, RepVGGDW and BN+Linear head folded into one conv or
    Linear layer, and the two distillation heads averaged into one.

    The result keeps the model's dtype and device (fusing computes in that dtype), is in eval mode, and fusing it
    again changes nothing. Works on classifiers, ``features_only`` backbones and any module containing RepViT
    layers; the ``pretrained_cfg`` of the result names the fused first conv and classifier.

    Args:
        model: a model built by :func:`repvit.create_model` (or any module with fusable layers).
        inplace: modify ``model`` itself instead of a copy.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"fuse_model expects an nn.Module, got {type(model).__name__}.")
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    if isinstance(model, FusableMixin):
        return model.fuse()
    _fuse_children(model)
    if getattr(model, "pretrained_cfg", None):
        from .pretrained import refresh_pretrained_cfg

        refresh_pretrained_cfg(model)  # fused layers have other names (stem.conv1, head)
    return model


def is_fused(model: nn.Module) -> bool:
    """True when no fusable layer and no BatchNorm is left in ``model``."""
    return not any(isinstance(m, (FusableMixin, nn.modules.batchnorm._BatchNorm)) for m in model.modules())
