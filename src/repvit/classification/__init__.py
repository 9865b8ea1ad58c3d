"""Image classification, a task on the shared engine (:mod:`repvit.engine`): ``repvit train``, ``eval`` and
``predict``.

* :mod:`.config`   — :class:`TrainConfig` (the engine's fields plus augmentation, Mixup/CutMix, distillation)
* :mod:`.model`    — :func:`build_model` (the student, with fine-tune weights by file or published name)
* :mod:`.data`     — :func:`build_classification_data` (digits or ImageFolder, timm's augmentation), the data config
* :mod:`.evaluate` — :func:`evaluate` (top-1/top-5 over a loader), :func:`evaluate_checkpoint`
* :mod:`.predict`  — :func:`predict_images`: top-k classes with names for image files
* :mod:`.distill`  — :class:`DistillationLoss` (DeiT style), :func:`load_teacher`, :func:`build_criterion`
* :mod:`.task`     — :class:`ClassifyTask`, :func:`train` (the entry point)

Top-1/top-5 are counted inside :func:`evaluate`'s loop (a few lines, not a function of their own), so there is no
``metrics.py``.
"""

from .config import TrainConfig, load_config
from .distill import DistillationLoss, build_criterion, load_teacher
from .evaluate import evaluate, evaluate_checkpoint
from .model import build_model
from .predict import predict_images
from .task import ClassifyTask, train

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
