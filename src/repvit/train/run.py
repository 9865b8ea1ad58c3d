"""``train(config) -> dict``: one training run, from data to ``OUTPUT/best.pt``, single process or under torchrun.

Reading order: :func:`train` sets up the process group and calls :func:`_run`, which builds data, model, EMA,
optimiser, schedule, loss (all through timm), resumes if asked, then loops over epochs: seed the epoch, train, evaluate,
write ``last.pt`` / ``best.pt`` / ``metrics.jsonl``. Only rank 0 writes and logs.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import Subset

from repvit.data import build_datasets
from repvit.data.loader import eval_loader, seed_epoch, train_loader

from .checkpoint import find_resume, get_rng_state, load_train_checkpoint, save_train_checkpoint, set_rng_state
from .config import TrainConfig
from .distill import DistillationLoss, load_teacher
from .distributed import DistInfo, all_gather_object, all_reduce_sum, barrier, cleanup_distributed, init_distributed
from .engine import StepOptions, evaluate, train_one_epoch
from .records import MetricsLog, plot_curves

__all__ = ["train", "build_model", "build_optimizer"]

_log = logging.getLogger("repvit.train")


def build_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    """The student: ``cfg.model`` with ``num_classes``, a distillation head when distilling, optional fine-tune
    weights (any checkpoint format; a head with another class count is dropped and re-initialised)."""
    import repvit
    from repvit.models.checkpoint import load_checkpoint

    model = repvit.create_model(cfg.model, num_classes=num_classes, in_chans=cfg.in_chans,
                                distillation=cfg.distillation != "none", drop_rate=cfg.drop_rate,
                                drop_path_rate=cfg.drop_path)
    if cfg.finetune:
        res = load_checkpoint(model, cfg.finetune, strict=False)
        body_missing = [k for k in res.missing if not k.startswith("head.")]
        if body_missing or res.unexpected:
            raise ValueError(f"--set finetune={cfg.finetune} does not fit {cfg.model}: missing {body_missing[:5]}, "
                             f"unexpected {res.unexpected[:5]}. Pick the model the checkpoint was trained as.")
        _log.info("fine-tuning from %s (%s format%s)", cfg.finetune, res.source_format,
                  ", new head" if res.dropped else "")
    return model


def build_optimizer(model: nn.Module, cfg: TrainConfig, lr: float) -> torch.optim.Optimizer:
    """timm's ``create_optimizer_v2`` (no weight decay on norms and biases), with torch's fused Adam/AdamW kernel
    when ``cfg.opt_fused`` and the parameters live on CPU or CUDA."""
    from timm.optim import create_optimizer_v2

    kw: dict[str, Any] = {}
    devices = {p.device.type for p in model.parameters()}
    if cfg.opt_fused and cfg.opt.lower() in ("adam", "adamw") and devices <= {"cpu", "cuda"}:
        kw["fused"] = True
    return create_optimizer_v2(model, opt=cfg.opt, lr=lr, weight_decay=cfg.weight_decay, eps=cfg.opt_eps, **kw)


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


def _aug_kwargs(cfg: TrainConfig, digits: bool) -> dict[str, Any]:
    if digits:
        return dict(degrees=cfg.digits_degrees, translate=cfg.digits_translate, re_prob=cfg.reprob)
    return dict(auto_augment=cfg.aa, color_jitter=cfg.color_jitter, re_prob=cfg.reprob, re_mode=cfg.remode,
                re_count=cfg.recount, hflip=cfg.hflip)


def _criterion(cfg: TrainConfig, num_classes: int, teacher: nn.Module | None):
    from timm.data import Mixup
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

    mixup_fn = None
    if cfg.mixup > 0 or cfg.cutmix > 0:
        mixup_fn = Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, prob=cfg.mixup_prob,
                         switch_prob=cfg.mixup_switch_prob, label_smoothing=cfg.smoothing, num_classes=num_classes)
        base = SoftTargetCrossEntropy()
    elif cfg.smoothing > 0:
        base = LabelSmoothingCrossEntropy(cfg.smoothing)
    else:
        base = nn.CrossEntropyLoss()
    return DistillationLoss(base, teacher, cfg.distillation, cfg.distillation_alpha, cfg.distillation_tau), mixup_fn


def _rank_rng_state(ckpt: Mapping[str, Any], info: DistInfo) -> dict[str, Any]:
    """This rank's RNG state from a checkpoint saved inside an epoch (``rng_ranks``: one per rank)."""
    states = ckpt.get("rng_ranks") or [ckpt["rng"]]
    if len(states) != info.world_size:
        _log.warning("resuming inside an epoch with %d processes, saved with %d: the rest of this epoch will not "
                     "match an uninterrupted run's", info.world_size, len(states))
    return states[info.rank % len(states)]


