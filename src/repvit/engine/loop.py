"""The epoch loop: ``train_one_epoch``, readable top to bottom.

It takes the objects it uses (no ``args``); the task's ``step_fn`` computes the loss. A non-finite loss raises
:class:`NonFiniteLossError` naming the step, before the optimiser touches the weights, so the last checkpoint on disk
stays the last good one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from .amp import autocast_context
from .optim import clip_gradients

__all__ = ["NonFiniteLossError", "StepOptions", "EpochStats", "train_one_epoch"]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; ``step`` is the global optimiser step at which it happened."""

    def __init__(self, message: str, step: int, epoch: int):
        super().__init__(message)
        self.step, self.epoch = step, epoch


@dataclass(frozen=True)
class StepOptions:
    """How one optimisation step is done."""

    clip_grad: float | None = None
    clip_mode: str = "agc"
    amp: bool = False
    amp_dtype: torch.dtype = torch.bfloat16
    channels_last: bool = False


@dataclass
class EpochStats:
    loss: float = 0.0
    images: int = 0
    steps: int = 0
    batches: int = 0  # batches taken from the loader (a batch of only unreadable images counts, but is no step)
    seconds: float = 0.0
    stopped: bool = False  # should_stop() asked to stop early (Ctrl-C)

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


def train_one_epoch(
    model: nn.Module,
    step_fn: Callable[[Any], tuple[torch.Tensor, int] | None],
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    *,
    epoch: int,
    device: torch.device,
    start_step: int = 0,
    max_steps: int | None = None,
    scheduler=None,
    scaler: torch.amp.GradScaler | None = None,
    ema=None,
    options: StepOptions = StepOptions(),
    progress=None,
    should_stop: Callable[[], bool] | None = None,
) -> EpochStats:
    """Train for one epoch; returns the mean loss and throughput.

    Args:
        model: the model being trained (its parameters are clipped; ``step_fn`` calls it, maybe DDP-wrapped).
        step_fn: ``step_fn(batch) -> (loss, images)``, run inside autocast; ``None`` skips an empty batch
            (see :meth:`repvit.engine.task.Task.train_step`).
        start_step: optimiser steps done before this epoch (the scheduler is stepped per update).
        max_steps: stop the epoch once this many optimiser steps are done in all (training by iterations).
        scaler: a GradScaler for fp16 on CUDA (None otherwise).
        ema: a timm ``ModelEmaV3`` updated after every step.
        progress: a tqdm bar (or None); its postfix shows loss, lr and images/s.
        should_stop: polled after every step; when it returns True the epoch ends early with ``stopped`` set.
    """
    model.train()
    stats = EpochStats()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)  # on the loss's device: no sync per step
    step = start_step
    t0 = time.perf_counter()
    params = [p for p in model.parameters() if p.requires_grad]
    for i, batch in enumerate(loader):
        if max_steps is not None and step >= max_steps:
            break
        stats.batches += 1
        with autocast_context(device, options.amp, options.amp_dtype):
            res = step_fn(batch)
        if res is None:
            continue
        loss, n = res
        _check_finite(loss, step + 1, epoch, i)
        _update(loss, optimizer, params, scaler, options)
        step += 1
        _after_update(model, step, ema, scheduler)
        loss_sum += loss.detach().double() * n
        stats.images += n
        stats.steps += 1
        if progress is not None:
            _show(progress, loss, optimizer, stats.images / max(time.perf_counter() - t0, 1e-9))
        if should_stop is not None and should_stop():
            stats.stopped = True
            break
    stats.seconds = time.perf_counter() - t0
    stats.loss = float(loss_sum / max(stats.images, 1))
    return stats


def _check_finite(loss: torch.Tensor, step: int, epoch: int, batch: int) -> None:
    """Raise :class:`NonFiniteLossError` for a NaN or infinite loss, before the update of ``step``."""
    if not math.isfinite(loss.item()):
        raise NonFiniteLossError(
            f"loss is {loss.item()} at step {step} (epoch {epoch}, batch {batch}); training stopped before "
            "this update, so the last checkpoint holds the last good weights. Lower the learning rate, enable "
            "--set clip_grad=..., or check the data.", step, epoch)


def _update(loss: torch.Tensor, optimizer: torch.optim.Optimizer, params: list[torch.Tensor],
            scaler: torch.amp.GradScaler | None, options: StepOptions) -> None:
    """One optimiser update from ``loss``: backward (scaled under fp16), gradient clipping, step."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        if options.clip_grad:
            scaler.unscale_(optimizer)
            clip_gradients(params, options.clip_grad, options.clip_mode)
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        if options.clip_grad:
            clip_gradients(params, options.clip_grad, options.clip_mode)
        optimizer.step()


def _after_update(model: nn.Module, step: int, ema, scheduler) -> None:
    """After optimiser step ``step``: update the EMA weights and the learning rate."""
    if ema is not None:
        ema.update(model, step=step)
    if scheduler is not None:
        scheduler.step_update(num_updates=step)


def _show(progress, loss: torch.Tensor, optimizer: torch.optim.Optimizer, images_per_s: float) -> None:
    """Advance the progress bar by one step; its postfix shows loss, lr and images/s."""
    progress.update(1)
    progress.set_postfix(loss=f"{loss.item():.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}",
                         img_s=f"{images_per_s:.0f}", refresh=False)
