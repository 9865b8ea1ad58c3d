"""Checkpoint formats: reading, detecting, converting, loading and writing.

Formats read (each detected automatically):

* ``repvit``  — our own: a ``.safetensors`` file whose metadata holds the model config as JSON.
* ``timm``    — timm's RepViT state dict (``stem.*``, ``stages.*``, ``head.*``), ``.pth``/``.pt``/``.safetensors``;
  also our training checkpoints (a dict with ``model`` and ``config``).
* ``authors`` — the authors' release: a dict whose ``model`` key holds the flat ``features.N`` layout (current or
  legacy RepVGGDW), possibly saved on CUDA.
* fused (deploy-form) variants of the above.

Everything is loaded with ``torch.load(..., weights_only=True)`` and converted to timm's layout, which is ours.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from repvit.io import CheckpointError, atomic_write, load_torch, read_safetensors, strip_prefixes
from repvit.weights import resolve_weights

from .config import RepViTConfig

__all__ = [
    "CheckpointMismatchError",
    "LoadedCheckpoint",
    "LoadResult",
    "read_checkpoint",
    "authors_to_timm",
    "infer_config",
    "load_checkpoint",
    "name_for_config",
    "save_checkpoint",
    "FORMAT_NAME",
]

FORMAT_NAME = "repvit"
FORMAT_VERSION = "1"


class CheckpointMismatchError(CheckpointError):
    """A checkpoint whose keys or shapes do not match the model; the message lists the differences."""

    def __init__(self, message: str, missing: list[str], unexpected: list[str], mismatched: list[str]):
        super().__init__(message)
        self.missing, self.unexpected, self.mismatched = missing, unexpected, mismatched


@dataclass
class LoadedCheckpoint:
    """A state dict in our (timm) layout plus what was learned about it."""

    state_dict: dict[str, torch.Tensor]
    source_format: str  # "repvit", "timm", "authors", "authors_legacy", "state_dict"
    fused: bool
    meta: dict[str, Any] = field(default_factory=dict)  # model name, config, class names, ...


@dataclass
class LoadResult:
    missing: list[str]
    unexpected: list[str]
    dropped: list[str]
    source_format: str


# ----------------------------------------------------------------------------------------------------------- reading


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def _unwrap(obj: Any, path: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Find the model state dict inside a loaded checkpoint object."""
    meta: dict[str, Any] = {}
    if _is_state_dict(obj):
        return dict(obj), meta
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict", "model_state_dict"):
            if key in obj and _is_state_dict(obj[key]):
                cfg = obj.get("config")
                if isinstance(cfg, Mapping):
                    meta["train_config"] = dict(cfg)
                    mcfg = cfg.get("model")
                    if isinstance(mcfg, str):
                        meta["model_name"] = mcfg
                    elif isinstance(mcfg, Mapping) and isinstance(mcfg.get("name"), str):
                        meta["model_name"] = mcfg["name"]
                for k in ("model_name", "class_names", "num_classes", "distillation", "in_chans", "pretrained_cfg"):
                    if k in obj and k not in meta:
                        meta[k] = obj[k]
                return dict(obj[key]), meta
    kind = type(obj).__name__
    keys = list(obj)[:8] if isinstance(obj, Mapping) else []
    raise CheckpointError(
        f"{path} does not contain a model state dict (found a {kind}{' with keys ' + str(keys) if keys else ''}). "
        "Expected a state dict, or a dict with a 'model' or 'state_dict' entry."
    )


def read_checkpoint(source: str | os.PathLike | Mapping[str, torch.Tensor]) -> LoadedCheckpoint:
    """Read a checkpoint in any supported format and return it in our (timm) layout.

    ``source`` is a state dict, a file, a URL or a published classifier's name (the last two are downloaded once;
    see :func:`repvit.weights.resolve_weights`).
    """
    meta: dict[str, Any] = {}
    if isinstance(source, Mapping):
        sd, meta = _unwrap(source, "the given dict")
        fmt = "state_dict"
    else:
        path = resolve_weights(source, kind="classify")
        if path.stat().st_size == 0:
            raise CheckpointError(f"checkpoint {path} is empty (0 bytes); it was probably not written completely.")
        if path.suffix == ".safetensors":
            sd, smeta = read_safetensors(path)
            fmt = "timm"
            if smeta.get("format") == FORMAT_NAME:
                fmt = FORMAT_NAME
                meta = json.loads(smeta.get("model", "{}"))
                if "class_names" in smeta:
                    meta["class_names"] = json.loads(smeta["class_names"])
        else:
            sd, meta = _unwrap(load_torch(path), path)
            fmt = "timm"
    sd = strip_prefixes(dict(sd))
    if any(k.startswith("features.") for k in sd):
        legacy = any(re.search(r"token_mixer\.0\.conv1\.c\.weight$", k) for k in sd)
        sd = authors_to_timm(sd)
        fmt = "authors_legacy" if legacy else "authors"
    elif not any(k.startswith(("stem.", "stages.")) for k in sd):
        raise CheckpointError(
            f"unrecognised checkpoint layout (first keys: {list(sd)[:5]}). Supported: repvit safetensors, timm "
            "RepViT state dicts and the authors' release (features.N)."
        )
    # our format records it; otherwise a fused RepViT stem has a plain conv (roadmap stems are named otherwise)
    fused = bool(meta["fused"]) if isinstance(meta.get("fused"), bool) else "stem.conv1.weight" in sd
    return LoadedCheckpoint(sd, fmt, fused, meta)


