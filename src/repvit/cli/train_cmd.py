"""``repvit train``: train or fine-tune (built-in digits or an ImageFolder tree), single process or torchrun."""

from __future__ import annotations

import argparse
import json

# flag -> config key (flags left unset do not override the recipe)
_FLAGS = {
    "model": "model", "data": "data", "epochs": "epochs", "batch_size": "batch_size", "lr": "lr",
    "output_dir": "output_dir", "seed": "seed", "resume": "resume", "distillation": "distillation",
    "teacher": "teacher", "teacher_checkpoint": "teacher_checkpoint", "amp": "amp", "amp_dtype": "amp_dtype",
    "channels_last": "channels_last", "compile": "compile", "workers": "workers", "sync_bn": "sync_bn",
    "strict_data": "strict_data", "finetune": "finetune", "img_size": "img_size", "device": "device",
    "threads": "threads", "model_ema": "model_ema", "repeated_aug": "repeated_aug",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train or fine-tune (digits, ImageFolder; torchrun for DDP)",
        description="Train a RepViT. Settings: defaults (the fast digits recipe) < --config YAML < --set KEY=VALUE "
                    "< the named flags. The learning rate is lr x total_batch / 512. Under torchrun each process "
                    "gets --batch-size images; only rank 0 writes.")
    p.add_argument("--config", help="YAML recipe: a path or a name in configs/ (e.g. repvit_m0_9_300e)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key (repeatable), e.g. --set warmup_epochs=0 --set mixup=0")
    p.add_argument("--model", help="model name (repvit list); default repvit_m0_6")
    p.add_argument("--data", help="'digits' (built-in) or a directory with train/ and val/ ImageFolder trees")
    p.add_argument("--output-dir", help="where last.pt, best.pt, metrics.jsonl and curves.png go")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help="per process")
    p.add_argument("--lr", type=float, help="learning rate for a total batch of 512 (scaled to the real batch)")
    p.add_argument("--seed", type=int)
    p.add_argument("--resume", help="'auto' (OUTPUT/last.pt if present) or a checkpoint path")
    p.add_argument("--finetune", help="start from these weights (any checkpoint format; another class count is ok)")
    p.add_argument("--img-size", type=int)
    from ._pretrained import add_pretrained_arg

    add_pretrained_arg(p, "start from published weights (sets finetune; another class count gets a new head)")
    p.add_argument("--distillation", choices=["none", "hard", "soft"])
    p.add_argument("--teacher", help="a timm model name (with --teacher-checkpoint) or a repvit checkpoint path")
    p.add_argument("--teacher-checkpoint", help="local weights file for the teacher (nothing is downloaded)")
    p.add_argument("--amp", action="store_true", default=None, help="mixed precision (bf16; fp16 via --amp-dtype)")
    p.add_argument("--amp-dtype", choices=["bfloat16", "float16"])
    p.add_argument("--channels-last", action="store_true", default=None)
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    p.add_argument("--sync-bn", action="store_true", default=None, help="SyncBatchNorm under DDP")
    p.add_argument("--repeated-aug", action="store_true", default=None, help="timm RepeatAugSampler")
    p.add_argument("--no-ema", dest="model_ema", action="store_false", default=None, help="no model EMA")
    p.add_argument("--strict-data", action="store_true", default=None,
                   help="stop on an unreadable image instead of skipping it")
    p.add_argument("--workers", type=int, help="data loader processes")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, help="CPU threads per process")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--json", action="store_true", help="print the run summary as one JSON object")
    p.set_defaults(func=run)


def resolve_config(args: argparse.Namespace):
    """The TrainConfig the arguments describe."""
    from repvit.classification.config import load_config
    from repvit.engine.config import parse_overrides

    overrides = parse_overrides(args.overrides)
    overrides.update({key: getattr(args, flag) for flag, key in _FLAGS.items() if getattr(args, flag) is not None})
    if args.no_progress:
        overrides["progress"] = False
    cfg = load_config(args.config, overrides)
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


def run(args: argparse.Namespace) -> int:
    from repvit.classification import train

    cfg = resolve_config(args)
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=1))
        return 0
    res = train(cfg)
    import os

    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    if args.json:
        print(json.dumps({k: v for k, v in res.items() if k not in ("class_names", "model")}))
    elif res["interrupted"]:
        print(f"interrupted after {res['epochs']} complete epochs; resume with: repvit train ... --resume auto "
              f"(checkpoint {res['last_checkpoint']})")
        return 130
    else:
        top1 = f"{res['best_top1']:.2f}%" if res["best_top1"] >= 0 else "n/a"
        print(f"done: {res['epochs']} epochs in {res['wall_time_s']:.0f} s, best val top-1 {top1}")
        print(f"  best: {res['best_checkpoint']}\n  last: {res['last_checkpoint']}")
        if res["curves_png"]:
            print(f"  curves: {res['curves_png']}")
        if res["bad_images"]:
            print(f"  skipped {res['bad_images']} unreadable images (see the log; --strict-data to stop instead)")
    return 130 if res["interrupted"] else 0
