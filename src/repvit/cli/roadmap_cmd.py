"""``repvit roadmap``: params, MACs, fused latency and (optionally) top-1 of every MobileNetV3-L → RepViT step,
and of the paper's ablations on top of a step (``--ablate se=all,cross,none``)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "roadmap",
        help="the MobileNetV3-L -> RepViT-M1.0 modernization roadmap: one row per step",
        description="Build every roadmap step (roadmap_0_* ... roadmap_8_*), count params and MACs, time the fused "
        "model on each backend (all steps interleaved in one run) and optionally train every step with one recipe. "
        "--ablate adds the paper's ablations as extra rows, measured the same way: e.g. --steps 8 --ablate "
        "se=all,cross,none reparam=on,off.",
    )
    p.add_argument("--img-size", type=int, default=224, help="input side for MACs and latency (default 224)")
    p.add_argument("--backends", nargs="*", default=[], metavar="BACKEND",
                   help="latency backends, e.g. eager onnxruntime (see `repvit bench --help`); default: no latency")
    p.add_argument("--threads", type=int, default=1, help="threads while timing (default 1)")
    p.add_argument("--rounds", type=int, default=10, help="interleaved timing rounds (default 10)")
    p.add_argument("--iters", type=int, default=5, help="timed calls per step and round (default 5)")
    p.add_argument("--warmup", type=int, default=5, help="warm-up calls per step (default 5)")
    p.add_argument("--train", metavar="digits|PATH", help="train every step on the digits set or an ImageFolder tree")
    p.add_argument("--epochs", type=int, default=10, help="training epochs per step (default 10)")
    p.add_argument("--train-img-size", type=int, default=32, help="training resolution (default 32)")
    p.add_argument("--batch-size", type=int, default=64, help="training batch (default 64)")
    p.add_argument("--output-dir", default="runs/roadmap", help="training runs go here (default runs/roadmap)")
    p.add_argument("--steps", nargs="*", metavar="STEP", help="only these steps (numbers or names)")
    p.add_argument("--ablate", nargs="+", action="extend", default=[], metavar="KEY=V1,V2",
                   help="extra rows: --ablate-base with one switch changed, one row per value; keys: "
                   "se=all,cross,none  reparam=on,off  expansion=RATIO,...  kernel=ODD,... (repeatable)")
    p.add_argument("--ablate-base", metavar="STEP",
                   help="the step the ablations change (number or name; default: the last, RepViT-M1.0)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--plot", metavar="FILE", help="draw latency and top-1 per step (needs matplotlib)")
    p.add_argument("--out", metavar="FILE.json", help="also write the full result (JSON) to this file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from repvit.roadmap.runner import RoadmapSettings, format_table, plot_roadmap, run_roadmap

    if args.backends:
        from repvit.bench.backends import BACKENDS

        unknown = [b for b in args.backends if b not in BACKENDS]
        if unknown:
            raise ValueError(f"unknown backend(s) {unknown}; choose from {', '.join(BACKENDS)}.")
    if args.plot and not args.backends and not args.train:
        raise ValueError("--plot needs something to draw: add --backends eager (latency) and/or --train digits.")
    settings = RoadmapSettings(
        img_size=args.img_size, backends=tuple(args.backends), threads=args.threads, rounds=args.rounds,
        iters_per_round=args.iters, warmup=args.warmup, train=args.train, epochs=args.epochs,
        train_img_size=args.train_img_size, batch_size=args.batch_size, output_dir=args.output_dir,
        steps=tuple(args.steps) if args.steps else None, ablations=tuple(args.ablate),
        ablation_base=args.ablate_base,
    )
    result = run_roadmap(settings)
    if args.plot:
        result["plot"] = str(plot_roadmap(result, args.plot))
    if args.out:
        from pathlib import Path

        from repvit.io import atomic_write

        text = json.dumps(result, indent=1)
        atomic_write(args.out, lambda tmp: Path(tmp).write_text(text))
    if args.json:
        print(json.dumps(result))
        return 0
    print(format_table(result))
    env = result["environment"]
    if args.backends:
        print(f"\nlatency: fused, batch 1, {args.img_size}x{args.img_size}, {args.threads} thread(s), median of "
              f"{args.rounds}x{args.iters} interleaved calls; {env.get('cpu_model') or env.get('processor')}, "
              f"torch {env['torch']}")
    if args.ablate:
        base = next(r["base"] for r in result["steps"] if "ablation" in r)
        print(f"ablations: {base} with one switch changed per row (repvit.roadmap.config.with_*)")
    if args.train:
        print(f"top-1: {args.epochs} epochs on {args.train} at {args.train_img_size}px, same recipe for every step")
    if args.plot:
        print(f"plot: {result['plot']}")
    return 0
