"""EdgeTAM checkpoints: the authors' ``edgetam.pt`` layout, ``{"model": state_dict}`` with SAM 2's module names.

:func:`read_edgetam_checkpoint` reads such a file (or a bare state dict with the same keys) with
``weights_only=True`` and says what is wrong with a file of another kind; :func:`save_edgetam` writes one
atomically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from repvit.io import CheckpointError, atomic_write, load_torch
from repvit.sam.checkpoint import checkpoint_path

__all__ = ["EDGETAM_KEY_PREFIXES", "read_edgetam_checkpoint", "save_edgetam"]

# top-level modules of every EdgeTAM state dict
EDGETAM_KEY_PREFIXES = ("image_encoder.", "sam_prompt_encoder.", "sam_mask_decoder.", "memory_encoder.",
                        "memory_attention.", "spatial_perceiver.")


def _describe(obj: Any) -> str:
    if isinstance(obj, Mapping):
        keys = list(obj)[:5]
        return f"a dict with keys {keys}{' ...' if len(obj) > 5 else ''}"
    return f"a {type(obj).__name__}"


def read_edgetam_checkpoint(source: str | os.PathLike | Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The state dict of an EdgeTAM checkpoint: a file ``{"model": state_dict}`` (the authors' ``edgetam.pt``), a
    file holding the state dict itself, or either as a dict.

    Raises:
        CheckpointError: the file is missing or unreadable, or holds something else than an EdgeTAM state dict
            (e.g. a SAM 2 / RepViT-SAM / classifier checkpoint); the message names what was found.
    """
    path, label = checkpoint_path(source, "EdgeTAM")
    obj: Any = source if path is None else load_torch(path)
    sd = obj.get("model", obj) if isinstance(obj, Mapping) else obj
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(
            f"{label} is not an EdgeTAM checkpoint: expected {{'model': state_dict}} (the authors' edgetam.pt), "
            f"found {_describe(obj)}."
        )
    missing = [p.rstrip(".") for p in EDGETAM_KEY_PREFIXES if not any(k.startswith(p) for k in sd)]
    if missing:
        hint = ""
        if any(".trunk." in k and "blocks." in k for k in sd) and "spatial_perceiver" in missing:
            hint = " It looks like a SAM 2 checkpoint without EdgeTAM's spatial perceiver."
        elif "sam_prompt_encoder" in missing and any(k.startswith("prompt_encoder.") for k in sd):
            hint = " It looks like a SAM (v1) / RepViT-SAM / EdgeSAM checkpoint: load it with build_repvit_sam."
        raise CheckpointError(
            f"{label} is not an EdgeTAM checkpoint: it has no {', '.join(missing)} weights.{hint}"
        )
    return dict(sd)


def save_edgetam(model: torch.nn.Module, path: str | os.PathLike) -> Path:
    """Write ``{"model": model.state_dict()}`` atomically, in the authors' layout (loads with their code too when
    the trunk is not fused)."""
    sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return atomic_write(path, lambda tmp: torch.save({"model": sd}, tmp))
