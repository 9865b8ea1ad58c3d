"""RepViT-SAM checkpoint formats: reading (with layout detection), strict matching and writing.

Formats read:

* ``authors`` — the authors' ``repvit_sam.pt``: one flat state dict of the whole SAM. The trunk is
  ``image_encoder.features.N...`` in the authors' classifier layout (converted with
  :func:`repvit.models.checkpoint.authors_to_timm`), then ``image_encoder.neck.{0,1,2,3}.*``, ``prompt_encoder.*``
  and ``mask_decoder.*`` as in ``segment_anything``.
* ``edge_sam`` — EdgeSAM's ``edge_sam.pth`` / ``edge_sam_3x.pth``: a bare state dict like the authors' one (trunk
  ``image_encoder.features.N...``, legacy RepViT-M0.9 blocks) plus the fusion neck's
  ``image_encoder.fuse_stage2.weight`` and ``image_encoder.fuse_stage3.op_list.0.weight``; recognised by those keys.
* ``repvit-sam`` — ours: a ``.safetensors`` file of the whole ``Sam`` state dict (trunk at
  ``image_encoder.trunk.*``) whose metadata holds the :class:`RepViTSamConfig` and whether it is fused.
* ``sam-distill`` — a training checkpoint of ``repvit sam distill`` (``last.pt``/``best.pt``): the student encoder
  only (``trunk.*``, ``neck.*``) with the encoder config in ``meta``; SAM's prompt encoder and mask decoder come
  from another checkpoint (the teacher's ``sam_vit_h.pth``).
* ``sam-prompt-distill`` — a training checkpoint of ``repvit sam distill --phase prompt``: the whole SAM in our
  layout (``image_encoder.*``, ``prompt_encoder.*``, ``mask_decoder.*``), the encoder config in ``meta``.
* a plain state dict in our ``Sam`` layout (``image_encoder.trunk.*``), e.g. ``torch.save(sam.state_dict())``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from repvit.io import CheckpointError, atomic_write, check_task, load_torch, read_safetensors, strip_prefixes
from repvit.models.checkpoint import CheckpointMismatchError, authors_to_timm, infer_config

from .encoder import RepViTSamConfig

__all__ = [
    "SamCheckpoint",
    "checkpoint_path",
    "read_sam_checkpoint",
    "read_sam_decoder",
    "match_state_dict",
    "save_repvit_sam",
    "FORMAT_NAME",
]

FORMAT_NAME = "repvit-sam"
FORMAT_VERSION = "1"
_DECODER_PREFIXES = ("prompt_encoder.", "mask_decoder.")


@dataclass
class SamCheckpoint:
    """A RepViT-SAM state dict in our ``Sam`` layout and what was learned about it.

    ``state_dict`` keys start with ``image_encoder.`` and, unless ``encoder_only``, ``prompt_encoder.`` and
    ``mask_decoder.``. ``cfg`` is the encoder config when the file says (ours) or the trunk could be recognised.
    """

    state_dict: dict[str, torch.Tensor]
    source_format: str
    fused: bool
    cfg: RepViTSamConfig | None = None
    encoder_only: bool = False
    meta: dict[str, Any] = field(default_factory=dict)


def _trunk_variant(trunk_sd: Mapping[str, torch.Tensor]) -> str | None:
    """The registered RepViT name whose architecture the trunk state dict (our layout) has, if any."""
    from repvit.models import get_model_entry, list_models

    try:
        cfg, _ = infer_config(trunk_sd)
    except CheckpointError:
        return None
    return next((n for n in list_models("repvit_*") if get_model_entry(n).config == cfg), None)


_FUSION_KEY = "image_encoder.fuse_stage2.weight"
_EDGE_SAM_RENAMES = {"image_encoder.fuse_stage3.op_list.0.weight": "image_encoder.fuse_stage3.weight"}


def _cfg_from(sd: Mapping[str, torch.Tensor], img_size: int = 1024) -> RepViTSamConfig | None:
    trunk = {k[len("image_encoder.trunk."):]: v for k, v in sd.items() if k.startswith("image_encoder.trunk.")}
    variant = _trunk_variant(trunk)
    neck = sd.get("image_encoder.neck.0.weight")
    if variant is None or neck is None:
        return None
    if _FUSION_KEY in sd:  # EdgeSAM's fusion neck: full-stride trunk; its upsampling mode is not in the weights
        return RepViTSamConfig(variant, img_size=img_size, embed_dim=int(neck.shape[0]), last_stride=2, neck="fusion")
    return RepViTSamConfig(variant, img_size=img_size, embed_dim=int(neck.shape[0]))


def _from_authors(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    enc = "image_encoder."
    trunk = {k[len(enc):]: v for k, v in sd.items() if k.startswith(enc + "features.")}
    out = {enc + "trunk." + k: v for k, v in authors_to_timm(trunk).items()}
    out.update({k: v for k, v in sd.items() if not k.startswith(enc + "features.")})
    return out


def checkpoint_path(source: str | os.PathLike | Mapping[str, Any], what: str) -> tuple[Path | None, str]:
    """The file a checkpoint is read from (None when ``source`` is already a dict) and how messages name it.

    Raises:
        CheckpointError: ``source`` is a path with no file there; ``what`` names the kind of checkpoint.
    """
    if isinstance(source, Mapping):
        return None, "the given dict"
    path = Path(source)
    if not path.is_file():
        raise CheckpointError(f"{what} checkpoint {path} does not exist or is not a file.")
    return path, str(path)


def read_sam_checkpoint(source: str | os.PathLike | Mapping[str, Any]) -> SamCheckpoint:
    """Read a RepViT-SAM checkpoint in any supported format (see the module docstring) into our layout."""
    meta: dict[str, Any] = {}
    cfg: RepViTSamConfig | None = None
    fmt = "state_dict"
    path, label = checkpoint_path(source, "RepViT-SAM")
    obj: Any = source
    if path is not None and path.suffix == ".safetensors":
        obj, smeta = read_safetensors(path)
        if smeta.get("format") == FORMAT_NAME:
            fmt = FORMAT_NAME
            cfg = RepViTSamConfig.from_dict(json.loads(smeta["config"]))
            meta = {k: v for k, v in smeta.items() if k not in ("format", "format_version", "config")}
    elif path is not None:
        obj = load_torch(path)
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping) and "task" in obj:
        if obj.get("task") != "sam-prompt-distill":
            check_task(obj, "sam-distill", label)
        tmeta = dict(obj.get("meta") or {})
        cfg = RepViTSamConfig.from_dict(tmeta["sam_config"]) if "sam_config" in tmeta else None
        if obj["task"] == "sam-prompt-distill":  # phase 2: the whole SAM, in our layout
            sd = strip_prefixes(dict(obj["model"]))
            return SamCheckpoint(sd, "sam-prompt-distill", "image_encoder.trunk.stem.conv1.weight" in sd, cfg, False,
                                 tmeta)
        sd = {"image_encoder." + k: v for k, v in strip_prefixes(dict(obj["model"])).items()}
        return SamCheckpoint(sd, "sam-distill", "image_encoder.trunk.stem.conv1.weight" in sd, cfg, True, tmeta)
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]
    if not (isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values())):
        raise CheckpointError(f"{label} does not hold a state dict (expected tensors keyed image_encoder.*, "
                              "prompt_encoder.*, mask_decoder.*).")
    sd = strip_prefixes(dict(obj))
    if any(k.startswith("image_encoder.features.") for k in sd):
        edge = _FUSION_KEY in sd
        sd = {_EDGE_SAM_RENAMES.get(k, k): v for k, v in _from_authors(sd).items()}
        fmt = "edge_sam" if edge else "authors"
    elif not any(k.startswith("image_encoder.trunk.") for k in sd):
        hint = ""
        if any(k.startswith("image_encoder.blocks.") for k in sd):
            hint = " It looks like an original SAM (ViT) checkpoint: load it with segment_anything.sam_model_registry."
        raise CheckpointError(f"{label} is not a RepViT-SAM checkpoint (first keys: {list(sd)[:4]}).{hint}")
    fused = "image_encoder.trunk.stem.conv1.weight" in sd
    encoder_only = not any(k.startswith(_DECODER_PREFIXES) for k in sd)
    return SamCheckpoint(sd, fmt, fused, cfg or _cfg_from(sd), encoder_only, meta)


def read_sam_decoder(source: str | os.PathLike) -> dict[str, torch.Tensor]:
    """SAM's prompt encoder and mask decoder weights (``prompt_encoder.*``, ``mask_decoder.*``) from any SAM
    checkpoint: the original ``sam_vit_h.pth``/``sam_vit_b.pth``, MobileSAM's, or a RepViT-SAM one."""
    path = Path(source)
    if not path.is_file():
        raise CheckpointError(f"SAM checkpoint {path} (for the prompt encoder and mask decoder) does not exist.")
    obj = read_safetensors(path)[0] if path.suffix == ".safetensors" else load_torch(path)
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        obj = obj["model"]
    sd = {k: v for k, v in strip_prefixes(dict(obj)).items() if k.startswith(_DECODER_PREFIXES)}
    if not sd:
        raise CheckpointError(f"{path} holds no prompt_encoder.* / mask_decoder.* weights; pass a full SAM checkpoint "
                              "such as sam_vit_h.pth.")
    return sd


