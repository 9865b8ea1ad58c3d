"""Compatibility path: training checkpoints live in :mod:`repvit.engine.checkpoint`."""

from repvit.engine.checkpoint import (
    find_resume,
    get_rng_state,
    load_train_checkpoint,
    save_train_checkpoint,
    set_rng_state,
)

__all__ = ["get_rng_state", "set_rng_state", "save_train_checkpoint", "load_train_checkpoint", "find_resume"]
