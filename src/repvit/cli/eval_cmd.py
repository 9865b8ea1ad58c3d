"""``repvit eval``: top-1, top-5, loss and image count of a checkpoint on digits or an ImageFolder val/ tree."""

from __future__ import annotations

import argparse
import json

from repvit.runtime import add_device_arg

from ._pretrained import add_pretrained_arg, checkpoint_and_model


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="top-1/top-5/loss of a checkpoint (any format, fused or not)",
        description="Evaluate a checkpoint. ImageFolder data uses the paper's eval transform: bicubic resize to "
                    "img_size/crop_pct (256 for 224), centre crop. 'digits' uses the digits preprocessing and its "
                    "held-out split.")
    p.add_argument("--checkpoint", help="training .pt, repvit .safetensors, timm or authors' file")
    p.add_argument("--data", default="digits", help="'digits' or an ImageFolder tree (DATA/val or DATA)")
    p.add_argument("--model", help="architecture name, only for state dicts that do not say")
    p.add_argument("--fused", action="store_true", help="evaluate the re-parameterized (deploy) model")
    p.add_argument("--img-size", type=int, help="input size (default: the checkpoint's training size, else 224)")
    p.add_argument("--crop-pct", type=float, default=0.875)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=0)
    add_device_arg(p)
    p.add_argument("--threads", type=int, help="CPU threads (default: 1 for digits, else torch's default)")
    p.add_argument("--strict-data", action="store_true", help="stop on an unreadable image")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_pretrained_arg(p, "evaluate published weights instead of --checkpoint")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from repvit.classification.evaluate import evaluate_checkpoint

    checkpoint, model = checkpoint_and_model(args)
    res = evaluate_checkpoint(checkpoint, args.data, fused=args.fused, img_size=args.img_size,
                              crop_pct=args.crop_pct, batch_size=args.batch_size, workers=args.workers,
                              device=args.device, strict_data=args.strict_data, model_name=model,
                              threads=args.threads)
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"{res['model']}{' (fused)' if res['fused'] else ''} on {res['data']} @ {res['img_size']}px: "
          f"top-1 {res['top1']:.2f}%  top-5 {res['top5']:.2f}%  loss {res['loss']:.4f}  ({res['images']} images)")
    if res["bad_images"]:
        print(f"  skipped {res['bad_images']} unreadable images")
    return 0
