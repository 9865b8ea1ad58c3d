"""Compatibility path: the distillation loss lives in :mod:`repvit.classification.distill`."""

from repvit.classification.distill import DistillationLoss, load_teacher

__all__ = ["DistillationLoss", "load_teacher"]
