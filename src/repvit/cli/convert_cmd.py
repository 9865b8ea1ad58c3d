"""``repvit convert IN OUT``: rewrite a checkpoint of any supported format in our safetensors format."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert a timm / authors' / fused checkpoint to repvit safetensors")
    p.add_argument("input", help="checkpoint to read (.pth, .pt or .safetensors)")
    p.add_argument("output", help="file to write (.safetensors)")
    p.add_argument("--model", default=None, help="model name; by default read from the checkpoint")
    p.add_argument("--fused", action="store_true", help="write the fused (deploy) form")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from repvit.models import create_model, read_checkpoint, save_checkpoint

    ckpt = read_checkpoint(args.input)
    model = create_model(args.model, checkpoint=ckpt.state_dict if not ckpt.meta else args.input,
                         fused=args.fused or ckpt.fused)
    out = save_checkpoint(model, args.output, class_names=ckpt.meta.get("class_names"))
    name = model.build_info.get("model_name") or "custom RepViT"
    print(f"{args.input} ({ckpt.source_format}{', fused' if ckpt.fused else ''}) -> {out} "
          f"({name}, {model.num_classes} classes{', fused' if args.fused or ckpt.fused else ''})")
    return 0
