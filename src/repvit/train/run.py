"""The engine: ``run_task(task, config) -> dict``, one training run from data to ``OUTPUT/best.pt``, single process
or under torchrun, for any :class:`~repvit.train.task.Task` (classification, segmentation, detection, SAM
distillation). ``train(config)`` is classification (``repvit train``).

Reading order: :func:`run_task` sets up the process group and calls :func:`_run`, which asks the task for its data and
model, builds EMA, optimiser and schedule (through timm), resumes if asked, then loops over epochs: seed the epoch,
train, evaluate, write ``last.pt`` / ``best.pt`` / ``metrics.jsonl``. Only rank 0 writes and logs.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from repvit.data.loader import eval_loader, seed_epoch, train_loader
from repvit.runtime import torch_threads

from .checkpoint import find_resume, get_rng_state, load_train_checkpoint, save_train_checkpoint, set_rng_state
from .classify import ClassifyTask, build_model
from .config import EngineConfig, TrainConfig
from .distributed import DistInfo, all_gather_object, all_reduce_sum, barrier, cleanup_distributed, init_distributed
from .engine import StepOptions, train_one_epoch
from .records import MetricsLog, plot_curves
from .task import Task

__all__ = ["train", "run_task", "build_model", "build_optimizer", "build_scheduler"]

_log = logging.getLogger("repvit.train")


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


class _StopFlag:
    """Ctrl-C: the first SIGINT asks the loop to stop after the current step and save; a second one aborts."""

    def __init__(self):
        self.requested = False
        self._old = None

    def __enter__(self):
        try:
            self._old = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread
            self._old = None
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        _log.warning("interrupt: stopping after this step and saving a resumable checkpoint (Ctrl-C again to abort)")

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


def _rank_rng_state(ckpt: Mapping[str, Any], info: DistInfo) -> dict[str, Any]:
    """This rank's RNG state from a checkpoint saved inside an epoch (``rng_ranks``: one per rank)."""
    states = ckpt.get("rng_ranks") or [ckpt["rng"]]
    if len(states) != info.world_size:
        _log.warning("resuming inside an epoch with %d processes, saved with %d: the rest of this epoch will not "
                     "match an uninterrupted run's", info.world_size, len(states))
    return states[info.rank % len(states)]


def train(config: TrainConfig | Mapping[str, Any]) -> dict[str, Any]:
    """Run one classification training (``repvit train``) and return its summary.

    Args:
        config: a :class:`TrainConfig` or a dict of its fields.

    Returns:
        ``best_checkpoint``, ``last_checkpoint`` (paths), ``best_top1``, ``top1``/``top5``/``loss`` of the last
        evaluation, ``epochs`` (completed), ``wall_time_s``, ``images_per_s`` (last epoch), ``output_dir``,
        ``curves_png`` (or None), ``bad_images`` (count of skipped unreadable images), ``interrupted``,
        ``num_classes``, ``class_names`` and ``model`` (the trained module, this process's copy).
    """
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    task = ClassifyTask()
    res = run_task(task, cfg)
    if task.bad_images and (not (torch.distributed.is_available() and torch.distributed.is_initialized())
                            or torch.distributed.get_rank() == 0):
        _log.warning("skipped %d unreadable images (e.g. %s); --strict-data makes them an error",
                     len(task.bad_images), sorted(task.bad_images)[0])
    last = res["eval"]
    res.update(best_top1=res["best"], top1=last.get("top1"), top5=last.get("top5"), loss=last.get("loss"),
               bad_images=len(task.bad_images), num_classes=task.num_classes, class_names=task.class_names)
    return res


def run_task(task: Task, config: EngineConfig) -> dict[str, Any]:
    """Train ``task`` with ``config`` (single process, or one rank under torchrun) and return the summary.

    Returns:
        ``best_checkpoint``, ``last_checkpoint``, ``best`` (the best ``task.best_metric``), ``eval`` (the last
        evaluation's dict), ``epochs`` (completed), ``steps``, ``wall_time_s``, ``images_per_s`` (last epoch),
        ``interrupted``, ``output_dir``, ``curves_png`` (or None), ``meta`` and ``model`` (this process's copy).
    """
    cfg = config
    already = torch.distributed.is_available() and torch.distributed.is_initialized()
    info = init_distributed(cfg.device)
    try:
        with torch_threads(cfg.threads):  # cfg.threads applies to this run only
            return _run(task, cfg, info)
    finally:
        if not already:
            cleanup_distributed()


