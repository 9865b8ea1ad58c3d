"""Import optional dependencies with an error that names the pip extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require"]

_EXTRAS = {
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "onnxscript": "onnx",
    "openvino": "openvino",
    "nncf": "openvino",
    "executorch": "executorch",
    "torchao": "executorch",
    "litert_torch": "tflite",
    "ai_edge_litert": "tflite",
    "coremltools": "coreml",
    "matplotlib": "plot",
}


def require(module: str, purpose: str = "") -> ModuleType:
    """Import ``module`` or raise an ImportError naming the ``repvit`` extra that provides it.

    Args:
        module: top-level module name, e.g. ``"onnxruntime"``.
        purpose: what it is needed for, used in the message.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        extra = _EXTRAS.get(module.split(".")[0], module)
        why = f" for {purpose}" if purpose else ""
        raise ImportError(f"{module} is needed{why} but is not installed: pip install 'repvit-pytorch[{extra}]'") from e
