"""Where a run executes: one device resolver and one CPU-thread setter for every command and library call, and the
one importer of optional dependencies.

``--device auto|cpu|cuda`` (and ``cuda:N``) means the same thing everywhere: :func:`resolve_device` turns it into a
:class:`torch.device`, with ``auto`` picking CUDA when this torch sees a GPU and the CPU otherwise, and a clear error
when CUDA is asked for but absent. :func:`set_threads` / :func:`torch_threads` set torch's intra-op CPU threads.
This module imports torch only when called, so the CLI can use :func:`device_arg` and :func:`add_device_arg` while
parsing arguments. :func:`require` imports an optional dependency or raises an ImportError naming the pip extra that
installs it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["DEVICE_CHOICES", "add_device_arg", "device_arg", "resolve_device", "set_threads", "torch_threads",
           "require", "require_pyplot"]

DEVICE_CHOICES = ("auto", "cpu", "cuda")

# top-level module -> the extra of repvit-pytorch (pyproject.toml) that installs it
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
    "sklearn": "digits",
    "pycocotools": "dense",
    "segment_anything": "sam",
    "gradio": "app",
}


def require(module: str, purpose: str = "", *, extra: str | None = None) -> ModuleType:
    """Import ``module`` or raise an ImportError naming the ``repvit-pytorch`` extra that provides it.

    Args:
        module: the module, e.g. ``"onnxruntime"`` or ``"pycocotools.cocoeval"``.
        purpose: what it is needed for, used in the message.
        extra: the extra to name; by default the one that installs the top-level module.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        extra = extra or _EXTRAS.get(module.split(".")[0], module)
        why = f" for {purpose}" if purpose else ""
        raise ImportError(f"{module} is needed{why} but is not installed: pip install 'repvit-pytorch[{extra}]'") from e


def require_pyplot(purpose: str = "") -> ModuleType:
    """``matplotlib.pyplot`` on the file-only Agg backend, or an ImportError naming the ``plot`` extra."""
    require("matplotlib", purpose).use("Agg")
    return importlib.import_module("matplotlib.pyplot")


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """The :class:`torch.device` a ``--device`` value names.

    Args:
        spec: ``"auto"`` (or None): CUDA when available, else the CPU; ``"cpu"``; ``"cuda"`` or ``"cuda:N"``; or a
            :class:`torch.device`.

    Raises:
        ValueError: the spec is not a device name, or it names CUDA and this torch sees no CUDA device.
    """
    import torch

    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(spec, torch.device):
        dev = spec
    else:
        try:
            dev = torch.device(spec.strip().lower())
        except (RuntimeError, TypeError, AttributeError) as e:
            raise ValueError(f"unknown device {spec!r}: use one of auto, cpu, cuda (or cuda:N).") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec!s} was asked for but this torch sees no CUDA device; use --device cpu "
                             "(or --device auto, which picks the GPU only when there is one).")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {spec!s}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                             f"numbered from 0.")
    return dev


def device_arg(value: str) -> str:
    """An argparse ``type`` for ``--device``: accepts auto, cpu, cuda and cuda:N (checked, not yet resolved)."""
    v = value.strip().lower()
    if v in DEVICE_CHOICES or (v.startswith("cuda:") and v[5:].isdigit()):
        return v
    raise argparse.ArgumentTypeError(f"invalid device {value!r} (choose from auto, cpu, cuda, cuda:N)")


def add_device_arg(parser: argparse.ArgumentParser, default: str | None = "cpu", help: str | None = None) -> None:
    """Add ``--device`` (auto, cpu, cuda, cuda:N; checked by :func:`device_arg`) to a command's parser."""
    where = f" (default {default})" if default else ""
    parser.add_argument("--device", default=default, type=device_arg, metavar="{" + ",".join(DEVICE_CHOICES) + "}",
                        help=help or f"auto (cuda when available), cpu, cuda or cuda:N{where}")


def set_threads(n: int | None) -> int:
    """Set torch's intra-op CPU threads to ``n`` (None or 0 leaves them); returns the number there was before.

    Raises:
        ValueError: ``n`` is negative.
    """
    import torch

    before = torch.get_num_threads()
    if n is not None and n < 0:
        raise ValueError(f"threads must be a positive number, got {n}.")
    if n:
        torch.set_num_threads(int(n))
    return before


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads (None: unchanged) and restore the previous number afterwards."""
    import torch

    before = set_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
