"""Compatibility path: ``run_task`` lives in :mod:`repvit.engine.run`, the optimiser and schedule builders in
:mod:`repvit.engine.optim`, classification's ``train`` in :mod:`repvit.classification.task` and ``build_model`` in
:mod:`repvit.classification.model`."""

from repvit.classification.config import TrainConfig
from repvit.classification.model import build_model
from repvit.classification.task import train
from repvit.engine.config import EngineConfig
from repvit.engine.optim import build_optimizer, build_scheduler, warmup_steps
from repvit.engine.run import run_task

__all__ = ["train", "run_task", "build_model", "build_optimizer", "build_scheduler", "warmup_steps", "TrainConfig",
           "EngineConfig"]
