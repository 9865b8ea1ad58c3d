"""``repvit predict IMAGE|DIR --checkpoint F``: the top-k classes of images, with class names."""

from __future__ import annotations

import argparse
import json

from ._pretrained import add_pretrained_arg, checkpoint_and_model


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="top-k classes (with names) for an image or a folder of images")
    p.add_argument("images", help="an image file or a directory of images")
    p.add_argument("--checkpoint", help="any checkpoint format")
    p.add_argument("--model", help="architecture name, only for state dicts that do not say")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--fused", action="store_true", help="run the re-parameterized model")
    p.add_argument("--img-size", type=int, help="default: the checkpoint's training size, else 224")
    p.add_argument("--json", action="store_true", help="one JSON object per image")
    add_pretrained_arg(p, "predict with published weights instead of --checkpoint")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from repvit.classification.predict import predict_images

    checkpoint, model = checkpoint_and_model(args)
    res = predict_images(checkpoint, args.images, topk=args.topk, fused=args.fused, img_size=args.img_size,
                         model_name=model)
    failed = 0
    for r in res:
        if args.json:
            print(json.dumps(r))
            continue
        if "error" in r:
            failed += 1
            print(f"{r['image']}: cannot read ({r['error']})")
            continue
        print(r["image"])
        for t in r["topk"]:
            print(f"  {t['prob'] * 100:6.2f}%  {t['name']}  ({t['index']})")
    return 1 if failed and failed == len(res) else 0
