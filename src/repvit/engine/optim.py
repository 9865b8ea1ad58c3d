"""The optimiser, the learning-rate schedule and its warm-up cap, and the EMA copy: timm's factories, configured by
an :class:`~repvit.engine.config.EngineConfig`."""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn as nn

from .config import EngineConfig

__all__ = ["build_optimizer", "warmup_steps", "build_scheduler", "build_ema", "clip_gradients", "adaptive_clip_grad_"]

_log = logging.getLogger(__name__)


def build_optimizer(model: nn.Module, cfg: EngineConfig, lr: float) -> torch.optim.Optimizer:
    """timm's ``create_optimizer_v2`` (no weight decay on norms and biases; frozen parameters left out), with
    torch's fused Adam/AdamW kernel when ``cfg.opt_fused`` and the parameters live on CPU or CUDA."""
    from timm.optim import create_optimizer_v2

    kw: dict[str, Any] = {}
    devices = {p.device.type for p in model.parameters()}
    if cfg.opt_fused and cfg.opt.lower() in ("adam", "adamw") and devices <= {"cpu", "cuda"}:
        kw["fused"] = True
    return create_optimizer_v2(model, opt=cfg.opt, lr=lr, weight_decay=cfg.weight_decay, eps=cfg.opt_eps, **kw)


def warmup_steps(cfg: EngineConfig, steps_per_epoch: int, total_steps: int) -> int:
    """The warm-up of a run, in optimiser steps: ``cfg.warmup_steps`` (or ``cfg.warmup_epochs`` epochs), capped to
    ``cfg.warmup_max_fraction`` of ``total_steps`` so that a short run still reaches its learning rate. A capped
    warm-up is logged as a warning with both numbers.

    Raises:
        ValueError: ``warmup_max_fraction`` is outside [0, 1].
    """
    asked = cfg.warmup_steps if cfg.warmup_steps is not None else cfg.warmup_epochs * steps_per_epoch
    frac = cfg.warmup_max_fraction
    if not 0.0 <= frac <= 1.0:
        raise ValueError(f"warmup_max_fraction={frac} must lie in [0, 1] (1 never caps the warm-up).")
    cap = int(total_steps * frac)
    if asked > cap:
        _log.warning("warm-up capped: %d warm-up steps asked for a run of %d steps; using %d (warmup_max_fraction="
                     "%g of the run), so the learning rate reaches its peak. Set warmup_max_fraction=1 to allow a "
                     "warm-up as long as the run.", asked, total_steps, cap, frac)
        return cap
    return asked


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: EngineConfig, steps_per_epoch: int, total_steps: int):
    """timm's scheduler, stepped per optimiser update: ``total_steps`` long, warm-up of :func:`warmup_steps` steps,
    multistep milestones given in epochs."""
    from timm.scheduler import create_scheduler_v2

    warmup = warmup_steps(cfg, steps_per_epoch, total_steps)
    milestones = [m * steps_per_epoch for m in (cfg.decay_milestones or ())]
    kw: dict[str, Any] = {"decay_milestones": milestones} if milestones else {}
    if milestones:
        kw["decay_epochs"] = milestones[0]
    scheduler, _ = create_scheduler_v2(optimizer, sched=cfg.sched, num_epochs=total_steps, warmup_epochs=warmup,
                                       warmup_lr=cfg.warmup_lr, min_lr=cfg.min_lr, decay_rate=cfg.decay_rate,
                                       step_on_epochs=False, updates_per_epoch=1, **kw)
    return scheduler


def build_ema(model: nn.Module, cfg: EngineConfig):
    """timm's ``ModelEmaV3`` of ``model`` when ``cfg.model_ema``, else None."""
    if not cfg.model_ema:
        return None
    from timm.utils import ModelEmaV3

    return ModelEmaV3(model, decay=cfg.model_ema_decay, use_warmup=cfg.model_ema_warmup)


def clip_gradients(params: list[torch.Tensor], value: float, mode: str = "norm") -> None:
    """Clip the gradients of ``params`` in place, as timm's ``dispatch_clip_grad(params, value, mode)`` does;
    ``mode="agc"`` runs :func:`adaptive_clip_grad_`."""
    if mode == "agc":
        adaptive_clip_grad_(params, value)
        return
    from timm.utils import dispatch_clip_grad

    dispatch_clip_grad(params, value, mode=mode)


@torch.no_grad()
def adaptive_clip_grad_(params: list[torch.Tensor], clip_factor: float, eps: float = 1e-3) -> None:
    """Adaptive gradient clipping (Brock et al. 2021) with timm's ``adaptive_clip_grad`` semantics and results.

    Each output unit's gradient (a row of a weight, or a whole bias or norm parameter) is scaled by
    ``min(1, clip_factor * max(|w|, eps) / max(|g|, 1e-6))``. The clamps, ratios and scaling run as a few
    ``torch._foreach_*`` ops over all parameters instead of about ten small ops per parameter, which on a small
    model was about a tenth of a CPU training step.
    """
    with_grad = [p for p in params if p.grad is not None]
    if not with_grad:
        return
    flat = [p for p in with_grad if p.ndim <= 1]
    rows = [p for p in with_grad if p.ndim > 1]
    weights = flat + rows
    grads = [p.grad for p in weights]

    def norms(ts: list[torch.Tensor], nd: list[torch.Tensor]) -> list[torch.Tensor]:
        out = list(torch._foreach_norm(ts)) if ts else []
        return out + [t.norm(2.0, dim=tuple(range(1, t.ndim)), keepdim=True) for t in nd]

    max_norm = norms(flat, rows)
    grad_norm = norms(grads[: len(flat)], grads[len(flat) :])
    torch._foreach_clamp_min_(max_norm, eps)
    torch._foreach_mul_(max_norm, clip_factor)
    torch._foreach_clamp_min_(grad_norm, 1e-6)
    scale = torch._foreach_div(max_norm, grad_norm)
    torch._foreach_clamp_max_(scale, 1.0)
    torch._foreach_mul_(grads, scale)