# -------------------------------------------------------------------------------------------------- authors layout

_S1_RULES = (  # stride-1 block: authors' suffix -> ours
    ("token_mixer.0.", "token_mixer."),
    ("token_mixer.1.", "se."),
    ("channel_mixer.m.0.", "channel_mixer.conv1."),
    ("channel_mixer.m.2.", "channel_mixer.conv2."),
)
_S2_RULES = (  # stride-2 block (the downsampling part): authors' suffix -> ours
    ("token_mixer.0.", "spatial_downsample."),
    ("token_mixer.2.", "channel_downsample."),
    ("channel_mixer.m.0.", "ffn.conv1."),
    ("channel_mixer.m.2.", "ffn.conv2."),
)
_HEAD_RULES = (
    ("classifier.classifier_dist.", "head.head_dist."),
    ("classifier.classifier.", "head.head."),
    ("classifier.", "head."),  # fused: one Linear
    ("features.0.0.", "stem.conv1."),
    ("features.0.2.", "stem.conv2."),
)


def _apply_rules(key: str, rules: tuple[tuple[str, str], ...], src_prefix: str, dst_prefix: str) -> str:
    rest = key[len(src_prefix):]
    for a, b in rules:
        if rest.startswith(a):
            return dst_prefix + b + rest[len(a):]
    raise CheckpointError(f"unexpected key {key!r} in an authors' checkpoint.")


