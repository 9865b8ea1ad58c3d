"""Training checkpoints: ``OUTPUT/last.pt`` every epoch and ``OUTPUT/best.pt``, plain data, written atomically.

A checkpoint is a dict loadable with ``torch.load(..., weights_only=True)``::

    model, ema, optimizer, scheduler, scaler   state dicts (ema/scaler may be None)
    epoch                                       the last completed epoch (0-based)
    step                                        optimiser updates so far
    rng                                         python, numpy, torch and every CUDA device's RNG state
    config                                      the resolved config as a dict (``model`` is the model name)
    task, meta, best                            the task's name, its data's plain ``meta``, the best metric so far
    ...                                         the task's own entries (:meth:`Task.checkpoint_extra`)
    resume_batch, rng_ranks                     only when saved inside an epoch (Ctrl-C): the next batch of the
                                                epoch, and every rank's RNG state (``rng`` is rank 0's)

so a task can rebuild its model from the file alone, without being told the model's name.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from repvit.io import CheckpointError, atomic_write, load_torch

__all__ = ["get_rng_state", "set_rng_state", "save_train_checkpoint", "load_train_checkpoint", "find_resume"]

_log = logging.getLogger(__name__)


def get_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch and every CUDA device's RNG state as plain data."""
    np_state = np.random.get_state()
    state = {
        "python": list(random.getstate()[1]) + [random.getstate()[0], random.getstate()[2]],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
        "cuda": [s for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
    }
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned."""
    py = state["python"]
    random.setstate((py[-2], tuple(int(x) for x in py[:-2]), py[-1]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available() and state.get("cuda"):
        for i, s in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s, i)


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def save_train_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temp file, fsync, rename): a failure leaves the old file intact."""
    state = _to_cpu(state)
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_train_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"resume checkpoint {path} does not exist.")
    try:
        ckpt = load_torch(path)
    except CheckpointError as e:
        raise RuntimeError(f"cannot read training checkpoint {path}: {e}") from None
    missing = [k for k in ("model", "optimizer", "epoch", "config") if k not in ckpt]
    if missing:
        raise ValueError(f"{path} is not a repvit training checkpoint (missing {missing}); to start from its "
                         "weights use --set finetune=PATH instead of --resume.")
    return ckpt


def find_resume(resume: str | None, output_dir: str | Path) -> Path | None:
    """``auto`` -> ``OUTPUT/last.pt`` if it exists (else start fresh); a path -> that path; ``None`` -> None."""
    if not resume:
        return None
    if resume == "auto":
        p = Path(output_dir) / "last.pt"
        if p.is_file():
            return p
        _log.info("--resume auto: no %s yet, starting a new run", p)
        return None
    return Path(resume)