def match_state_dict(model: nn.Module, sd: Mapping[str, torch.Tensor], label: str) -> None:
    """Load ``sd`` into ``model`` strictly; differences raise :class:`CheckpointMismatchError` listing them."""
    model_sd = model.state_dict()
    missing = [k for k in model_sd if k not in sd]
    unexpected = [k for k in sd if k not in model_sd]
    mismatched = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(model_sd[k].shape)}"
                  for k in sd if k in model_sd and sd[k].shape != model_sd[k].shape]
    if missing or unexpected or mismatched:
        def show(items: list[str]) -> str:
            return ", ".join(items[:6]) + (f", … ({len(items) - 6} more)" if len(items) > 6 else "")

        parts = [f"{name} ({len(v)}): {show(v)}" for name, v in
                 (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)) if v]
        raise CheckpointMismatchError(
            f"{label} does not match the RepViT-SAM model: " + "; ".join(parts) + ". Check the variant and img_size "
            "(build_repvit_sam(variant=..., img_size=...); CLI --variant/--img-size) or leave them unset to read "
            "them from the checkpoint.", missing, unexpected, mismatched)
    dtypes = {k: v.dtype for k, v in model_sd.items()}
    model.load_state_dict({k: v.to(dtypes[k]) if v.is_floating_point() else v for k, v in sd.items()}, strict=True)


def save_repvit_sam(sam: nn.Module, path: str | os.PathLike, extra: Mapping[str, str] | None = None) -> Path:
    """Write a RepViT-SAM ``Sam`` in our format (``.safetensors``, config in the metadata), atomically.

    :func:`repvit.sam.build_repvit_sam` rebuilds it (pass ``fused=True`` for a fused one).
    """
    from safetensors.torch import save_file

    from repvit.models import is_fused

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"RepViT-SAM checkpoints are written as .safetensors, got {path.name}.")
    enc = getattr(sam, "image_encoder", None)
    if not isinstance(getattr(enc, "cfg", None), RepViTSamConfig):
        raise TypeError("save_repvit_sam expects a Sam whose image_encoder is a RepViTSamEncoder.")
    metadata = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "config": json.dumps(enc.cfg.to_dict()),
                "fused": json.dumps(is_fused(enc))}
    metadata.update({str(k): str(v) for k, v in (extra or {}).items()})
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in sam.state_dict().items()}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
