"""Training throughput (images/s) of our engine's step against a plain timm + PyTorch loop, interleaved in one run.

Both sides train the same model (same initial weights) on the same data with the same augmentation, loss, optimiser
settings (AdamW, lr, wd, eps), schedule, gradient clipping, EMA and thread count; the difference is who runs the
step: ``repvit.engine.train_one_epoch`` as the task's command runs it (the optimiser through timm's factory asking
for torch's fused AdamW kernel, the memory layout the recipe resolves to: channels-last on a CPU, the engine's data
loader, NaN check and bookkeeping); or a hand-written loop of the kind timm's docs show, with timm's factory
defaults and torch's default layout. Rounds alternate between the two so machine noise hits both alike. Peak memory
(RSS) is measured for each side in its own fresh subprocess.

``--task classify`` (default) is the classifier of ``repvit train --data digits``; ``--task segment`` and
``--task detect`` are the dense models of the digits recipes (Semantic FPN and Mask R-CNN on RepViT, their recipes'
heads, batch and clipping; loss: the model's own for Mask R-CNN, pixel cross-entropy for Semantic FPN).

    python benchmarks/train_throughput.py [--task classify] [--model repvit_m0_6] [--batch-size 64] [--threads 1]

Writes ``benchmarks/results/train_throughput.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from timm.loss import LabelSmoothingCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3, dispatch_clip_grad
from torch.utils.data import DataLoader

from repvit.bench.latency import environment_info
from repvit.data.loader import train_loader
from repvit.engine import StepOptions, build_optimizer, train_one_epoch
from repvit.engine.config import load_config
from repvit.engine.distributed import DistInfo

CPU = torch.device("cpu")
# task -> (its digits recipe, config class, task class)
RECIPES = {
    "classify": ("digits", "repvit.classification:TrainConfig", "repvit.classification:ClassifyTask"),
    "segment": ("segment_digits", "repvit.dense.segmentation.config:SegmentConfig",
                "repvit.dense.segmentation.task:SegmentTask"),
    "detect": ("detect_digits", "repvit.dense.detection.config:DetectConfig", "repvit.dense.detection.task:DetectTask"),
}


def _load(path: str):
    import importlib

    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def recipe(args):
    """``(task, config, data)``: the task's digits recipe with the benchmark's model, batch, image size and threads,
    channels-last resolved for the CPU as :func:`repvit.engine.run_task` resolves it."""
    name, cfg_cls, task_cls = RECIPES[args.task]
    ov = {k: v for k, v in (("model", args.model), ("batch_size", args.batch_size), ("img_size", args.img_size))
          if v is not None}
    cfg = load_config(name, ov | {"threads": args.threads}, cls=_load(cfg_cls))
    if cfg.channels_last is None:
        cfg = cfg.replace(channels_last=True)
    task = _load(task_cls)()
    task.bind(cfg, DistInfo(), resuming=False)
    return task, cfg, task.build_data(cfg, DistInfo())


def make_side(ctx, ours: bool, seed: int = 0):
    """Model, optimiser, scheduler and EMA: the same settings for both sides; ours builds its optimiser and memory
    layout the way the task's command does (timm's factory plus torch's fused AdamW kernel; channels-last when the
    recipe resolves to it), the plain loop with timm's factory defaults and torch's default layout."""
    task, cfg, data = ctx
    torch.manual_seed(seed)
    model = task.build_model(cfg, data)
    lr = cfg.scaled_lr()
    if ours:
        opt = build_optimizer(model, cfg, lr)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
    else:
        opt = create_optimizer_v2(model, opt=cfg.opt, lr=lr, weight_decay=cfg.weight_decay, eps=cfg.opt_eps)
    sched, _ = create_scheduler_v2(opt, sched="cosine", num_epochs=100, warmup_epochs=1, warmup_lr=1e-6,
                                   min_lr=1e-5, step_on_epochs=False, updates_per_epoch=20)
    ema = ModelEmaV3(model, decay=cfg.model_ema_decay) if cfg.model_ema else None
    return model, opt, sched, ema


def ours_runner(ctx):
    """The step the task's command runs: the task's ``train_step`` inside the engine's ``train_one_epoch``, batches
    from the engine's loader."""
    task, cfg, data = ctx
    model, opt, sched, ema = make_side(ctx, ours=True)
    task.prepare(model, data, CPU)
    options = StepOptions(cfg.clip_grad, cfg.clip_mode, channels_last=cfg.channels_last)
    state = {"step": 0, "epoch": 0}

    def run_steps(n: int) -> int:
        loader = train_loader(data.train, cfg.batch_size, seed=0, epoch=state["epoch"], workers=0,
                              collate_fn=data.collate)
        state["epoch"] += 1
        stats = train_one_epoch(model, lambda batch: task.train_step(model, batch, CPU),
                                itertools.islice(loader, n), opt, epoch=state["epoch"], device=CPU,
                                start_step=state["step"], scheduler=sched, ema=ema, options=options)
        state["step"] += stats.steps
        return stats.images

    return run_steps


def plain_loss(task_name: str, cfg):
    """``loss(model, batch) -> (loss, images)`` as a plain loop writes it."""
    if task_name == "classify":
        crit = LabelSmoothingCrossEntropy(cfg.smoothing)
        return lambda model, b: (crit(model(b[0]), b[1]), b[0].shape[0])
    if task_name == "segment":
        from repvit.dense.segmentation.data import IGNORE_INDEX

        return lambda model, b: (F.cross_entropy(model(b[0]), b[1], ignore_index=IGNORE_INDEX), b[0].shape[0])
    return lambda model, b: (sum(model(b[0], b[1]).values()), len(b[0]))


