"""TFLite (LiteRT) export through ``litert-torch`` and running ``.tflite`` files in the LiteRT interpreter.

``litert_torch.convert(model, (example,))`` lowers the fused model through ``torch.export`` to a TFLite flatbuffer
with a fixed input shape; the input stays NCHW, as in PyTorch (the converter inserts the layout changes). The file
runs in ``ai_edge_litert.interpreter.Interpreter`` (the LiteRT runtime, no TensorFlow needed), which applies its
XNNPACK delegate on the CPU.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import torch
import torch.nn as nn

from repvit.runtime import require

__all__ = ["export_tflite_bytes", "load_interpreter", "run_interpreter"]


def export_tflite_bytes(net: nn.Module, example: torch.Tensor) -> bytes:
    """Convert ``net`` (fused, eval) at ``example``'s fixed shape with litert-torch and return the ``.tflite`` bytes.

    Raises:
        ImportError: litert-torch is not installed (names the pip extra).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        litert_torch = require("litert_torch", "TFLite export")
    # the converter prints a progress line per pass to stdout; keep the library's own output quiet
    with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        converted = litert_torch.convert(net.eval(), (example.detach().float().cpu(),))
    return bytes(converted.model_content())


def load_interpreter(src: str | bytes, threads: int = 2):
    """A LiteRT interpreter over a ``.tflite`` path or its bytes, tensors allocated, ``threads`` CPU threads."""
    mod = require("ai_edge_litert.interpreter", "running TFLite models")
    kw = {"model_content": src} if isinstance(src, bytes) else {"model_path": str(src)}
    interp = mod.Interpreter(num_threads=int(threads), **kw)
    interp.allocate_tensors()
    return interp


def run_interpreter(interp, x: torch.Tensor) -> list[torch.Tensor]:
    """Run one input through a LiteRT interpreter; outputs as tensors, in the model's output order."""
    inp = interp.get_input_details()[0]
    arr = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
    if tuple(inp["shape"]) != arr.shape:
        raise ValueError(f"the TFLite model takes input shape {tuple(inp['shape'])}, got {arr.shape}.")
    interp.set_tensor(inp["index"], arr)
    interp.invoke()
    return [torch.from_numpy(interp.get_tensor(o["index"]).copy()) for o in interp.get_output_details()]
