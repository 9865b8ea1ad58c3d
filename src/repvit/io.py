"""Files in and out, the same way everywhere: atomic writes, safe loading, safetensors, "whose checkpoint is this".

* :func:`atomic_write` writes through a temporary file beside the target and renames it into place, so a failure
  (full disk, Ctrl-C, SIGKILL) never leaves a half-written checkpoint, export or result.
* :func:`load_torch` reads a ``torch.save`` file with ``weights_only=True`` (plain data and tensors only) and turns
  every failure into one :class:`CheckpointError` that says what is wrong and what to do.
* :func:`read_safetensors` reads a ``.safetensors`` file: its tensors and its string metadata.
* :func:`strip_prefixes` removes the wrapper prefixes (DDP ``module.``, ``torch.compile``'s ``_orig_mod.``, ``model.``)
  that a state dict may carry.
* :func:`checkpoint_task` / :func:`check_task`: training checkpoints of ``repvit train``, ``repvit segment train``,
  ``repvit detect train`` and ``repvit sam distill`` record their task; a checkpoint of another task is refused with
  an error that names both tasks.

This module sits below every other package of repvit but :mod:`repvit.tasks`: it imports only that, torch (and
safetensors when asked).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from repvit.tasks import TASKS

__all__ = [
    "CheckpointError",
    "WrongTaskError",
    "atomic_write",
    "load_torch",
    "read_safetensors",
    "strip_prefixes",
    "checkpoint_task",
    "check_task",
]


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read or understood."""


class WrongTaskError(CheckpointError):
    """A training checkpoint of another task than the one asked for."""


def atomic_write(path: str | os.PathLike, write_fn: Callable[[str], Any], *, suffix: str = ".tmp") -> Path:
    """Call ``write_fn(tmp_path)`` on a temporary file beside ``path`` and rename it into place.

    If anything fails (a full disk, an interrupt, an error ``write_fn`` raises after checking what it wrote) the
    temporary file is deleted and any existing ``path`` stays as it was. ``write_fn`` may stream into the file
    (a download); ``suffix`` names the temporary file (``.part`` for downloads).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write_fn(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def load_torch(path: str | os.PathLike) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with readable errors.

    ``argparse.Namespace`` is allowed besides plain data, because the authors' (DeiT-style) checkpoints store their
    arguments in one.

    Raises:
        CheckpointError: the file holds Python objects other than plain data, or is corrupt, truncated or not a
            PyTorch file.
    """
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - every failure becomes one readable error
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "Weights only load failed" in str(e) or "Unsupported global" in str(e):
            raise CheckpointError(
                f"{path} holds Python objects that are not plain data, so it is not loaded (repvit only loads "
                f"checkpoints with weights_only=True). Re-save just the state dict: "
                f"torch.save(model.state_dict(), 'weights.pth'). Detail: {msg}"
            ) from None
        raise CheckpointError(
            f"could not read {path}: the file is corrupt or truncated, or not a PyTorch checkpoint "
            f"({type(e).__name__}: {msg}). Download or export it again."
        ) from None


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and the string metadata of a ``.safetensors`` file (on the CPU).

    Raises:
        CheckpointError: the file is corrupt or truncated.
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            sd = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(
            f"could not read {path}: the safetensors file is corrupt or truncated ({type(e).__name__}: {e}). "
            "Download or export it again."
        ) from None
    return sd, meta


def strip_prefixes(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``sd`` without the prefixes every key shares among ``module.`` (DDP), ``_orig_mod.`` (torch.compile) and
    ``model.``, in that order."""
    for prefix in ("module.", "_orig_mod.", "model."):
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def checkpoint_task(obj: Any) -> str | None:
    """The task a loaded training checkpoint belongs to (``classify``, ``segment``, ``detect``, ``sam-distill``), or
    None when ``obj`` is not a training checkpoint (a bare state dict, an export, another project's file).
    """
    if not (isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping)):
        return None
    return str(obj["task"]) if "task" in obj else None


def check_task(ckpt: Any, task: str, source: str | os.PathLike | None = None, hint: str = "") -> None:
    """Refuse a checkpoint that is not a training checkpoint of ``task``.

    Args:
        ckpt: the loaded checkpoint (a dict).
        task: the task expected, a key of :data:`repvit.tasks.TASKS`.
        source: the file (or a description) named in the error.
        hint: a sentence appended to the error, e.g. how to start from another task's weights.

    Raises:
        WrongTaskError: ``ckpt`` belongs to another task (or to none).
    """
    found = checkpoint_task(ckpt)
    if found == task:
        return
    spec = TASKS.get(task)
    what, command = (spec.checkpoint, spec.command) if spec else (f"a {task} checkpoint", f"the {task} task")
    label = source if source is not None else "the checkpoint"
    got = f"a training checkpoint of task {found!r}" if found is not None else "not a training checkpoint"
    raise WrongTaskError(f"{label} is {got}, not of `{command}` ({what} was expected)." + (f" {hint}" if hint else ""))
