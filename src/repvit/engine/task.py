"""What differs between training jobs: a :class:`Task`. The engine (:func:`repvit.engine.run.run_task`) does the rest.

Every task package implements one (or more) and shares one engine, and with it atomic checkpoints, exact resume
(also inside an epoch, after Ctrl-C), torchrun DDP, AMP, EMA, the progress bar, ``metrics.jsonl`` and the curves PNG.
A task supplies the data, the model, one training step's loss and the evaluation; nothing else.

Contract, in the order the engine calls it::

    task.bind(cfg, info, resuming=...)        # the run this task is part of: task.cfg, task.info, task.resuming
    data  = task.build_data(cfg, info)        # TaskData: train/val data sets, collate, meta (plain data)
    task.check_resume(ckpt, cfg, data, path)  # when resuming: refuse a checkpoint of another run
    model = task.build_model(cfg, data)       # on CPU; task.resuming says whether a checkpoint will be loaded
    task.prepare(model, data, device)         # optional: teachers, losses, ...
    loss, n = task.train_step(model, batch, device)   # per batch, inside autocast; model may be DDP-wrapped
    metrics = task.evaluate(model, loader, device)    # every rank on its shard; reduced across ranks

``evaluate`` returns a dict whose ``best_metric`` entry (higher is better) picks ``best.pt``; its int and float
entries go into ``metrics.jsonl`` with a ``val_`` prefix.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
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
        collate: the batch collate of both loaders (None: :mod:`repvit.data.loader`'s default, which stacks images
            and labels and drops unreadable images).
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
    # the curves PNG's right panel: (metrics.jsonl key, legend label) pairs; None: val_ and ema_ of best_metric
    plot_series: ClassVar[tuple[tuple[str, str], ...] | None] = None
    # meta entries a resumed run must share with its checkpoint, with the noun the error names them by
    resume_meta: ClassVar[Mapping[str, str]] = {}

    # The run this task is part of, set by bind() (the engine calls it once, before build_data)
    cfg: Any = None  # the run's config (the task's EngineConfig subclass)
    info: Any = None  # the run's repvit.engine.distributed.DistInfo
    resuming: bool = False  # True when a checkpoint is loaded after build_model

    def bind(self, cfg, info, *, resuming: bool = False) -> None:
        """Tell the task about the run it is part of: sets ``cfg``, ``info`` and ``resuming``.

        The engine calls it before :meth:`build_data`; code that drives a task by hand (an evaluation outside
        training) calls it too.
        """
        self.cfg, self.info, self.resuming = cfg, info, resuming

    def check_resume(self, ckpt: Mapping[str, Any], cfg, data: TaskData, path) -> None:
        """Refuse to resume from ``ckpt`` (read from ``path``) when it is not a checkpoint of this run: another
        task, another model, or other values of the :attr:`resume_meta` entries.

        Raises:
            ValueError: naming what the checkpoint is and what this run is.
        """
        saved_model = ckpt["config"].get("model")
        saved_task = ckpt.get("task")
        saved_meta = ckpt.get("meta") or {}
        differs = saved_task != self.name or saved_model != cfg.model
        for key in self.resume_meta:
            old, new = saved_meta.get(key), data.meta.get(key)
            differs |= old is not None and new is not None and old != new
        if differs:
            def with_meta(meta: Mapping[str, Any]) -> str:
                return "".join(f" with {meta.get(k)} {noun}" for k, noun in self.resume_meta.items())

            raise ValueError(f"cannot resume {path}: it is a {saved_task} run of {saved_model}{with_meta(saved_meta)}, "
                             f"this run is a {self.name} run of {cfg.model}{with_meta(data.meta)}.")

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
