"""``repvit train``: train or fine-tune (built-in digits or an ImageFolder tree), single process or torchrun."""

from __future__ import annotations

import argparse

from ._engine_flags import add_engine_flags, config_from_args, run_training
from ._pretrained import add_pretrained_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train or fine-tune (digits, ImageFolder; torchrun for DDP)",
        description="Train a RepViT. Settings: defaults (the fast digits recipe) < --config YAML < --set KEY=VALUE "
                    "< the named flags. The learning rate is lr x total_batch / 512. Under torchrun each process "
                    "gets --batch-size images; only rank 0 writes.")
    add_engine_flags(
        p, ["model", "data", "output_dir", "epochs", "batch_size", "lr", "seed", "resume", "img_size", "amp",
            "amp_dtype", "channels_last", "sync_bn", "compile", "model_ema", "strict_data", "workers", "device",
            "threads"],
        helps={"model": "model name (repvit list); default repvit_m0_6",
               "data": "'digits' (built-in) or a directory with train/ and val/ ImageFolder trees",
               "lr": "learning rate for a total batch of 512 (scaled to the real batch)",
               "sync_bn": "SyncBatchNorm under DDP", "model_ema": "no model EMA"},
        names={"model_ema": "--no-ema"}, recipes="e.g. repvit_m0_9_300e",
        set_help="override any config key (repeatable), e.g. --set warmup_epochs=0 --set mixup=0")
    # classification's own flags (dest = the TrainConfig field they set)
    p.add_argument("--finetune", help="start from these weights (any checkpoint format; another class count is ok)")
    add_pretrained_arg(p, "start from published weights (sets finetune; another class count gets a new head)")
    p.add_argument("--distillation", choices=["none", "hard", "soft"])
    p.add_argument("--teacher", help="a timm model name (with --teacher-checkpoint) or a repvit checkpoint path")
    p.add_argument("--teacher-checkpoint", help="local weights file for the teacher (nothing is downloaded)")
    p.add_argument("--repeated-aug", action="store_true", default=None, help="timm RepeatAugSampler")
    p.set_defaults(func=run)


def resolve_config(args: argparse.Namespace):
    """The TrainConfig the arguments describe."""
    from repvit.classification import TrainConfig

    cfg = config_from_args(args, TrainConfig)
    if getattr(args, "pretrained", None) is not None:
        from repvit.models import get_model_entry

        from ._pretrained import pretrained_weights

        if args.finetune:
            raise ValueError("pass --finetune or --pretrained, not both.")
        entry = pretrained_weights(args.pretrained, args.model or cfg.model)
        if args.model and get_model_entry(args.model).name != entry.model:
            raise ValueError(f"--pretrained {entry.name} holds {entry.model} weights, not {args.model}'s; drop "
                             "--model or pick its weights (repvit weights list).")
        # the weights decide the architecture; they are downloaded (or found in the cache) when the model is built
        cfg = cfg.replace(model=entry.model, finetune=entry.name)
    return cfg


def _describe(res: dict) -> str:
    if res["interrupted"]:
        return (f"interrupted after {res['epochs']} complete epochs; resume with: repvit train ... --resume auto "
                f"(checkpoint {res['last_checkpoint']})")
    top1 = f"{res['best_top1']:.2f}%" if res["best_top1"] >= 0 else "n/a"
    lines = [f"done: {res['epochs']} epochs in {res['wall_time_s']:.0f} s, best val top-1 {top1}",
             f"  best: {res['best_checkpoint']}\n  last: {res['last_checkpoint']}"]
    if res["curves_png"]:
        lines.append(f"  curves: {res['curves_png']}")
    if res["bad_images"]:
        lines.append(f"  skipped {res['bad_images']} unreadable images (see the log; --strict-data to stop instead)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from repvit.classification import train

    return run_training(args, resolve_config(args), train, describe=_describe,
                        summary=lambda res: {k: v for k, v in res.items() if k not in ("class_names", "model")})
