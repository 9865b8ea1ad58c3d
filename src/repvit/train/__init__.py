"""The compatibility path of the training API: every name ``repvit.train`` exported before the engine and the
classification task were split apart, re-exported from where it lives now.

* the task-neutral engine — :mod:`repvit.engine` (``run_task``, ``EngineConfig``, ``Task``, the loop,
  checkpoints, DDP, AMP, EMA, records);
* classification — :mod:`repvit.classification` (``train``, ``TrainConfig``, ``evaluate``,
  ``evaluate_checkpoint``, ``build_model``, ``DistillationLoss``, ...).

New code imports from those packages; the submodules here (``repvit.train.config``, ``.run``, ``.checkpoint``,
``.classify``, ...) are re-exports too. Code inside ``src/repvit`` does not import this package.
"""

from repvit.classification import DistillationLoss, build_model, evaluate, evaluate_checkpoint, load_teacher, train
from repvit.engine import EngineConfig, NonFiniteLossError, Task, TaskData, parse_overrides, run_task, train_one_epoch

from .config import TrainConfig, load_config

__all__ = [
    "EngineConfig",
    "TrainConfig",
    "Task",
    "TaskData",
    "run_task",
    "load_config",
    "parse_overrides",
    "DistillationLoss",
    "load_teacher",
    "NonFiniteLossError",
    "evaluate",
    "train_one_epoch",
    "evaluate_checkpoint",
    "build_model",
    "train",
]
