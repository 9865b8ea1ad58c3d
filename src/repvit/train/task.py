"""What differs between training jobs: a :class:`Task`. The engine (:func:`repvit.train.run.run_task`) does the rest.

Classification, semantic segmentation, detection and SAM distillation are tasks; they share one engine, and with it
atomic checkpoints, exact resume (also inside an epoch, after Ctrl-C), torchrun DDP, AMP, EMA, the progress bar,
``metrics.jsonl`` and the curves PNG. A task supplies the data, the model, one training step's loss and the
evaluation; nothing else.

Contract, in the order the engine calls it (``task.cfg`` and ``task.info`` are set by the engine first)::

    data  = task.build_data(cfg, info)        # TaskData: train/val data sets, collate, meta (plain data)
    model = task.build_model(cfg, data)       # on CPU; task.resuming says whether a checkpoint will be loaded
    task.prepare(model, data, device)         # optional: teachers, losses, ...
    loss, n = task.train_step(model, batch, device)   # per batch, inside autocast; model may be DDP-wrapped
    metrics = task.evaluate(model, loader, device)    # every rank on its shard; reduced across ranks

``evaluate`` returns a dict whose ``best_metric`` entry (higher is better) picks ``best.pt``; its int and float
entries go into ``metrics.jsonl`` with a ``val_`` prefix.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn as nn
from torch.utils.data import Dataset

__all__ = ["TaskData", "Task"]


@dataclass
class TaskData:
    """A task's data.

    Attributes:
        train: the training set; items are whatever ``collate`` and ``train_step`` expect.
        val: the held-out set (each rank evaluates every ``world_size``-th item).
        collate: the batch collate of both loaders (None: the classification collate, which stacks images and
            drops unreadable ones).
        meta: plain, JSON-able data saved in every checkpoint under ``meta`` (class names, class count, id maps).
    """

    train: Dataset
    val: Dataset
    collate: Callable | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class Task(ABC):
    """One kind of training job. Subclasses set ``name`` and ``best_metric`` and implement the four methods."""

    name: ClassVar[str] = "task"
    best_metric: ClassVar[str] = "score"  # a key of evaluate()'s dict; higher is better
    find_unused_parameters: ClassVar[bool] = False  # passed to DistributedDataParallel
    default_eval_batch_size: ClassVar[int] = 8  # when cfg.eval_batch_size is None
    plot_label: ClassVar[str] = "validation metric"  # the y label of the curves PNG's right panel

    cfg: Any = None  # set by the engine before build_data
    info: Any = None  # the run's repvit.train.distributed.DistInfo, set by the engine
    resuming: bool = False  # set by the engine: True when a checkpoint is loaded after build_model

    @abstractmethod
    def build_data(self, cfg, info) -> TaskData:
        """The train and val sets (every rank builds the same ones)."""

    @abstractmethod
    def build_model(self, cfg, data: TaskData) -> nn.Module:
        """The model on CPU, with its initial weights (skip loading them when ``self.resuming``)."""

    def prepare(self, model: nn.Module, data: TaskData, device: torch.device) -> None:  # noqa: B027
        """Called once after the model is on ``device`` (teachers, loss functions); default: nothing."""

    @abstractmethod
    def train_step(self, model: nn.Module, batch: Any, device: torch.device) -> tuple[torch.Tensor, int] | None:
        """The loss of one batch and its image count; ``None`` skips a batch with nothing in it.

        Called inside autocast (when AMP is on); ``model`` may be DDP-wrapped; move ``batch`` to ``device`` here.
        """

    @abstractmethod
    def evaluate(self, model: nn.Module, loader, device: torch.device) -> dict[str, Any]:
        """Metrics on this rank's shard, reduced across ranks, so every rank returns the same plain numbers."""

    def checkpoint_extra(self, data: TaskData, best: float) -> dict[str, Any]:
        """Extra top-level checkpoint entries (plain data); default: none."""
        return {}

    def describe(self, metrics: dict[str, Any]) -> str:
        """A few words for the epoch log line; default: the best metric."""
        v = metrics.get(self.best_metric)
        return f"val {self.best_metric} {v:.4f}" if isinstance(v, (int, float)) else ""