def train(config: TrainConfig | Mapping[str, Any]) -> dict[str, Any]:
    """Run one training and return its summary.

    Args:
        config: a :class:`TrainConfig` or a dict of its fields.

    Returns:
        ``best_checkpoint``, ``last_checkpoint`` (paths), ``best_top1``, ``top1``/``top5``/``loss`` of the last
        evaluation, ``epochs`` (completed), ``wall_time_s``, ``images_per_s`` (last epoch), ``output_dir``,
        ``curves_png`` (or None), ``bad_images`` (count of skipped unreadable images), ``interrupted``,
        ``num_classes``, ``class_names`` and ``model`` (the trained module, this process's copy).
    """
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    already = torch.distributed.is_available() and torch.distributed.is_initialized()
    threads_before = torch.get_num_threads()
    info = init_distributed(cfg.device)
    try:
        return _run(cfg, info)
    finally:
        torch.set_num_threads(threads_before)  # cfg.threads applies to this run only
        if not already:
            cleanup_distributed()


def _run(cfg: TrainConfig, info: DistInfo) -> dict[str, Any]:
    t_start = time.perf_counter()
    out = Path(cfg.output_dir)
    main = info.is_main
    if main:
        out.mkdir(parents=True, exist_ok=True)
    device = info.device
    if cfg.threads:
        torch.set_num_threads(cfg.threads)

    data = build_datasets(cfg.data, img_size=cfg.img_size, in_chans=cfg.in_chans, strict=cfg.strict_data,
                          aug=_aug_kwargs(cfg, str(cfg.data).lower() == "digits"), crop_pct=cfg.crop_pct,
                          interpolation=cfg.interpolation)
    train_ds = data.train
    if cfg.train_subset:
        train_ds = Subset(train_ds, range(min(cfg.train_subset, len(train_ds))))
    val_ds = data.val if not cfg.val_subset else Subset(data.val, range(min(cfg.val_subset, len(data.val))))
    num_classes = data.num_classes
    if cfg.num_classes is not None and cfg.num_classes != num_classes:
        raise ValueError(f"num_classes={cfg.num_classes} but {cfg.data} has {num_classes} classes.")
    if len(train_ds) < cfg.batch_size * info.world_size:
        _log.warning("only %d training images for a total batch of %d", len(train_ds),
                     cfg.batch_size * info.world_size)

    resume_path = find_resume(cfg.resume, out)
    ckpt = load_train_checkpoint(resume_path) if resume_path else None
    if ckpt is not None:
        saved = ckpt["config"]
        if saved.get("model") != cfg.model or int(ckpt.get("num_classes", num_classes)) != num_classes:
            raise ValueError(f"cannot resume {resume_path}: it is {saved.get('model')} with "
                             f"{ckpt.get('num_classes')} classes, this run is {cfg.model} with {num_classes}.")

    torch.manual_seed(cfg.seed)
    model = build_model(cfg if ckpt is None else cfg.replace(finetune=None), num_classes)
    if info.distributed and cfg.sync_bn:
        if device.type != "cuda":
            raise ValueError("--sync-bn needs CUDA (torch's SyncBatchNorm only runs on GPUs); drop it for CPU runs.")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)

    from timm.scheduler import create_scheduler_v2
    from timm.utils import ModelEmaV3

    ema = ModelEmaV3(model, decay=cfg.model_ema_decay, use_warmup=cfg.model_ema_warmup) if cfg.model_ema else None
    lr = cfg.scaled_lr(info.world_size)
    optimizer = build_optimizer(model, cfg, lr)
    steps_per_epoch = len(train_loader(train_ds, cfg.batch_size, seed=cfg.seed, epoch=0, rank=info.rank,
                                       world_size=info.world_size, repeated_aug=cfg.repeated_aug))
    scheduler, _ = create_scheduler_v2(optimizer, sched=cfg.sched, num_epochs=cfg.epochs,
                                       warmup_epochs=cfg.warmup_epochs, warmup_lr=cfg.warmup_lr, min_lr=cfg.min_lr,
                                       step_on_epochs=False, updates_per_epoch=steps_per_epoch)
    amp_dtype = torch.float16 if cfg.amp_dtype == "float16" else torch.bfloat16
    if cfg.amp and amp_dtype == torch.float16 and device.type != "cuda":
        raise ValueError("fp16 AMP needs CUDA; on CPU use --set amp_dtype=bfloat16.")
    scaler = torch.amp.GradScaler("cuda") if cfg.amp and amp_dtype == torch.float16 else None

    start_epoch, step, best_top1, skip_batches = 0, 0, -1.0, 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        if ema is not None and ckpt.get("ema") is not None:
            ema.module.load_state_dict(ckpt["ema"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        start_epoch, step = int(ckpt["epoch"]) + 1, int(ckpt["step"])
        best_top1 = float(ckpt.get("best_top1", -1.0))
        skip_batches = int(ckpt.get("resume_batch", 0))
        if main:
            _log.info("resumed from %s: epoch %d%s, step %d", resume_path, start_epoch + 1,
                      f" batch {skip_batches}" if skip_batches else "", step)

    train_model: nn.Module = model
    if info.distributed:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(model, device_ids=[info.local_rank] if device.type == "cuda" else None)
    if cfg.compile:
        train_model = torch.compile(train_model)

    teacher = None
    if cfg.distillation != "none":
        teacher = load_teacher(cfg.teacher, cfg.teacher_checkpoint, num_classes, cfg.in_chans, device)
    criterion, mixup_fn = _criterion(cfg, num_classes, teacher)
    options = StepOptions(cfg.clip_grad, cfg.clip_mode, cfg.amp, amp_dtype, cfg.channels_last)

    val_loader = eval_loader(val_ds, max(cfg.batch_size, 64), workers=cfg.resolved_workers(), rank=info.rank,
                             world_size=info.world_size)
    metrics = MetricsLog(out, cfg.tensorboard, start_epoch) if main else None
    if main:
        _log.info("training %s on %s: %d classes, %d train / %d val images, %d epochs, lr %.3g (total batch %d), %s",
                  cfg.model, cfg.data, num_classes, len(train_ds), len(val_ds), cfg.epochs, lr,
                  cfg.batch_size * info.world_size, f"{info.world_size} processes" if info.distributed else device)

    def state(epoch: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "model": model.state_dict(), "ema": ema.module.state_dict() if ema is not None else None,
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None, "epoch": epoch, "step": step,
            "rng": get_rng_state(), "config": cfg.to_dict(), "class_names": data.class_names,
            "num_classes": num_classes, "in_chans": cfg.in_chans, "best_top1": best_top1, **(extra or {}),
        }

    def save(name: str, st: dict[str, Any]) -> Path:
        try:
            return save_train_checkpoint(out / name, st)
        except OSError as e:
            raise OSError(f"could not write {out / name} ({e.strerror or e}); the previous {name} is intact. "
                          "Free disk space and resume with --resume auto.") from e

    from tqdm.auto import tqdm

    last: dict[str, Any] = {}
    bad_images: set[str] = set()
    interrupted, epochs_done, ips = False, start_epoch, 0.0
    with _StopFlag() as stop:
        def should_stop() -> bool:
            if not info.distributed:
                return stop.requested
            flag = all_reduce_sum(torch.tensor([1.0 if stop.requested else 0.0]))
            return bool(flag.item() > 0)

        for epoch in range(start_epoch, cfg.epochs):
            loader = train_loader(train_ds, cfg.batch_size, seed=cfg.seed, epoch=epoch, workers=cfg.resolved_workers(),
                                  rank=info.rank, world_size=info.world_size, repeated_aug=cfg.repeated_aug,
                                  skip_batches=skip_batches, pin_memory=device.type == "cuda")
            if skip_batches:  # resuming inside an epoch (after Ctrl-C): continue this rank's RNG stream
                set_rng_state(_rank_rng_state(ckpt, info))
            else:
                seed_epoch(cfg.seed, epoch, info.rank)
            bar = tqdm(total=len(loader) + skip_batches, initial=skip_batches, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                       disable=None if (main and cfg.progress) else True,  # None: no bar when not a TTY
                       dynamic_ncols=True, leave=False)
            stats = train_one_epoch(train_model, criterion, loader, optimizer, epoch=epoch, device=device,
                                    start_step=step, scheduler=scheduler, scaler=scaler, ema=ema, mixup_fn=mixup_fn,
                                    options=options, progress=bar, should_stop=should_stop)
            bar.close()
            step += stats.steps
            bad_images.update(stats.bad_images)
            if stats.stopped:
                interrupted = True
                rng_ranks = all_gather_object(get_rng_state())  # each rank's trainer RNG (Mixup, dropout)
                if main:
                    p = save("last.pt", state(epoch - 1, {"resume_batch": skip_batches + stats.batches,
                                                          "rng_ranks": rng_ranks}))
                    _log.info("interrupted in epoch %d: saved %s; continue with --resume auto", epoch + 1, p)
                break
            skip_batches = 0
            scheduler.step(epoch + 1)
            ips = stats.images_per_s * info.world_size
            record: dict[str, Any] = {"epoch": epoch, "step": step, "lr": optimizer.param_groups[0]["lr"],
                                      "train_loss": stats.loss, "images_per_s": ips, "epoch_s": stats.seconds}
            is_best = False
            if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
                ev = evaluate(model, val_loader, device, amp=cfg.amp, amp_dtype=amp_dtype,
                              channels_last=cfg.channels_last)
                bad_images.update(ev.pop("bad_images"))
                record.update({f"val_{k}": v for k, v in ev.items()})
                if ema is not None:
                    eev = evaluate(ema.module, val_loader, device, amp=cfg.amp, amp_dtype=amp_dtype,
                                   channels_last=cfg.channels_last)
                    record.update(ema_top1=eev["top1"], ema_loss=eev["loss"])
                last = ev
                is_best = ev["top1"] > best_top1
                best_top1 = max(best_top1, ev["top1"])
            epochs_done = epoch + 1
            if main:
                st = state(epoch)
                save("last.pt", st)
                if is_best:
                    save("best.pt", st)
                metrics.log(record)
                _log.info("epoch %d/%d  loss %.4f  %s  lr %.2e  %.0f img/s", epoch + 1, cfg.epochs, stats.loss,
                          f"val top-1 {record['val_top1']:.2f}%" if "val_top1" in record else "", record["lr"], ips)
            barrier()

    png = None
    if main:
        metrics.close()
        if cfg.plot and not interrupted:
            png = plot_curves(metrics.path, out / "curves.png")
        if bad_images:
            _log.warning("skipped %d unreadable images (e.g. %s); --strict-data makes them an error",
                         len(bad_images), sorted(bad_images)[0])
    if main and not (out / "best.pt").exists() and (out / "last.pt").exists() and not interrupted:
        save("best.pt", load_train_checkpoint(out / "last.pt"))
    return {
        "best_checkpoint": str(out / "best.pt"), "last_checkpoint": str(out / "last.pt"), "best_top1": best_top1,
        "top1": last.get("top1"), "top5": last.get("top5"), "loss": last.get("loss"), "epochs": epochs_done,
        "wall_time_s": time.perf_counter() - t_start, "images_per_s": ips, "output_dir": str(out),
        "curves_png": str(png) if png else None, "bad_images": len(bad_images), "interrupted": interrupted,
        "num_classes": num_classes, "class_names": data.class_names, "model": model,
    }
