"""The epoch loop: ``train_one_epoch`` and ``evaluate``, readable top to bottom.

Both take the objects they use (no ``args``). A non-finite loss raises :class:`NonFiniteLossError` naming the step,
before the optimiser touches the weights, so the last checkpoint on disk stays the last good one.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .distributed import all_reduce_sum

__all__ = ["NonFiniteLossError", "StepOptions", "EpochStats", "train_one_epoch", "evaluate", "autocast_context"]


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


def autocast_context(device: torch.device, enabled: bool, dtype: torch.dtype):
    """``torch.autocast`` for ``device`` when enabled, else a no-op."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _unpack(batch) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    if len(batch) == 3:
        return batch
    return batch[0], batch[1], []


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
            (see :meth:`repvit.train.task.Task.train_step`).
        start_step: optimiser steps done before this epoch (the scheduler is stepped per update).
        max_steps: stop the epoch once this many optimiser steps are done in all (training by iterations).
        scaler: a GradScaler for fp16 on CUDA (None otherwise).
        ema: a timm ``ModelEmaV3`` updated after every step.
        progress: a tqdm bar (or None); its postfix shows loss, lr and images/s.
        should_stop: polled after every step; when it returns True the epoch ends early with ``stopped`` set.
    """
    from timm.utils import dispatch_clip_grad

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
        if not math.isfinite(loss.item()):
            raise NonFiniteLossError(
                f"loss is {loss.item()} at step {step + 1} (epoch {epoch}, batch {i}); training stopped before "
                "this update, so the last checkpoint holds the last good weights. Lower the learning rate, enable "
                "--set clip_grad=..., or check the data.", step + 1, epoch)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            if options.clip_grad:
                scaler.unscale_(optimizer)
                dispatch_clip_grad(params, options.clip_grad, mode=options.clip_mode)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            if options.clip_grad:
                dispatch_clip_grad(params, options.clip_grad, mode=options.clip_mode)
            optimizer.step()
        step += 1
        if ema is not None:
            ema.update(model, step=step)
        if scheduler is not None:
            scheduler.step_update(num_updates=step)
        loss_sum += loss.detach().double() * n
        stats.images += n
        stats.steps += 1
        if progress is not None:
            el = time.perf_counter() - t0
            progress.update(1)
            progress.set_postfix(loss=f"{loss.item():.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}",
                                 img_s=f"{stats.images / max(el, 1e-9):.0f}", refresh=False)
        if should_stop is not None and should_stop():
            stats.stopped = True
            break
    stats.seconds = time.perf_counter() - t0
    stats.loss = float(loss_sum / max(stats.images, 1))
    return stats


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, device: torch.device, *, amp: bool = False,
             amp_dtype: torch.dtype = torch.bfloat16, channels_last: bool = False) -> dict[str, Any]:
    """Top-1, top-5 (top-k with k = min(5, classes)), mean cross-entropy and image count.

    Under DDP each process evaluates its own shard and the sums are all-reduced, so every image counts once.
    Unreadable images (ImageFolder, not strict) are skipped and listed under ``bad_images``.
    """
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64)  # correct1, correct5, loss_sum, images
    bad: list[str] = []
    for batch in loader:
        x, y, b = _unpack(batch)
        bad.extend(b)
        if x.numel() == 0:
            continue
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast_context(device, amp, amp_dtype):
            out = model(x)
        if isinstance(out, (tuple, list)):
            out = (out[0] + out[1]) / 2
        out = out.float()
        k = min(5, out.shape[1])
        topk = out.topk(k, dim=1).indices
        hit = topk.eq(y[:, None])
        sums += torch.tensor([hit[:, 0].sum().item(), hit.any(dim=1).sum().item(),
                              F.cross_entropy(out, y, reduction="sum").item(), x.shape[0]], dtype=torch.float64)
    sums = all_reduce_sum(sums)
    n = max(sums[3].item(), 1)
    return {"top1": 100.0 * sums[0].item() / n, "top5": 100.0 * sums[1].item() / n, "loss": sums[2].item() / n,
            "images": int(sums[3].item()), "bad_images": bad}