def authors_to_timm(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the authors' flat ``features.N`` layout (unfused or fused, current or legacy) to ours.

    The stage structure is read from the keys: a block with a ``token_mixer.2`` (1x1 channel conv) is a stride-2
    block, and the block just before it is the downsampling layer's pre-block.
    """
    idx = sorted({int(m.group(1)) for k in sd if (m := re.match(r"features\.(\d+)\.", k)) and m.group(1) != "0"})
    stride2 = {i for i in idx if any(k.startswith(f"features.{i}.token_mixer.2.") for k in sd)}
    prefix_of: dict[int, tuple[str, tuple]] = {}
    stage, block = 0, 0
    for i in idx:
        if i + 1 in stride2:
            prefix_of[i] = (f"stages.{stage + 1}.downsample.pre_block.", _S1_RULES)
        elif i in stride2:
            stage, block = stage + 1, 0
            prefix_of[i] = (f"stages.{stage}.downsample.", _S2_RULES)
        else:
            prefix_of[i] = (f"stages.{stage}.blocks.{block}.", _S1_RULES)
            block += 1
    out = {}
    for k, v in sd.items():
        m = re.match(r"features\.(\d+)\.", k)
        if m and m.group(1) != "0":
            dst, rules = prefix_of[int(m.group(1))]
            out[_apply_rules(k, rules, m.group(0), dst)] = v
        else:
            out[_apply_rules(k, _HEAD_RULES, "", "")] = v
    return out


# ------------------------------------------------------------------------------------------------ config inference


def infer_config(sd: Mapping[str, torch.Tensor]) -> tuple[RepViTConfig, dict[str, Any]]:
    """Recover the architecture (and head: classes, distillation, input channels) from a state dict in our layout."""
    fused = "stem.conv1.weight" in sd
    cw = "" if fused else "c."
    try:
        in_chans = sd[f"stem.conv1.{cw}weight"].shape[1]
        stages = sorted({int(m.group(1)) for k in sd if (m := re.match(r"stages\.(\d+)\.", k))})
        widths, depths, se_blocks = [], [], []
        kernel = None
        legacy = any(k.endswith("token_mixer.conv1.c.weight") for k in sd)
        for s in stages:
            wkey = f"stem.conv2.{cw}weight" if s == 0 else f"stages.{s}.downsample.channel_downsample.{cw}weight"
            w = sd[wkey].shape[0]
            blocks = sorted({int(m.group(1)) for k in sd if (m := re.match(rf"stages\.{s}\.blocks\.(\d+)\.", k))})
            widths.append(int(w))
            depths.append(len(blocks))
            se_blocks.append([any(k.startswith(f"stages.{s}.blocks.{b}.se.") for k in sd) for b in blocks])
            for b in blocks[:1]:
                key = f"stages.{s}.blocks.{b}.token_mixer." + ("weight" if fused else "conv.c.weight")
                kernel = sd[key].shape[-1]
        if kernel is None:
            key = "stages.1.downsample.spatial_downsample." + ("weight" if fused else "c.weight")
            kernel = sd[key].shape[-1] if key in sd else 3
        flat = [x for s in se_blocks for x in s]
        if flat and all(flat):
            se_pattern = "all"
        elif not any(flat):
            se_pattern = "none"
        else:
            se_pattern = "cross"
        se_keys = [k for k in sd if ".se.fc1.weight" in k]
        se_ratio = 0.25
        cfg = RepViTConfig(tuple(widths), tuple(depths), kernel_size=int(kernel), se_pattern=se_pattern,
                           token_mixer="legacy" if legacy else "repvggdw", se_ratio=se_ratio)
        mlp_key = "stages.0.blocks.0.channel_mixer.conv1." + ("weight" if fused else "c.weight")
        if mlp_key in sd:
            cfg = RepViTConfig(**{**cfg.to_dict(), "mlp_ratio": sd[mlp_key].shape[0] / widths[0]})
    except (KeyError, IndexError) as e:
        raise CheckpointError(f"cannot work out the RepViT architecture from this checkpoint (missing {e}).") from None
    head_w = sd.get("head.weight", sd.get("head.head.l.weight"))
    extra = {
        "in_chans": int(in_chans),
        "num_classes": int(head_w.shape[0]) if head_w is not None else 0,
        "distillation": "head.head_dist.l.weight" in sd,
        "fused": fused,
        "has_se": bool(se_keys),
    }
    return cfg, extra


# ------------------------------------------------------------------------------------------------------- loading


def _fmt_list(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", … ({len(items) - limit} more)" if len(items) > limit else "")


def load_checkpoint(
    model: nn.Module,
    source: str | os.PathLike | Mapping[str, torch.Tensor] | LoadedCheckpoint,
    strict: bool = True,
) -> LoadResult:
    """Load a checkpoint in any supported format into ``model`` (in place).

    * A head whose class count differs from the model's is dropped with a warning, so fine-tuning on another
      class count works; so is a distillation head the model does not have.
    * A ``features_only`` model ignores the head.
    * A fused checkpoint needs a fused model and vice versa; the error says which to use.

    Raises:
        CheckpointError: unreadable file or unknown layout.
        CheckpointMismatchError: with ``strict``, keys or shapes that do not match (listed in the message).
    """
    ckpt = source if isinstance(source, LoadedCheckpoint) else read_checkpoint(source)
    sd = dict(ckpt.state_dict)
    model_sd = model.state_dict()
    _check_fused_form(model, ckpt, model_sd)
    dropped = _heads_to_drop(sd, model_sd)
    for k in dropped:
        sd.pop(k, None)
    missing = [k for k in model_sd if k not in sd and not (k.startswith("head.") and dropped)]
    unexpected = [k for k in sd if k not in model_sd]
    mismatched = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(model_sd[k].shape)}"
                  for k in sd if k in model_sd and sd[k].shape != model_sd[k].shape]
    if mismatched or (strict and (missing or unexpected)):
        raise _mismatch_error(ckpt, missing, unexpected, mismatched)
    model.load_state_dict({k: v.to(model_sd[k].dtype) if v.is_floating_point() else v
                           for k, v in sd.items() if k in model_sd}, strict=False)
    return LoadResult(missing, unexpected, dropped, ckpt.source_format)


def _check_fused_form(model: nn.Module, ckpt: LoadedCheckpoint, model_sd: Mapping[str, torch.Tensor]) -> None:
    """Refuse fused weights for an unfused model and the reverse, saying which to build."""
    from .fuse import is_fused

    if ckpt.fused == is_fused(model) or not any(k.startswith("stem.") for k in model_sd):
        return
    if ckpt.fused:
        raise CheckpointError(
            "this checkpoint is in fused (deploy) form but the model is not; build the model with "
            "create_model(..., fused=True) or call repvit.fuse_model(model) before loading."
        )
    raise CheckpointError(
        "the model is fused but this checkpoint is not; load the checkpoint into the unfused model first, "
        "then fuse it (create_model(..., checkpoint=..., fused=True) does both)."
    )


def _heads_to_drop(sd: Mapping[str, torch.Tensor], model_sd: Mapping[str, torch.Tensor]) -> list[str]:
    """The checkpoint's head keys the model does not take: all of them for a model without a head, those of another
    class count (fine-tuning), a distillation head the model lacks (each but the first with a warning)."""
    head_keys = [k for k in sd if k.startswith("head.")]
    if not any(k.startswith("head.") for k in model_sd):
        return head_keys
    ck_cls = next((int(sd[k].shape[0]) for k in ("head.weight", "head.head.l.weight") if k in sd), None)
    md_cls = next((int(model_sd[k].shape[0]) for k in ("head.weight", "head.head.l.weight") if k in model_sd), None)
    if ck_cls is not None and md_cls is not None and ck_cls != md_cls:
        warnings.warn(
            f"checkpoint head has {ck_cls} classes but the model has {md_cls}: the head is not loaded and "
            "stays freshly initialised (fine-tuning).", stacklevel=3)
        return head_keys
    extra_dist = [k for k in head_keys if k.startswith("head.head_dist.") and k not in model_sd]
    if extra_dist:
        warnings.warn("checkpoint has a distillation head that the model does not: it is ignored.", stacklevel=3)
    return extra_dist


def name_for_config(cfg: RepViTConfig) -> str | None:
    """The registered model name whose architecture is ``cfg``, or None."""
    from .registry import _REGISTRY, list_models

    list_models()
    return next((n for n, e in _REGISTRY.items() if e.config == cfg), None)


def _mismatch_error(ckpt: LoadedCheckpoint, missing: list[str], unexpected: list[str],
                    mismatched: list[str]) -> CheckpointMismatchError:
    parts = []
    if missing:
        parts.append(f"missing keys ({len(missing)}): {_fmt_list(missing)}")
    if unexpected:
        parts.append(f"unexpected keys ({len(unexpected)}): {_fmt_list(unexpected)}")
    if mismatched:
        parts.append(f"shape mismatches ({len(mismatched)}): {_fmt_list(mismatched, 5)}")
    hint = ""
    try:  # say what the checkpoint holds, so the fix is obvious
        cfg, extra = infer_config(ckpt.state_dict)
        hint = (f" The checkpoint holds {name_for_config(cfg) or 'a RepViT'} (widths {list(cfg.widths)}, depths "
                f"{list(cfg.depths)}, {extra['num_classes']} classes); create_model(checkpoint=...) without a "
                "name builds it.")
    except CheckpointError:
        pass
    return CheckpointMismatchError(
        f"checkpoint ({ckpt.source_format} format) does not match the model: " + "; ".join(parts) + "." + hint,
        missing, unexpected, mismatched)


# ------------------------------------------------------------------------------------------------------- writing


def save_checkpoint(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    model_name: str | None = None,
    class_names: list[str] | None = None,
    extra: dict[str, str] | None = None,
) -> Path:
    """Write ``model`` in our format: a ``.safetensors`` file with the model config as JSON metadata.

    The metadata also holds the data fields of the model's ``pretrained_cfg`` (input size, mean, std, ...).

    ``create_model(checkpoint=path)`` rebuilds the model from it (fused or not). The write is atomic.
    """
    from safetensors.torch import save_file

    from .fuse import is_fused
    from .pretrained import data_config_of

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"our checkpoint format is safetensors; use a .safetensors file name, got {path.name}.")
    info = dict(getattr(model, "build_info", {}) or {})
    cfg = getattr(model, "cfg", None)
    if cfg is not None and hasattr(cfg, "to_dict"):
        info["config"] = cfg.to_dict()
    if model_name:
        info["model_name"] = model_name
    info.update(
        num_classes=getattr(model, "num_classes", info.get("num_classes", 0)),
        in_chans=getattr(model, "in_chans", info.get("in_chans", 3)),
        distillation=bool(getattr(model, "distillation", False)),
        fused=is_fused(model),
    )
    if getattr(model, "pretrained_cfg", None):
        info["pretrained_cfg"] = data_config_of(model)  # input size, interpolation, crop, mean, std
    metadata = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "model": json.dumps(info)}
    if class_names is not None:
        metadata["class_names"] = json.dumps(list(class_names))
    for k, v in (extra or {}).items():
        metadata[str(k)] = str(v)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
