"""``create_model``: build any registered model, optionally from a checkpoint and in deploy form."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from .checkpoint import CheckpointError, LoadedCheckpoint, infer_config, load_checkpoint, read_checkpoint
from .config import RepViTConfig
from .fuse import fuse_model
from .pretrained import set_data_config
from .registry import _REGISTRY, get_model_entry, list_models

__all__ = ["create_model"]


def _name_for_config(cfg: RepViTConfig) -> str | None:
    list_models()
    for name, entry in _REGISTRY.items():
        if entry.config == cfg:
            return name
    return None


def _fit_channels(data: dict[str, Any], in_chans: int) -> dict[str, Any]:
    """Drop saved preprocessing that cannot apply to a model built with another number of input channels."""
    for key in ("input_size", "test_input_size"):
        size = data.get(key)
        if size is not None and int(size[0]) != in_chans:
            data[key] = (in_chans, *size[1:])
    for key in ("mean", "std"):
        if key in data and len(data[key]) not in (1, in_chans):
            del data[key]
    return data


def create_model(
    name: str | None = None,
    *,
    num_classes: int | None = None,
    in_chans: int | None = None,
    distillation: bool | None = None,
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
    checkpoint: str | os.PathLike | Mapping[str, torch.Tensor] | None = None,
    fused: bool = False,
    features_only: bool = False,
    out_indices: Sequence[int] = (0, 1, 2, 3),
    strict: bool = True,
) -> nn.Module:
    """Build a model by name, optionally loading a checkpoint and fusing it into deploy form.

    Args:
        name: a registered name (``repvit_m0_9``; ``m0_9`` works too). May be omitted when ``checkpoint`` is
            given: the architecture is then read from the checkpoint.
        num_classes: head classes. Defaults to the checkpoint's (when given), else 1000. A checkpoint with another
            class count loads without its head, with a warning, for fine-tuning.
        in_chans: input channels; defaults to the checkpoint's, else 3.
        distillation: add the distillation head; defaults to the checkpoint's, else False.
        drop_rate: dropout before the head.
        drop_path_rate: stochastic depth rate.
        checkpoint: a file (or state dict) in any supported format: ours, timm, the authors' release, fused.
        fused: return the deploy form (re-parameterized, no BatchNorm, one head).
        features_only: return the backbone, giving the stage outputs at strides 4, 8, 16, 32.
        out_indices: which stages ``features_only`` returns.
        strict: refuse checkpoints whose keys do not match (the head excepted, see above).

    The model's ``pretrained_cfg`` (timm's, alias ``default_cfg``) holds the paper's preprocessing, or the one saved
    in the checkpoint (a model trained on another data set keeps its own input size, mean and std).
    """
    ckpt: LoadedCheckpoint | None = None
    if checkpoint is not None:
        ckpt = read_checkpoint(checkpoint)
    if name is None and ckpt is None:
        raise ValueError("create_model needs a model name or a checkpoint; see `repvit list` for the names.")

    inferred: dict[str, Any] = {}
    cfg_from_ckpt: RepViTConfig | None = None
    if ckpt is not None:
        meta = ckpt.meta
        if isinstance(meta.get("config"), Mapping):
            try:
                cfg_from_ckpt = RepViTConfig.from_dict(dict(meta["config"]))
            except ValueError:
                # another design space (e.g. a roadmap_* model): the registered name below rebuilds it
                if not (name or meta.get("model_name")):
                    raise
        try:
            inferred_cfg, inferred = infer_config(ckpt.state_dict)
            cfg_from_ckpt = cfg_from_ckpt or inferred_cfg
        except CheckpointError:
            if name is None and cfg_from_ckpt is None and not meta.get("model_name"):
                raise
        for k in ("num_classes", "in_chans", "distillation"):
            if k in meta and k not in inferred:
                inferred[k] = meta[k]
        if name is None:
            name = meta.get("model_name") or (cfg_from_ckpt and _name_for_config(cfg_from_ckpt))
    num_classes = num_classes if num_classes is not None else inferred.get("num_classes", 1000)
    in_chans = in_chans if in_chans is not None else inferred.get("in_chans", 3)
    distillation = distillation if distillation is not None else bool(inferred.get("distillation", False))

    kwargs = dict(num_classes=num_classes, in_chans=in_chans, distillation=distillation, drop_rate=drop_rate,
                  drop_path_rate=drop_path_rate)
    if features_only:
        kwargs.update(features_only=True, out_indices=tuple(out_indices))
    if name is not None:
        entry = get_model_entry(name)
        if features_only and not entry.supports_features:
            raise ValueError(f"model {entry.name!r} does not support features_only=True.")
        model = entry.builder(**kwargs)
        name = entry.name
        config = entry.config
    else:
        from .variants import build_repvit

        model = build_repvit(cfg_from_ckpt, **kwargs)
        config = cfg_from_ckpt
    model.build_info = {  # read by save_checkpoint
        "model_name": name,
        "config": config.to_dict() if hasattr(config, "to_dict") else None,
        "features_only": features_only,
    }
    if getattr(model, "pretrained_cfg", None) is not None:
        model.pretrained_cfg["architecture"] = name
        saved = ckpt.meta.get("pretrained_cfg") if ckpt is not None else None
        if isinstance(saved, Mapping) and saved:
            saved = _fit_channels(dict(saved), in_chans)
            if len(saved.get("label_names") or ()) != getattr(model, "num_classes", 0):
                saved.pop("label_names", None)  # another class count (fine-tuning): the names do not apply
            set_data_config(model, **saved)
    if ckpt is not None and ckpt.fused:
        if not fused:
            raise CheckpointError(
                "this checkpoint is in fused (deploy) form; pass fused=True (CLI: --fused) to build the deploy "
                "model it belongs to."
            )
        model = fuse_model(model, inplace=True)
        load_checkpoint(model, ckpt, strict=strict)
        return model
    if ckpt is not None:
        load_checkpoint(model, ckpt, strict=strict)
    if fused:
        model = fuse_model(model, inplace=True)
    return model
