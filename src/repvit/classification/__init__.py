"""Image classification, a task on the shared engine (:mod:`repvit.engine`): ``repvit train``, ``eval`` and
``predict``.

* :mod:`.config`   — :class:`TrainConfig` (the engine's fields plus augmentation, Mixup/CutMix, distillation)
* :mod:`.task`     — :class:`ClassifyTask`, :func:`build_model`, :func:`train` (the entry point)
* :mod:`.evaluate` — :func:`evaluate` (top-1/top-5 over a loader), :func:`evaluate_checkpoint`
* :mod:`.predict`  — :func:`predict_images`: top-k classes with names for image files
* :mod:`.distill`  — :class:`DistillationLoss` (DeiT style), :func:`load_teacher`
"""

from .config import TrainConfig, load_config
from .distill import DistillationLoss, load_teacher
from .evaluate import evaluate, evaluate_checkpoint
from .predict import predict_images
from .task import ClassifyTask, build_criterion, build_model, train

__all__ = [
    "train",
    "TrainConfig",
    "load_config",
    "ClassifyTask",
    "build_model",
    "build_criterion",
    "evaluate",
    "evaluate_checkpoint",
    "predict_images",
    "DistillationLoss",
    "load_teacher",
]