def plain_runner(ctx):
    task, cfg, data = ctx
    model, opt, sched, ema = make_side(ctx, ours=False)
    loss_fn = plain_loss(task.name, cfg)
    state = {"step": 0, "epoch": 0}
    params = [p for p in model.parameters() if p.requires_grad]

    def run_steps(n: int) -> int:
        g = torch.Generator().manual_seed(state["epoch"])
        state["epoch"] += 1
        loader = DataLoader(data.train, batch_size=cfg.batch_size, shuffle=True, drop_last=True, generator=g,
                            collate_fn=data.collate)
        model.train()
        images = 0
        for batch in itertools.islice(loader, n):
            loss, k = loss_fn(model, batch)
            opt.zero_grad()
            loss.backward()
            if cfg.clip_grad:
                dispatch_clip_grad(params, cfg.clip_grad, mode=cfg.clip_mode)
            opt.step()
            state["step"] += 1
            if ema is not None:
                ema.update(model, step=state["step"])
            sched.step_update(num_updates=state["step"])
            images += k
        return images

    return run_steps


RUNNERS = {"ours": ours_runner, "plain_timm": plain_runner}


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def memory_child(args) -> None:
    """Run one side alone and print its peak RSS (a fresh process, so the number is that side's own).

    A sampling thread reads the resident set every 2 ms during training; ``extra_mb`` is the peak minus the RSS
    just before the first step (model, data and libraries already loaded).
    """
    import threading

    torch.set_num_threads(args.threads)
    run = RUNNERS[args.memory_child](recipe(args))
    base = _rss_mb()
    peak = [base]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.002)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    run(args.steps)
    done.set()
    t.join()
    peak[0] = max(peak[0], _rss_mb())
    print(json.dumps({"max_rss_mb": peak[0], "extra_mb": peak[0] - base}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=list(RECIPES), default="classify", help="whose digits recipe and model")
    ap.add_argument("--model", help="backbone (default: the recipe's, repvit_m0_6)")
    ap.add_argument("--img-size", type=int, help="default: the recipe's")
    ap.add_argument("--batch-size", type=int, help="default: the recipe's")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--steps", type=int, default=5, help="training steps per side per round")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--out", help="default: benchmarks/results/train_throughput[_TASK].json")
    ap.add_argument("--memory-child", choices=list(RUNNERS), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        memory_child(args)
        return

    torch.set_num_threads(args.threads)
    ctx = recipe(args)
    task, cfg, _ = ctx
    runners = {name: make(ctx) for name, make in RUNNERS.items()}
    for run in runners.values():
        run(args.warmup)
    per_round: dict[str, list[float]] = {n: [] for n in runners}
    totals = {n: [0, 0.0] for n in runners}
    names = list(runners)
    for r in range(args.rounds):
        for name in names[r % 2:] + names[: r % 2]:  # alternate who goes first
            t0 = time.perf_counter()
            imgs = runners[name](args.steps)
            dt = time.perf_counter() - t0
            per_round[name].append(imgs / dt)
            totals[name][0] += imgs
            totals[name][1] += dt
    ratios = [a / b for a, b in zip(per_round["ours"], per_round["plain_timm"])]

    memory = {}
    for name in runners:
        cmd = [sys.executable, __file__, "--memory-child", name, "--task", args.task, "--model", cfg.model,
               "--img-size", str(cfg.img_size), "--batch-size", str(cfg.batch_size), "--threads", str(args.threads),
               "--steps", str(args.steps * 2)]
        p = subprocess.run(cmd, capture_output=True, text=True, check=True)
        memory[name] = json.loads(p.stdout.strip().splitlines()[-1])

    result = {
        "config": vars(args) | {"recipe": RECIPES[args.task][0], "model": cfg.model, "img_size": cfg.img_size,
                                "batch_size": cfg.batch_size, "ours_channels_last": cfg.channels_last,
                                "optimizer": f"timm {cfg.opt} + cosine", "clip": [cfg.clip_grad, cfg.clip_mode],
                                "ema": cfg.model_ema},
        "environment": environment_info(),
        "images_per_s": {n: {"median_per_round": statistics.median(v), "overall": totals[n][0] / totals[n][1],
                             "per_round": v} for n, v in per_round.items()},
        "ratio_ours_over_plain": {"median_of_round_ratios": statistics.median(ratios),
                                  "overall": (totals["ours"][0] / totals["ours"][1])
                                  / (totals["plain_timm"][0] / totals["plain_timm"][1]),
                                  "per_round": ratios},
        "memory_mb": memory,
    }
    out = Path(args.out or "benchmarks/results/train_throughput"
               f"{'' if args.task == 'classify' else '_' + args.task}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    env = result["environment"]
    print(f"training throughput, {args.task} ({RECIPES[args.task][0]}): {cfg.model} @ {cfg.img_size}px, batch "
          f"{cfg.batch_size}, {args.threads} thread(s), {args.rounds} interleaved rounds x {args.steps} steps; "
          f"{env.get('cpu_model')} (family {env.get('cpu_family')} model {env.get('cpu_model_number')}), "
          f"ISA {env.get('cpu_flags')}")
    print(f"{'side':<12} {'img/s (median round)':>22} {'img/s (overall)':>16} {'peak RSS MB':>12} "
          f"{'training +MB':>13}")
    for n in runners:
        d = result["images_per_s"][n]
        print(f"{n:<12} {d['median_per_round']:>22.1f} {d['overall']:>16.1f} {memory[n]['max_rss_mb']:>12.1f} "
              f"{memory[n]['extra_mb']:>13.1f}")
    rr = result["ratio_ours_over_plain"]
    print(f"ratio ours / plain: median of per-round ratios {rr['median_of_round_ratios']:.3f}, "
          f"overall {rr['overall']:.3f}  (goal >= 1.2)")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
