"""TorchScript export: trace the fused model, freeze it, and save it."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn as nn

__all__ = ["trace_and_freeze", "save_torchscript"]

_LOG = logging.getLogger(__name__)


def trace_and_freeze(model: nn.Module, example: torch.Tensor, optimize: bool = True) -> torch.jit.ScriptModule:
    """Trace ``model`` on ``example`` and freeze it (weights become constants, eval mode).

    Args:
        model: the module to trace (it is not modified; tracing uses an eval-mode copy's forward).
        example: an input tensor; the traced graph works for other batch sizes and image sizes as well, since
            RepViT's forward has no shape-dependent Python control flow.
        optimize: also run ``torch.jit.optimize_for_inference`` (conv/add/relu folding for the CPU).
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            traced = torch.jit.trace(model, (example,), check_trace=False, strict=False)
            frozen = torch.jit.freeze(traced)
            if optimize:
                frozen = torch.jit.optimize_for_inference(frozen)
    finally:
        model.train(was_training)
    return frozen


def save_torchscript(
    module: torch.jit.ScriptModule, path: str | Path, extra_files: dict[str, str] | None = None
) -> Path:
    """Save a TorchScript module atomically, with optional ``_extra_files`` (e.g. a JSON metadata string)."""
    from repvit.io import atomic_write

    path = Path(path)
    files = {k: v.encode() for k, v in (extra_files or {}).items()}
    atomic_write(path, lambda f: torch.jit.save(module, f, _extra_files=files))
    _LOG.info("wrote TorchScript %s", path)
    return path
