"""Mixed precision: the ``amp_dtype`` config string as a torch dtype, and the autocast context every task uses."""

from __future__ import annotations

import contextlib

import torch

__all__ = ["amp_dtype", "autocast_context"]


def amp_dtype(name: str | None) -> torch.dtype:
    """``"float16"`` -> ``torch.float16``; anything else (``"bfloat16"``, the default) -> ``torch.bfloat16``."""
    return torch.float16 if name == "float16" else torch.bfloat16


def autocast_context(device: torch.device, enabled: bool, dtype: torch.dtype | str = torch.bfloat16):
    """``torch.autocast`` for ``device`` when enabled, else a no-op.

    Args:
        dtype: a torch dtype or an ``amp_dtype`` config string (``"bfloat16"`` or ``"float16"``).
    """
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype(dtype) if isinstance(dtype, str) else dtype)