def _numbers(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _run(task: Task, cfg: EngineConfig, info: DistInfo) -> dict[str, Any]:
    t_start = time.perf_counter()
    out = Path(cfg.output_dir)
    main = info.is_main
    if main:
        out.mkdir(parents=True, exist_ok=True)
    device = info.device
    task.cfg, task.info = cfg, info

    data = task.build_data(cfg, info)
    train_ds, val_ds = data.train, data.val
    if len(train_ds) < cfg.batch_size * info.world_size:
        _log.warning("only %d training images for a total batch of %d", len(train_ds),
                     cfg.batch_size * info.world_size)

    resume_path = find_resume(cfg.resume, out)
    ckpt = load_train_checkpoint(resume_path) if resume_path else None
    if ckpt is not None:
        saved = ckpt["config"]
        saved_task = ckpt.get("task", "classify")
        saved_classes = (ckpt.get("meta") or {}).get("num_classes", ckpt.get("num_classes"))
        classes = data.meta.get("num_classes")
        if saved_task != task.name or saved.get("model") != cfg.model or (
                saved_classes is not None and classes is not None and int(saved_classes) != int(classes)):
            raise ValueError(f"cannot resume {resume_path}: it is a {saved_task} run of {saved.get('model')} with "
                             f"{saved_classes} classes, this run is a {task.name} run of {cfg.model} with {classes}.")
    task.resuming = ckpt is not None

    torch.manual_seed(cfg.seed)
    model = task.build_model(cfg, data)
    if info.distributed and cfg.sync_bn:
        if device.type != "cuda":
            raise ValueError("--sync-bn needs CUDA (torch's SyncBatchNorm only runs on GPUs); drop it for CPU runs.")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)

    from timm.utils import ModelEmaV3

    ema = ModelEmaV3(model, decay=cfg.model_ema_decay, use_warmup=cfg.model_ema_warmup) if cfg.model_ema else None
    lr = cfg.scaled_lr(info.world_size)
    optimizer = build_optimizer(model, cfg, lr)
    workers = cfg.resolved_workers()
    repeated_aug = bool(getattr(cfg, "repeated_aug", False))
    steps_per_epoch = len(train_loader(train_ds, cfg.batch_size, seed=cfg.seed, epoch=0, rank=info.rank,
                                       world_size=info.world_size, repeated_aug=repeated_aug))
    if steps_per_epoch < 1:
        raise ValueError(f"no full batch of {cfg.batch_size} in {len(train_ds)} training items on this process; "
                         "lower --batch-size.")
    total_steps = cfg.iters if cfg.iters is not None else cfg.epochs * steps_per_epoch
    num_epochs = math.ceil(total_steps / steps_per_epoch)
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch, total_steps)
    amp_dtype = torch.float16 if cfg.amp_dtype == "float16" else torch.bfloat16
    if cfg.amp and amp_dtype == torch.float16 and device.type != "cuda":
        raise ValueError("fp16 AMP needs CUDA; on CPU use --set amp_dtype=bfloat16.")
    scaler = torch.amp.GradScaler("cuda") if cfg.amp and amp_dtype == torch.float16 else None

    start_epoch, step, best, skip_batches = 0, 0, -math.inf, 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        if ema is not None and ckpt.get("ema") is not None:
            ema.module.load_state_dict(ckpt["ema"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        start_epoch, step = int(ckpt["epoch"]) + 1, int(ckpt["step"])
        best = float(ckpt.get("best", ckpt.get("best_top1", -math.inf)))
        skip_batches = int(ckpt.get("resume_batch", 0))
        if main:
            _log.info("resumed from %s: epoch %d%s, step %d", resume_path, start_epoch + 1,
                      f" batch {skip_batches}" if skip_batches else "", step)

    train_model: nn.Module = model
    if info.distributed:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(model, device_ids=[info.local_rank] if device.type == "cuda" else None,
                                              find_unused_parameters=task.find_unused_parameters)
    if cfg.compile:
        train_model = torch.compile(train_model)
    task.prepare(model, data, device)
    options = StepOptions(cfg.clip_grad, cfg.clip_mode, cfg.amp, amp_dtype, cfg.channels_last)

    val_loader = eval_loader(val_ds, cfg.eval_batch_size or task.default_eval_batch_size, workers=workers,
                             rank=info.rank, world_size=info.world_size, collate_fn=data.collate)
    metrics = MetricsLog(out, cfg.tensorboard, start_epoch) if main else None
    if main:
        _log.info("%s: %s on %s, %d train / %d val items, %s, lr %.3g (total batch %d), %s", task.name, cfg.model,
                  cfg.data, len(train_ds), len(val_ds),
                  f"{total_steps} steps" if cfg.iters is not None else f"{num_epochs} epochs", lr,
                  cfg.batch_size * info.world_size, f"{info.world_size} processes" if info.distributed else device)

    def state(epoch: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "model": model.state_dict(), "ema": ema.module.state_dict() if ema is not None else None,
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None, "epoch": epoch, "step": step,
            "rng": get_rng_state(), "config": cfg.to_dict(), "task": task.name, "meta": data.meta, "best": best,
            **task.checkpoint_extra(data, best), **(extra or {}),
        }

    def save(name: str, st: dict[str, Any]) -> Path:
        try:
            return save_train_checkpoint(out / name, st)
        except OSError as e:
            raise OSError(f"could not write {out / name} ({e.strerror or e}); the previous {name} is intact. "
                          "Free disk space and resume with --resume auto.") from e

    from tqdm.auto import tqdm

    last: dict[str, Any] = {}
    interrupted, epochs_done, ips = False, start_epoch, 0.0
    with _StopFlag() as stop:
        def should_stop() -> bool:
            if not info.distributed:
                return stop.requested
            flag = all_reduce_sum(torch.tensor([1.0 if stop.requested else 0.0]))
            return bool(flag.item() > 0)

        for epoch in range(start_epoch, num_epochs):
            loader = train_loader(train_ds, cfg.batch_size, seed=cfg.seed, epoch=epoch, workers=workers,
                                  rank=info.rank, world_size=info.world_size, repeated_aug=repeated_aug,
                                  skip_batches=skip_batches, pin_memory=device.type == "cuda", collate_fn=data.collate)
            if skip_batches:  # resuming inside an epoch (after Ctrl-C): continue this rank's RNG stream
                set_rng_state(_rank_rng_state(ckpt, info))
            else:
                seed_epoch(cfg.seed, epoch, info.rank)
            todo = min(len(loader), total_steps - step)
            bar = tqdm(total=todo + skip_batches, initial=skip_batches, desc=f"epoch {epoch + 1}/{num_epochs}",
                       disable=None if (main and cfg.progress) else True,  # None: no bar when not a TTY
                       dynamic_ncols=True, leave=False)
            stats = train_one_epoch(train_model, lambda b: task.train_step(train_model, b, device), loader,
                                    optimizer, epoch=epoch, device=device, start_step=step, max_steps=total_steps,
                                    scheduler=scheduler, scaler=scaler, ema=ema, options=options, progress=bar,
                                    should_stop=should_stop)
            bar.close()
            step += stats.steps
            if stats.stopped:
                interrupted = True
                rng_ranks = all_gather_object(get_rng_state())  # each rank's trainer RNG (Mixup, dropout)
                if main:
                    p = save("last.pt", state(epoch - 1, {"resume_batch": skip_batches + stats.batches,
                                                          "rng_ranks": rng_ranks}))
                    _log.info("interrupted in epoch %d: saved %s; continue with --resume auto", epoch + 1, p)
                break
            skip_batches = 0
            ips = stats.images_per_s * info.world_size
            record: dict[str, Any] = {"epoch": epoch, "step": step, "lr": optimizer.param_groups[0]["lr"],
                                      "train_loss": stats.loss, "images_per_s": ips, "epoch_s": stats.seconds}
            is_best = False
            final = epoch + 1 == num_epochs
            if (epoch + 1) % cfg.eval_every == 0 or final:
                ev = task.evaluate(model, val_loader, device)
                record.update({f"val_{k}": v for k, v in _numbers(ev).items()})
                if ema is not None:
                    eev = task.evaluate(ema.module, val_loader, device)
                    record.update({f"ema_{k}": v for k, v in _numbers(eev).items()
                                   if k in (task.best_metric, "loss")})
                last = ev
                score = float(ev[task.best_metric])
                is_best = score > best
                best = max(best, score)
            epochs_done = epoch + 1
            if main:
                st = state(epoch)
                save("last.pt", st)
                if is_best:
                    save("best.pt", st)
                metrics.log(record)
                _log.info("epoch %d/%d  loss %.4f  %s  lr %.2e  %.0f img/s", epoch + 1, num_epochs, stats.loss,
                          task.describe(last) if "val_" + task.best_metric in record else "", record["lr"], ips)
            barrier()

    png = None
    if main:
        metrics.close()
        if cfg.plot and not interrupted:
            png = plot_curves(metrics.path, out / "curves.png", metric=task.best_metric, ylabel=task.plot_label)
    if main and not (out / "best.pt").exists() and (out / "last.pt").exists() and not interrupted:
        save("best.pt", load_train_checkpoint(out / "last.pt"))
    return {
        "best_checkpoint": str(out / "best.pt"), "last_checkpoint": str(out / "last.pt"), "best": best,
        "eval": last, "epochs": epochs_done, "steps": step, "wall_time_s": time.perf_counter() - t_start,
        "images_per_s": ips, "output_dir": str(out), "curves_png": str(png) if png else None,
        "interrupted": interrupted, "meta": data.meta, "model": model,
    }
