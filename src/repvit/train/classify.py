"""Compatibility path: the classification task lives in :mod:`repvit.classification.task`, its model in
:mod:`repvit.classification.model` and its loss in :mod:`repvit.classification.distill`."""

from repvit.classification.distill import build_criterion
from repvit.classification.model import (
    _finetune_file,  # noqa: F401 - kept for old imports
    build_model,
)
from repvit.classification.task import ClassifyTask, train

__all__ = ["ClassifyTask", "build_model", "build_criterion", "train"]
