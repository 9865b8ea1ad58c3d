"""The RepViT backbone for dense prediction, its checkpoint loading, and the FPN neck.

Conventions (shared by segmentation and detection):

* :class:`DenseBackbone` returns an ``OrderedDict[str, Tensor]`` with keys ``"0".."3"`` (those in
  ``out_indices``), in order of increasing stride. ``out_channels_list`` and ``strides`` describe them.
* Two tap conventions (the authors' segmentation and detection code), both at strides 4 / 8 / 16 / 32 with the
  four stage widths:

  - ``taps="stage"`` (detection): the outputs of ``stages[0..3]``.
  - ``taps="segment"`` (the authors' segmentation taps): for ``s < 3`` the output one block later, after
    ``stages[s+1].downsample.pre_block`` (same width and stride as ``stages[s]``); for ``s = 3`` the last stage's
    output. The authors' indices for M1.1 are ``features.[2, 6, 20, 24]`` (stage) and ``[3, 7, 21, 24]`` (segment).

* ``frozen_bn=True`` (the authors' setting, on in the paper recipes): every BatchNorm of the backbone stays in eval
  mode under ``.train()``, so its running statistics never change; its affine parameters still train.
* The backbone's state dict uses our (timm) layout ``stem.*`` / ``stages.*``, so classification checkpoints load into
  it directly. :meth:`DenseBackbone.fuse` returns the re-parameterized (deploy) form, with the same outputs.
* :class:`RepViTFPN` is torchvision's :class:`~torchvision.ops.FeaturePyramidNetwork` over the backbone; its output
  keys are the backbone's (plus ``"pool"`` / ``"p6"``, ``"p7"`` from ``extra_blocks``), ``out_channels`` is the FPN
  width as torchvision's detectors expect.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock

from repvit.io import load_torch, strip_prefixes
from repvit.models.checkpoint import (
    CheckpointError,
    LoadedCheckpoint,
    LoadResult,
    authors_to_timm,
    load_checkpoint,
    read_checkpoint,
)
from repvit.models.fuse import fuse_model
from repvit.models.repvit import check_input

__all__ = ["TAPS", "DenseBackbone", "RepViTFPN", "load_backbone_checkpoint", "read_backbone_state_dict"]

TAPS = ("stage", "segment")


class DenseBackbone(nn.Module):
    """RepViT trunk (stem + stages, no head) returning an ordered dict of feature maps for dense heads.

    Args:
        model: a registered model name (built with ``repvit.create_model(name, features_only=True, ...)``) or an
            existing RepViT module with ``stem`` and ``stages`` (a classifier's head is left out).
        taps: ``"stage"`` (stage outputs, detection) or ``"segment"`` (one block later, the authors' segmentation
            taps); see the module docstring.
        frozen_bn: keep the backbone's BatchNorm layers in eval mode under ``.train()``.
        out_indices: which of the four maps to return (keys ``str(i)``).
        **create_model_kwargs: passed to :func:`repvit.create_model` (``checkpoint``, ``drop_path_rate``, ...).
    """

    def __init__(
        self,
        model: str | nn.Module = "repvit_m0_6",
        *,
        taps: str = "stage",
        frozen_bn: bool = True,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        **create_model_kwargs: Any,
    ):
        super().__init__()
        if taps not in TAPS:
            raise ValueError(f"taps must be one of {TAPS}, got {taps!r}.")
        out = sorted({int(i) for i in out_indices})
        if isinstance(model, str):
            from repvit.models.factory import create_model

            src = create_model(model, features_only=True, out_indices=(0, 1, 2, 3), **create_model_kwargs)
        elif isinstance(model, nn.Module):
            if create_model_kwargs:
                raise ValueError("create_model keyword arguments need a model name, not a built module.")
            src = model
        else:
            raise TypeError(f"model must be a registered name or an nn.Module, got {type(model).__name__}.")
        if not (hasattr(src, "stem") and hasattr(src, "stages")):
            raise TypeError(f"{type(src).__name__} has no 'stem' and 'stages'; pass a RepViT model or its name.")
        num_stages = len(src.stages)
        if not out or out[0] < 0 or out[-1] >= num_stages:
            raise ValueError(f"out_indices {list(out_indices)} must be stage indices in 0..{num_stages - 1}.")
        self.taps = taps
        self.frozen_bn = frozen_bn
        self.out_indices: list[int] = out
        self.in_chans = int(getattr(src, "in_chans", 3))
        self.cfg = getattr(src, "cfg", None)
        self.build_info = dict(getattr(src, "build_info", {}) or {})
        info = list(getattr(src, "stage_info", [])) or [
            dict(num_chs=src.cfg.widths[s], reduction=4 * 2**s) for s in range(num_stages)
        ]
        self.out_channels_list: list[int] = [int(info[i]["num_chs"]) for i in out]
        self.strides: list[int] = [int(info[i]["reduction"]) for i in out]
        # the stages needed for the last tap (a segment tap s < 3 ends inside stage s + 1)
        last = out[-1] + 1 if (taps == "segment" and out[-1] < num_stages - 1) else out[-1]
        self.stem = src.stem
        self.stages = nn.Sequential(*list(src.stages)[: last + 1])
        self._split_after = [taps == "segment" and (i - 1) in out for i in range(len(self.stages))]
        self._tap_after = [taps == "stage" or i == num_stages - 1 for i in range(len(self.stages))]
        self.train(self.training)

    def train(self, mode: bool = True) -> DenseBackbone:
        super().train(mode)
        if mode and self.frozen_bn:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if not torch.jit.is_scripting() and not torch.jit.is_tracing():
            check_input(x, self.in_chans)
        out: dict[str, torch.Tensor] = OrderedDict()
        x = self.stem(x)
        for i, stage in enumerate(self.stages):
            ds = stage.downsample
            if hasattr(ds, "pre_block") and self._split_after[i]:  # hasattr: static under TorchScript
                y = ds.pre_block(x)
                out[str(i - 1)] = y
                x = ds.channel_downsample(ds.spatial_downsample(y))
                x = stage.blocks(x + ds.drop_path(ds.ffn(x)))
            else:
                x = stage(x)
            if self._tap_after[i] and i in self.out_indices:
                out[str(i)] = x
        return out

    @torch.no_grad()
    def fuse(self, inplace: bool = False) -> DenseBackbone:
        """The deploy form (see :func:`repvit.fuse_model`): same outputs, no BatchNorm, in eval mode."""
        return fuse_model(self, inplace=inplace)


# -------------------------------------------------------------------------------------------------- checkpoints


def read_backbone_state_dict(source: str | os.PathLike | Mapping[str, Any]) -> LoadedCheckpoint:
    """Read backbone weights from a classification checkpoint or a downstream (mmdet/mmseg or ours) file.

    Accepted: every format :func:`repvit.models.checkpoint.read_checkpoint` reads (ours, timm, the authors'
    release, fused), the authors' downstream files (``state_dict`` (+ ``meta``) with ``backbone.features.N...`` keys
    in their classifier layout), and our segmentation/detection training checkpoints (``model`` with
    ``backbone.stem.*`` / ``backbone.body.stem.*`` keys). Non-backbone keys (heads, necks) are dropped.
    """
    if isinstance(source, Mapping):
        obj: Any = source
    else:
        path = Path(source)
        if path.suffix == ".safetensors" or not path.is_file() or path.stat().st_size == 0:
            return read_checkpoint(path)  # its errors name the file
        obj = load_torch(path)
    inner = obj
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj.get(key), Mapping):
                inner = obj[key]
                break
    if isinstance(inner, Mapping) and any(str(k).startswith(("backbone.", "module.backbone.")) for k in inner):
        sd: dict[str, torch.Tensor] = {}
        for k, v in strip_prefixes(dict(inner)).items():
            if not k.startswith("backbone.") or not isinstance(v, torch.Tensor):
                continue
            k = k[len("backbone."):]
            for prefix in ("body.", "model."):
                k = k[len(prefix):] if k.startswith(prefix) else k
            sd[k] = v
        if any(k.startswith("features.") for k in sd):
            sd, fmt = authors_to_timm(sd), "authors_downstream"
        elif any(k.startswith(("stem.", "stages.")) for k in sd):
            fmt = "dense"
        else:
            raise CheckpointError(
                f"the 'backbone.*' keys are not a RepViT trunk (first keys: {list(sd)[:5]}); expected "
                "'backbone.features.N...' (the authors' mmdet/mmseg files) or 'backbone.stem.*' (ours)."
            )
        return LoadedCheckpoint(sd, fmt, "stem.conv1.weight" in sd, {})
    return read_checkpoint(source)  # a classification checkpoint (a file is read again: its errors name it)


def load_backbone_checkpoint(backbone: DenseBackbone, path: str | os.PathLike | Mapping[str, Any]) -> LoadResult:
    """Load backbone weights from any supported checkpoint into ``backbone`` (in place).

    Classifier heads, necks and dense heads in the file are dropped, and so are the keys of stages the backbone
    does not build (``out_indices`` short of the last stage). Any other difference (another width or depth, a fused
    file for an unfused model) raises :class:`~repvit.models.checkpoint.CheckpointMismatchError` /
    :class:`~repvit.models.checkpoint.CheckpointError` naming the file and the differing keys.
    """
    where = "the given dict" if isinstance(path, Mapping) else str(path)
    try:
        ckpt = read_backbone_state_dict(path)
    except CheckpointError as e:
        raise CheckpointError(str(e) if where in str(e) else f"backbone checkpoint {where}: {e}") from None
    n = len(backbone.stages)
    sd = {k: v for k, v in ckpt.state_dict.items()
          if not k.startswith("head.") and not (k.startswith("stages.") and int(k.split(".")[1]) >= n)}
    ckpt = LoadedCheckpoint(sd, ckpt.source_format, ckpt.fused, ckpt.meta)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return load_checkpoint(backbone, ckpt, strict=True)
    except CheckpointError as e:
        raise type(e)(f"backbone checkpoint {where}: {e}", *_mismatch_args(e)) from None


def _mismatch_args(e: CheckpointError) -> tuple:
    if hasattr(e, "missing"):
        return (e.missing, e.unexpected, e.mismatched)
    return ()


# --------------------------------------------------------------------------------------------------------- neck


class RepViTFPN(nn.Module):
    """A :class:`DenseBackbone` followed by torchvision's ``FeaturePyramidNetwork``.

    Args:
        backbone: the backbone (its ``out_channels_list`` sizes the FPN's lateral convs).
        fpn_channels: the FPN width (256 in the paper's recipes).
        extra_blocks: torchvision's ``LastLevelMaxPool()`` or ``LastLevelP6P7(...)`` for detection; None for
            segmentation.

    ``forward(x)`` returns the FPN maps as an ``OrderedDict`` (the backbone's keys, then the extra levels).
    """

    def __init__(self, backbone: DenseBackbone, fpn_channels: int = 256, extra_blocks: ExtraFPNBlock | None = None):
        super().__init__()
        if fpn_channels < 1:
            raise ValueError(f"fpn_channels must be >= 1, got {fpn_channels}.")
        self.backbone = backbone
        self.fpn = FeaturePyramidNetwork(list(backbone.out_channels_list), fpn_channels, extra_blocks=extra_blocks)
        self.out_channels = fpn_channels
        self.strides = list(backbone.strides)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.fpn(self.backbone(x))

    @torch.no_grad()
    def fuse(self, inplace: bool = False) -> RepViTFPN:
        """A copy (unless ``inplace``) whose backbone is in deploy form; the FPN has no BatchNorm to fold."""
        model = self if inplace else copy.deepcopy(self)
        model.backbone = model.backbone.fuse(inplace=True)
        return model.eval()
