"""Compatibility path: the classification task lives in :mod:`repvit.classification.task`."""

from repvit.classification.task import (  # noqa: F401 - _finetune_file: kept for old imports
    ClassifyTask,
    _finetune_file,
    build_criterion,
    build_model,
    train,
)

__all__ = ["ClassifyTask", "build_model", "build_criterion", "train"]
