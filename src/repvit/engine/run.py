"""The engine: ``run_task(task, config) -> dict``, one training run from data to ``OUTPUT/best.pt``, single process
or under torchrun, for any :class:`~repvit.engine.task.Task`.

Reading order: :func:`run_task` sets up the process group and calls :func:`_run`, whose steps share one
:class:`RunContext`: :func:`_setup` (output folder, the checkpoint to resume from, the task's data),
:func:`_build` (model, EMA, optimiser and schedule through timm, the AMP scaler), :func:`_resume` (their states
from the checkpoint), :func:`_prepare` (DDP and compile wrapping, the task's own preparation, the val loader, the
metrics log), :func:`_loop` (per epoch: seed it, train, evaluate, write ``last.pt`` / ``best.pt`` /
``metrics.jsonl``) and :func:`_finish` (curves, the summary). Only rank 0 writes and logs.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from repvit.data.loader import eval_loader, seed_epoch, train_loader
from repvit.runtime import torch_threads

from .amp import amp_dtype
from .checkpoint import find_resume, get_rng_state, load_train_checkpoint, save_train_checkpoint, set_rng_state
from .config import EngineConfig
from .distributed import DistInfo, all_gather_object, all_reduce_sum, barrier, cleanup_distributed, init_distributed
from .loop import EpochStats, StepOptions, train_one_epoch
from .optim import build_ema, build_optimizer, build_scheduler
from .records import MetricsLog, plot_curves
from .task import Task, TaskData

__all__ = ["run_task", "RunContext"]

_log = logging.getLogger(__name__)


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
    if cfg.channels_last is None:
        cfg = cfg.replace(channels_last=info.device.type == "cpu")
    try:
        with torch_threads(cfg.threads):  # cfg.threads applies to this run only
            return _run(task, cfg, info)
    finally:
        if not already:
            cleanup_distributed()


@dataclass
class RunContext:
    """One run: what :func:`_run`'s steps build and share, in the order they fill it in."""

    task: Task
    cfg: EngineConfig
    info: DistInfo
    out: Path  # the output folder
    t_start: float  # time.perf_counter() at the start
    # _setup
    resume_path: Path | None = None
    ckpt: dict[str, Any] | None = None  # the checkpoint resumed from (None: a new run)
    data: TaskData | None = None
    # _build
    model: nn.Module | None = None  # this process's model (unwrapped)
    ema: Any = None  # timm's ModelEmaV3, or None
    optimizer: torch.optim.Optimizer | None = None
    scheduler: Any = None
    scaler: torch.amp.GradScaler | None = None  # fp16 AMP on CUDA only
    options: StepOptions = field(default_factory=StepOptions)
    lr: float = 0.0
    workers: int = 0
    repeated_aug: bool = False
    steps_per_epoch: int = 0
    total_steps: int = 0
    num_epochs: int = 0
    # _prepare
    train_model: nn.Module | None = None  # the model as trained: DDP-wrapped and/or compiled
    val_loader: Any = None
    metrics: MetricsLog | None = None  # rank 0 only
    # progress (_resume sets the starting values, _loop advances them)
    start_epoch: int = 0
    step: int = 0
    best: float = -math.inf
    skip_batches: int = 0  # batches of start_epoch done before an interrupt
    last: dict[str, Any] = field(default_factory=dict)  # the last evaluation
    epochs_done: int = 0
    ips: float = 0.0
    interrupted: bool = False

    @property
    def main(self) -> bool:
        return self.info.is_main

    @property
    def device(self) -> torch.device:
        return self.info.device

    def state(self, epoch: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The training checkpoint after ``epoch`` (see :mod:`repvit.engine.checkpoint`)."""
        return {
            "model": self.model.state_dict(), "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None, "epoch": epoch,
            "step": self.step, "rng": get_rng_state(), "config": self.cfg.to_dict(), "task": self.task.name,
            "meta": self.data.meta, "best": self.best, **self.task.checkpoint_extra(self.data, self.best),
            **(extra or {}),
        }

    def save(self, name: str, st: dict[str, Any]) -> Path:
        """Write ``OUTPUT/name`` atomically; a full disk leaves the previous file intact and says so."""
        try:
            return save_train_checkpoint(self.out / name, st)
        except OSError as e:
            raise OSError(f"could not write {self.out / name} ({e.strerror or e}); the previous {name} is intact. "
                          "Free disk space and resume with --resume auto.") from e


def _run(task: Task, cfg: EngineConfig, info: DistInfo) -> dict[str, Any]:
    run = _setup(task, cfg, info)
    _build(run)
    _resume(run)
    _prepare(run)
    _loop(run)
    return _finish(run)


def _setup(task: Task, cfg: EngineConfig, info: DistInfo) -> RunContext:
    """The output folder, the checkpoint to resume from (checked against this run), the task bound to the run and
    its data."""
    run = RunContext(task, cfg, info, Path(cfg.output_dir), time.perf_counter())
    if run.main:
        run.out.mkdir(parents=True, exist_ok=True)
    run.resume_path = find_resume(cfg.resume, run.out)
    if run.resume_path:
        run.ckpt = load_train_checkpoint(run.resume_path)
    task.bind(cfg, info, resuming=run.ckpt is not None)

    run.data = data = task.build_data(cfg, info)
    if len(data.train) < cfg.batch_size * info.world_size:
        _log.warning("only %d training images for a total batch of %d", len(data.train),
                     cfg.batch_size * info.world_size)
    if run.ckpt is not None:
        task.check_resume(run.ckpt, cfg, data, run.resume_path)
    return run


def _build(run: RunContext) -> None:
    """The model (seeded, on its device), its EMA, the optimiser, the schedule and the AMP scaler."""
    cfg, info, device = run.cfg, run.info, run.device
    torch.manual_seed(cfg.seed)
    model = run.task.build_model(cfg, run.data)
    if cfg.bn_momentum is not None:
        set_bn_momentum(model, cfg.bn_momentum)
    if info.distributed and cfg.sync_bn:
        if device.type != "cuda":
            raise ValueError("--sync-bn needs CUDA (torch's SyncBatchNorm only runs on GPUs); drop it for CPU runs.")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    run.model = model

    run.ema = build_ema(model, cfg)
    run.lr = cfg.scaled_lr(info.world_size)
    run.optimizer = build_optimizer(model, cfg, run.lr)
    run.workers = cfg.resolved_workers()
    run.repeated_aug = bool(getattr(cfg, "repeated_aug", False))
    train_ds = run.data.train
    run.steps_per_epoch = len(train_loader(train_ds, cfg.batch_size, seed=cfg.seed, epoch=0, rank=info.rank,
                                           world_size=info.world_size, repeated_aug=run.repeated_aug))
    if run.steps_per_epoch < 1:
        raise ValueError(f"no full batch of {cfg.batch_size} in {len(train_ds)} training items on this process; "
                         "lower --batch-size.")
    run.total_steps = cfg.iters if cfg.iters is not None else cfg.epochs * run.steps_per_epoch
    run.num_epochs = math.ceil(run.total_steps / run.steps_per_epoch)
    run.scheduler = build_scheduler(run.optimizer, cfg, run.steps_per_epoch, run.total_steps)
    dtype = amp_dtype(cfg.amp_dtype)
    if cfg.amp and dtype == torch.float16 and device.type != "cuda":
        raise ValueError("fp16 AMP needs CUDA; on CPU use --set amp_dtype=bfloat16.")
    run.scaler = torch.amp.GradScaler("cuda") if cfg.amp and dtype == torch.float16 else None
    run.options = StepOptions(cfg.clip_grad, cfg.clip_mode, cfg.amp, dtype, cfg.channels_last)


def set_bn_momentum(model: nn.Module, momentum: float) -> None:
    """Set the running-statistics momentum of every BatchNorm in ``model`` (a short run from scratch wants a high
    one: with torch's 0.1 the statistics lag the weights by about ten steps, and the evaluation sees stale ones)."""
    if not 0.0 < momentum <= 1.0:
        raise ValueError(f"bn_momentum={momentum} must lie in (0, 1] (torch's default is 0.1).")
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = momentum


def _resume(run: RunContext) -> None:
    """Weights, EMA, optimiser, schedule and scaler states and the counters from the checkpoint (if resuming)."""
    ckpt = run.ckpt
    if ckpt is None:
        return
    run.model.load_state_dict(ckpt["model"])
    if run.ema is not None and ckpt.get("ema") is not None:
        run.ema.module.load_state_dict(ckpt["ema"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.scheduler.load_state_dict(ckpt["scheduler"])
    if run.scaler is not None and ckpt.get("scaler"):
        run.scaler.load_state_dict(ckpt["scaler"])
    run.start_epoch, run.step = int(ckpt["epoch"]) + 1, int(ckpt["step"])
    run.best = float(ckpt.get("best", -math.inf))
    run.skip_batches = int(ckpt.get("resume_batch", 0))
    if run.main:
        _log.info("resumed from %s: epoch %d%s, step %d", run.resume_path, run.start_epoch + 1,
                  f" batch {run.skip_batches}" if run.skip_batches else "", run.step)


def _prepare(run: RunContext) -> None:
    """DDP and compile wrapping, the task's preparation, the val loader and (rank 0) the metrics log."""
    task, cfg, info, device, data = run.task, run.cfg, run.info, run.device, run.data
    run.train_model = run.model
    if info.distributed:
        from torch.nn.parallel import DistributedDataParallel

        run.train_model = DistributedDataParallel(run.model,
                                                  device_ids=[info.local_rank] if device.type == "cuda" else None,
                                                  find_unused_parameters=task.find_unused_parameters)
    if cfg.compile:
        run.train_model = torch.compile(run.train_model)
    task.prepare(run.model, data, device)

    run.val_loader = eval_loader(data.val, cfg.eval_batch_size or task.default_eval_batch_size, workers=run.workers,
                                 rank=info.rank, world_size=info.world_size, collate_fn=data.collate)
    run.metrics = MetricsLog(run.out, cfg.tensorboard, run.start_epoch) if run.main else None
    if run.main:
        _log.info("%s: %s on %s, %d train / %d val items, %s, lr %.3g (total batch %d), %s", task.name, cfg.model,
                  cfg.data, len(data.train), len(data.val),
                  f"{run.total_steps} steps" if cfg.iters is not None else f"{run.num_epochs} epochs", run.lr,
                  cfg.batch_size * info.world_size, f"{info.world_size} processes" if info.distributed else device)


def _loop(run: RunContext) -> None:
    """The epochs from ``start_epoch``: train, then evaluate and save (or, on Ctrl-C, save a resumable checkpoint
    and stop)."""
    run.epochs_done = run.start_epoch
    with _StopFlag() as stop:
        def should_stop() -> bool:
            if not run.info.distributed:
                return stop.requested
            flag = all_reduce_sum(torch.tensor([1.0 if stop.requested else 0.0]))
            return bool(flag.item() > 0)

        for epoch in range(run.start_epoch, run.num_epochs):
            stats = _train_epoch(run, epoch, should_stop)
            run.step += stats.steps
            if stats.stopped:
                _save_interrupted(run, epoch, stats)
                break
            run.skip_batches = 0
            _end_epoch(run, epoch, stats)
            barrier()


def _train_epoch(run: RunContext, epoch: int, should_stop) -> EpochStats:
    """One epoch of training (the rest of it when resuming inside it), with its RNG seeded and a progress bar."""
    from tqdm.auto import tqdm

    cfg, info, device, data = run.cfg, run.info, run.device, run.data
    loader = train_loader(data.train, cfg.batch_size, seed=cfg.seed, epoch=epoch, workers=run.workers,
                          rank=info.rank, world_size=info.world_size, repeated_aug=run.repeated_aug,
                          skip_batches=run.skip_batches, pin_memory=device.type == "cuda", collate_fn=data.collate)
    if run.skip_batches:  # resuming inside an epoch (after Ctrl-C): continue this rank's RNG stream
        set_rng_state(_rank_rng_state(run.ckpt, info))
    else:
        seed_epoch(cfg.seed, epoch, info.rank)
    todo = min(len(loader), run.total_steps - run.step)
    bar = tqdm(total=todo + run.skip_batches, initial=run.skip_batches, desc=f"epoch {epoch + 1}/{run.num_epochs}",
               disable=None if (run.main and cfg.progress) else True,  # None: no bar when not a TTY
               dynamic_ncols=True, leave=False)
    task, train_model = run.task, run.train_model
    stats = train_one_epoch(train_model, lambda b: task.train_step(train_model, b, device), loader, run.optimizer,
                            epoch=epoch, device=device, start_step=run.step, max_steps=run.total_steps,
                            scheduler=run.scheduler, scaler=run.scaler, ema=run.ema, options=run.options,
                            progress=bar, should_stop=should_stop)
    bar.close()
    return stats


def _save_interrupted(run: RunContext, epoch: int, stats: EpochStats) -> None:
    """Ctrl-C inside ``epoch``: ``last.pt`` with where to continue (the next batch, every rank's RNG state)."""
    run.interrupted = True
    rng_ranks = all_gather_object(get_rng_state())  # each rank's trainer RNG (Mixup, dropout)
    if run.main:
        p = run.save("last.pt", run.state(epoch - 1, {"resume_batch": run.skip_batches + stats.batches,
                                                      "rng_ranks": rng_ranks}))
        _log.info("interrupted in epoch %d: saved %s; continue with --resume auto", epoch + 1, p)


def _end_epoch(run: RunContext, epoch: int, stats: EpochStats) -> None:
    """After a finished epoch: evaluate (every ``eval_every`` epochs and after the last), then on rank 0 write
    ``last.pt`` (and ``best.pt`` when the metric improved), the metrics line and the log line."""
    task, cfg = run.task, run.cfg
    run.ips = stats.images_per_s * run.info.world_size
    record: dict[str, Any] = {"epoch": epoch, "step": run.step, "lr": run.optimizer.param_groups[0]["lr"],
                              "train_loss": stats.loss, "images_per_s": run.ips, "epoch_s": stats.seconds}
    is_best = False
    final = epoch + 1 == run.num_epochs
    if (epoch + 1) % cfg.eval_every == 0 or final:
        ev = task.evaluate(run.model, run.val_loader, run.device)
        record.update({f"val_{k}": v for k, v in _numbers(ev).items()})
        if run.ema is not None:
            eev = task.evaluate(run.ema.module, run.val_loader, run.device)
            record.update({f"ema_{k}": v for k, v in _numbers(eev).items() if k in (task.best_metric, "loss")})
        run.last = ev
        score = float(ev[task.best_metric])
        is_best = score > run.best
        run.best = max(run.best, score)
    run.epochs_done = epoch + 1
    if run.main:
        st = run.state(epoch)
        run.save("last.pt", st)
        if is_best:
            run.save("best.pt", st)
        run.metrics.log(record)
        _log.info("epoch %d/%d  loss %.4f  %s  lr %.2e  %.0f img/s", epoch + 1, run.num_epochs, stats.loss,
                  task.describe(run.last) if "val_" + task.best_metric in record else "", record["lr"], run.ips)


def _finish(run: RunContext) -> dict[str, Any]:
    """Close the metrics log, draw the curves, make sure ``best.pt`` exists, and return the summary."""
    out, task = run.out, run.task
    png = None
    if run.main:
        run.metrics.close()
        if run.cfg.plot and not run.interrupted:
            png = plot_curves(run.metrics.path, out / "curves.png", metric=task.best_metric, ylabel=task.plot_label,
                              series=task.plot_series)
    if run.main and not (out / "best.pt").exists() and (out / "last.pt").exists() and not run.interrupted:
        run.save("best.pt", load_train_checkpoint(out / "last.pt"))
    return {
        "best_checkpoint": str(out / "best.pt"), "last_checkpoint": str(out / "last.pt"), "best": run.best,
        "eval": run.last, "epochs": run.epochs_done, "steps": run.step,
        "wall_time_s": time.perf_counter() - run.t_start,
        "images_per_s": run.ips, "output_dir": str(out), "curves_png": str(png) if png else None,
        "interrupted": run.interrupted, "meta": run.data.meta, "model": run.model,
    }


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


def _numbers(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
