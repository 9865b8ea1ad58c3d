"""``repvit info NAME``: parameters, MACs and feature maps of a model (train-time and fused)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="params, fused params, fused MACs and feature maps of a model")
    p.add_argument("name", nargs="?", help="model name (or give --checkpoint)")
    p.add_argument("--checkpoint", help="read the architecture from this checkpoint")
    p.add_argument("--img-size", type=int, nargs="+", default=[224], metavar="H [W]", help="input size (default 224)")
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def model_info(name: str | None, img_size=(224, 224), checkpoint=None, num_classes=None) -> dict:
    """The figures ``repvit info`` prints, as a dict."""
    import torch

    from repvit.bench.complexity import count_macs, count_params
    from repvit.models import create_model, fuse_model, get_model_entry

    h, w = (img_size[0], img_size[0]) if len(img_size) == 1 else (img_size[0], img_size[1])
    if len(img_size) > 2:
        raise ValueError(f"--img-size takes H or H W, got {img_size}.")
    from repvit.models import read_checkpoint

    ckpt_fused = bool(checkpoint) and read_checkpoint(checkpoint).fused
    # train-time figures include the distillation head, as the paper's table does
    train = create_model(name, checkpoint=checkpoint, num_classes=num_classes,
                         distillation=None if checkpoint else True, fused=ckpt_fused)
    name = train.build_info["model_name"] or name
    entry = get_model_entry(name) if name else None
    fused = fuse_model(create_model(name, checkpoint=checkpoint, num_classes=num_classes, distillation=False)
                       if checkpoint is None else train)
    feats = create_model(name, features_only=True, checkpoint=None, in_chans=train.in_chans) \
        if (entry is None or entry.supports_features) and name else None
    info = {
        "model": name,
        "img_size": [h, w],
        "num_classes": train.num_classes,
        "params": count_params(train),
        "fused_params": count_params(fused),
        "fused_macs": count_macs(fused, (h, w)),
        "config": train.build_info.get("config"),
    }
    if feats is not None:
        with torch.no_grad():
            outs = feats.eval()(torch.zeros(1, train.in_chans, h, w))
        info["feature_channels"] = [o.shape[1] for o in outs]
        info["feature_strides"] = list(feats.feature_strides())
        info["feature_shapes"] = [list(o.shape[1:]) for o in outs]
    if entry is not None and entry.published is not None:
        pub = entry.published
        info["published"] = {k: v for k, v in vars(pub).items() if v not in (None, {})}
    return info


def run(args: argparse.Namespace) -> int:
    if not args.name and not args.checkpoint:
        raise ValueError("give a model name (see `repvit list`) or --checkpoint FILE.")
    info = model_info(args.name, tuple(args.img_size), args.checkpoint, args.num_classes)
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"{info['model']} @ {info['img_size'][0]}x{info['img_size'][1]}")
    print(f"  params (train-time, with distillation head): {info['params'] / 1e6:.3f} M")
    print(f"  fused params (one head):                     {info['fused_params'] / 1e6:.3f} M")
    print(f"  fused MACs:                                  {info['fused_macs'] / 1e9:.3f} G")
    if "feature_channels" in info:
        print(f"  feature channels: {info['feature_channels']}  strides: {info['feature_strides']}")
    if "published" in info:
        print(f"  published: {info['published']}")
    return 0
