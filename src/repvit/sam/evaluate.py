"""SAM distillation's held-out evaluation: :func:`evaluate_prompt_distill` scores any phase-1 or phase-2 student
(mask loss and mIoU against the teacher's masks on fixed prompts, embedding MSE) on the same held-out images, so the
two phases compare. During training each task evaluates itself (:meth:`SamDistillTask.evaluate`,
:meth:`SamPromptDistillTask.evaluate`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from repvit.runtime import resolve_device

from .config import SamDistillConfig
from .prompt_distill import SamPromptDistillTask

__all__ = ["evaluate_prompt_distill"]


def evaluate_prompt_distill(cfg: SamDistillConfig, init: str | Path | None, teacher: nn.Module | None = None,
                            device: str | torch.device = "cpu", prompt_masks: str | None = None) -> dict[str, Any]:
    """The held-out metrics of :meth:`SamPromptDistillTask.evaluate` for the encoder in ``init`` (a phase-1 or
    phase-2 checkpoint, any RepViT-SAM format; None: the untrained student of ``cfg.seed``) with the teacher's
    prompt encoder and mask decoder; for a phase-2 training checkpoint, with its own (trained) decoder. Compares
    phase 1 and phase 2 on the same prompts."""
    from repvit.data.loader import eval_loader
    from repvit.engine.checkpoint import load_train_checkpoint
    from repvit.engine.distributed import DistInfo

    cfg = cfg.replace(phase="prompt", init=None if init is None else str(init))
    dev = resolve_device(device)
    task = SamPromptDistillTask(teacher, prompt_masks or cfg.prompt_masks)
    task.bind(cfg, DistInfo(device=dev))
    data = task.build_data(cfg, task.info)
    torch.manual_seed(cfg.seed)  # as the engine, before building the student
    model = task.build_model(cfg, data)
    ck = None
    if init is not None and Path(init).suffix == ".pt":
        ck = load_train_checkpoint(init)
    if ck is not None and ck.get("task") == SamPromptDistillTask.name:
        model.load_state_dict(ck["model"])
    model.to(dev)
    task.prepare(model, data, dev)
    loader = eval_loader(data.val, cfg.eval_batch_size or task.default_eval_batch_size, collate_fn=data.collate)
    return task.evaluate(model, loader, dev)
