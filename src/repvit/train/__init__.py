"""Training and evaluation: config, epoch engine, distillation loss, checkpoints/resume, DDP, records."""

from .config import EngineConfig, TrainConfig, load_config, parse_overrides
from .distill import DistillationLoss, load_teacher
from .engine import NonFiniteLossError, evaluate, train_one_epoch
from .evaluate import evaluate_checkpoint
from .run import build_model, run_task, train
from .task import Task, TaskData

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
