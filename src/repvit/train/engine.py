"""Compatibility path: the epoch loop lives in :mod:`repvit.engine.loop`, the autocast context in
:mod:`repvit.engine.amp`, and classification's top-1/top-5 ``evaluate`` in :mod:`repvit.classification.evaluate`."""

from repvit.classification.evaluate import evaluate
from repvit.engine.amp import autocast_context
from repvit.engine.loop import EpochStats, NonFiniteLossError, StepOptions, train_one_epoch

__all__ = ["NonFiniteLossError", "StepOptions", "EpochStats", "train_one_epoch", "evaluate", "autocast_context"]
