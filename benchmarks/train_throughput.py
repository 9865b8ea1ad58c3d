"""Training throughput (images/s) of our engine's step against a plain timm + PyTorch loop, interleaved in one run.

Both sides train the same model (same initial weights) on the same data with the same augmentation, loss, optimiser
settings (AdamW, lr, wd, eps), schedule, AGC, EMA and thread count; the difference is who runs the step:
``repvit.engine.train_one_epoch`` with the optimiser ``repvit train`` builds (timm's factory asking for torch's
fused AdamW kernel), its data loader, NaN check and bookkeeping; or a hand-written loop of the kind timm's docs show,
with timm's factory defaults. Rounds alternate between the two so machine noise hits both alike. Peak memory (RSS)
is measured for each side in its own fresh subprocess.

    python benchmarks/train_throughput.py [--model repvit_m0_6] [--img-size 32] [--batch-size 64] [--threads 1]

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
from timm.loss import LabelSmoothingCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3, dispatch_clip_grad
from torch.utils.data import DataLoader

import repvit
from repvit.bench.latency import environment_info
from repvit.classification import ClassifyTask, DistillationLoss, TrainConfig
from repvit.data import DigitsDataset, digits_train_transform
from repvit.data.loader import train_loader
from repvit.engine import StepOptions, build_optimizer, train_one_epoch
from repvit.engine.distributed import DistInfo


def make_side(args, ours: bool, seed: int = 0):
    """Model, optimiser, scheduler, EMA and loss: the same settings for both sides; ours builds its optimiser the
    way ``repvit train`` does (timm's factory plus torch's fused AdamW kernel), the plain loop with timm's factory
    defaults."""
    torch.manual_seed(seed)
    model = repvit.create_model(args.model, num_classes=10)
    if ours:
        opt = build_optimizer(model, TrainConfig(opt="adamw", weight_decay=0.025, opt_eps=1e-8), lr=2e-3)
    else:
        opt = create_optimizer_v2(model, opt="adamw", lr=2e-3, weight_decay=0.025, eps=1e-8)
    sched, _ = create_scheduler_v2(opt, sched="cosine", num_epochs=100, warmup_epochs=1, warmup_lr=1e-6,
                                   min_lr=1e-5, step_on_epochs=False, updates_per_epoch=20)
    ema = ModelEmaV3(model, decay=0.998)
    return model, opt, sched, ema, LabelSmoothingCrossEntropy(0.1)


def ours_runner(args, ds):
    """The step ``repvit train`` runs: :class:`ClassifyTask`'s ``train_step`` (loss through the distillation
    wrapper, here without a teacher) inside the engine's ``train_one_epoch``."""
    model, opt, sched, ema, base = make_side(args, ours=True)
    task = ClassifyTask()
    task.bind(TrainConfig(model=args.model, img_size=args.img_size, batch_size=args.batch_size), DistInfo())
    task.criterion = DistillationLoss(base, None, "none")
    cpu = torch.device("cpu")
    options = StepOptions(clip_grad=0.02, clip_mode="agc")
    state = {"step": 0, "epoch": 0}

    def run_steps(n: int) -> int:
        loader = train_loader(ds, args.batch_size, seed=0, epoch=state["epoch"], workers=0)
        state["epoch"] += 1
        stats = train_one_epoch(model, lambda batch: task.train_step(model, batch, cpu),
                                itertools.islice(loader, n), opt, epoch=state["epoch"], device=cpu,
                                start_step=state["step"], scheduler=sched, ema=ema, options=options)
        state["step"] += stats.steps
        return stats.images

    return run_steps


def plain_runner(args, ds):
    model, opt, sched, ema, crit = make_side(args, ours=False)
    state = {"step": 0, "epoch": 0}
    params = [p for p in model.parameters() if p.requires_grad]

    def run_steps(n: int) -> int:
        g = torch.Generator().manual_seed(state["epoch"])
        state["epoch"] += 1
        loader = DataLoader(ds, batch_size=args.batch_size, shuffle=True, drop_last=True, generator=g)
        model.train()
        images = 0
        for x, y in itertools.islice(loader, n):
            loss = crit(model(x), y)
            opt.zero_grad()
            loss.backward()
            dispatch_clip_grad(params, 0.02, mode="agc")
            opt.step()
            state["step"] += 1
            ema.update(model, step=state["step"])
            sched.step_update(num_updates=state["step"])
            images += x.shape[0]
        return images

    return run_steps


RUNNERS = {"ours": ours_runner, "plain_timm": plain_runner}


def dataset(args):
    return DigitsDataset("train", args.img_size, 3, transform=digits_train_transform())


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
    run = RUNNERS[args.memory_child](args, dataset(args))
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
    ap.add_argument("--model", default="repvit_m0_6")
    ap.add_argument("--img-size", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--steps", type=int, default=5, help="training steps per side per round")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/train_throughput.json")
    ap.add_argument("--memory-child", choices=list(RUNNERS), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        memory_child(args)
        return

    torch.set_num_threads(args.threads)
    ds = dataset(args)
    runners = {name: make(args, ds) for name, make in RUNNERS.items()}
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
        cmd = [sys.executable, __file__, "--memory-child", name, "--model", args.model, "--img-size",
               str(args.img_size), "--batch-size", str(args.batch_size), "--threads", str(args.threads),
               "--steps", str(args.steps * 2)]
        p = subprocess.run(cmd, capture_output=True, text=True, check=True)
        memory[name] = json.loads(p.stdout.strip().splitlines()[-1])

    result = {
        "config": vars(args) | {"augmentation": "digits random affine", "loss": "label smoothing 0.1",
                                "optimizer": "timm adamw + cosine + AGC 0.02 + ModelEmaV3"},
        "environment": environment_info(),
        "images_per_s": {n: {"median_per_round": statistics.median(v), "overall": totals[n][0] / totals[n][1],
                             "per_round": v} for n, v in per_round.items()},
        "ratio_ours_over_plain": {"median_of_round_ratios": statistics.median(ratios),
                                  "overall": (totals["ours"][0] / totals["ours"][1])
                                  / (totals["plain_timm"][0] / totals["plain_timm"][1]),
                                  "per_round": ratios},
        "memory_mb": memory,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"training throughput: {args.model} @ {args.img_size}px, batch {args.batch_size}, {args.threads} thread(s), "
          f"{args.rounds} interleaved rounds x {args.steps} steps")
    print(f"{'side':<12} {'img/s (median round)':>22} {'img/s (overall)':>16} {'peak RSS MB':>12} "
          f"{'training +MB':>13}")
    for n in runners:
        d = result["images_per_s"][n]
        print(f"{n:<12} {d['median_per_round']:>22.1f} {d['overall']:>16.1f} {memory[n]['max_rss_mb']:>12.1f} "
              f"{memory[n]['extra_mb']:>13.1f}")
    rr = result["ratio_ours_over_plain"]
    print(f"ratio ours / plain: median of per-round ratios {rr['median_of_round_ratios']:.3f}, "
          f"overall {rr['overall']:.3f}  (goal >= 1.0)")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
