"""``repvit segment``: Semantic FPN training, evaluation, prediction and ONNX export (digits or ADE20K layout)."""

from __future__ import annotations

import argparse
import json
import os

from repvit.runtime import device_arg

DEFAULT_RECIPE = "segment_digits"
# flag -> config key (flags left unset do not override the recipe)
_FLAGS = {
    "model": "model", "data": "data", "output_dir": "output_dir", "seed": "seed", "epochs": "epochs",
    "iters": "iters", "img_size": "img_size", "batch_size": "batch_size", "num_classes": "num_classes",
    "resume": "resume", "backbone_checkpoint": "backbone_checkpoint", "finetune": "finetune", "lr": "lr",
    "workers": "workers", "device": "device", "threads": "threads", "amp": "amp", "sync_bn": "sync_bn",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("segment", help="semantic segmentation (Semantic FPN): train, eval, predict, export",
                       description="Semantic FPN on RepViT, on the built-in digit scenes or an ADE20K-layout folder.")
    ss = p.add_subparsers(dest="segment_command", metavar="ACTION")

    t = ss.add_parser("train", help="train (single process or torchrun)",
                      description="Settings: the recipe (--config, default segment_digits) < --set KEY=VALUE < the "
                                  "named flags. lr is for a total batch of lr_base_batch and is scaled to the real "
                                  "one. Under torchrun each process gets --batch-size images; only rank 0 writes.")
    t.add_argument("--config", default=DEFAULT_RECIPE, help="YAML recipe: a path or a name in configs/ "
                   "(segment_digits, segment_semfpn_ade20k)")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key (repeatable)")
    t.add_argument("--data", help="'digits' (built-in scenes) or an ADE20K-layout folder")
    t.add_argument("--output-dir", help="where last.pt, best.pt, metrics.jsonl and curves.png go")
    t.add_argument("--seed", type=int)
    t.add_argument("--model", help="backbone model name (repvit list)")
    g = t.add_mutually_exclusive_group()
    g.add_argument("--epochs", type=int)
    g.add_argument("--iters", type=int, help="total optimiser steps (overrides epochs)")
    t.add_argument("--img-size", type=int, help="training crop, evaluation short side, digits canvas")
    t.add_argument("--batch-size", type=int, help="per process")
    t.add_argument("--num-classes", type=int, help="classes of --data PATH after reduce_zero_label (ADE20K: 150)")
    t.add_argument("--resume", help="'auto' (OUTPUT/last.pt if present) or a checkpoint path")
    t.add_argument("--backbone-checkpoint", metavar="F",
                   help="backbone weights: any classification checkpoint, or the authors' mmseg/mmdet file")
    t.add_argument("--finetune", metavar="F", help="start from a segmentation checkpoint (another class count: "
                   "the classifier is re-initialised)")
    t.add_argument("--lr", type=float)
    t.add_argument("--workers", type=int, help="data loader processes")
    t.add_argument("--device", choices=["auto", "cpu", "cuda"])
    t.add_argument("--threads", type=int, help="CPU threads per process")
    t.add_argument("--amp", action="store_true", default=None, help="mixed precision")
    t.add_argument("--sync-bn", action="store_true", default=None, help="SyncBatchNorm in the head under DDP")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    t.add_argument("--json", action="store_true", help="print the run summary as one JSON object")
    t.set_defaults(func=run_train)

    e = ss.add_parser("eval", help="mIoU / pixel accuracy / per-class IoU of a checkpoint on held-out data")
    e.add_argument("--checkpoint", required=True, help="a segmentation checkpoint (OUT/best.pt), or the authors' "
                   "mmseg file or its published name (repvit_m1_1_ade20k; evaluated with their test pipeline)")
    e.add_argument("--data", help="'digits' or an ADE20K-layout folder (default: the checkpoint's data)")
    e.add_argument("--num-classes", type=int, help="optional check against the checkpoint's class count")
    e.add_argument("--batch-size", type=int, default=8)
    e.add_argument("--device", default="cpu", type=device_arg, metavar="{auto,cpu,cuda}",
                    help="auto (cuda when available), cpu, cuda or cuda:N (default cpu)")
    e.add_argument("--ema", action="store_true", help="evaluate the EMA weights")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.set_defaults(func=run_eval)

    pr = ss.add_parser("predict", help="label PNG and coloured overlay PNG per image")
    pr.add_argument("source", metavar="IMAGE|DIR")
    pr.add_argument("--checkpoint", required=True)
    pr.add_argument("--output-dir", required=True)
    pr.add_argument("--device", default="cpu", type=device_arg, metavar="{auto,cpu,cuda}",
                    help="auto (cuda when available), cpu, cuda or cuda:N (default cpu)")
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(func=run_predict)

    x = ss.add_parser("export", help="fused ONNX with dynamic height and width, checked against ONNX Runtime")
    x.add_argument("--checkpoint", required=True)
    x.add_argument("--output", required=True, metavar="M.onnx")
    x.add_argument("--rtol", type=float, default=1e-4, help="parity tolerance relative to max |logit|")
    x.add_argument("--json", action="store_true")
    x.set_defaults(func=run_export)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def resolve_config(args: argparse.Namespace):
    """The SegmentConfig the arguments describe."""
    from repvit.dense.segmentation.task import SegmentConfig
    from repvit.engine.config import load_config, parse_overrides

    overrides = parse_overrides(args.overrides)
    overrides.update({key: getattr(args, flag) for flag, key in _FLAGS.items() if getattr(args, flag) is not None})
    if args.no_progress:
        overrides["progress"] = False
    return load_config(args.config, overrides, cls=SegmentConfig)


def run_train(args: argparse.Namespace) -> int:
    from repvit.dense.segmentation.task import train

    cfg = resolve_config(args)
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=1))
        return 0
    res = train(cfg)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    if args.json:
        print(json.dumps({k: v for k, v in res.items() if k not in ("model", "eval")} | {"eval": _plain(res["eval"])}))
    elif res["interrupted"]:
        print(f"interrupted; resume with: repvit segment train ... --resume auto (checkpoint {res['last_checkpoint']})")
    else:
        print(f"done: {res['epochs']} epochs ({res['steps']} steps) in {res['wall_time_s']:.0f} s, best val mIoU "
              f"{res['best']:.4f}\n  best: {res['best_checkpoint']}\n  last: {res['last_checkpoint']}")
        if res["curves_png"]:
            print(f"  curves: {res['curves_png']}")
    return 130 if res["interrupted"] else 0


def _plain(d):
    return {k: v for k, v in (d or {}).items() if isinstance(v, (int, float, str, list, type(None)))}


def run_eval(args: argparse.Namespace) -> int:
    from repvit.dense.segmentation.inference import evaluate_checkpoint

    res = evaluate_checkpoint(args.checkpoint, args.data, num_classes=args.num_classes, batch_size=args.batch_size,
                              device=args.device, use_ema=args.ema)
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"mIoU {res['miou']:.4f}  pixel acc {res['pixel_acc']:.4f}  ({res['images']} images)")
    for name, iou in zip(res["class_names"], res["per_class_iou"]):
        print(f"  {name:>16s}  {'-' if iou is None else f'{iou:.4f}'}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from repvit.dense.segmentation.inference import predict_images

    res = predict_images(args.checkpoint, args.source, args.output_dir, device=args.device)
    if args.json:
        print(json.dumps(res))
        return 0
    for r in res:
        top = ", ".join(f"{k} {v:.1%}" for k, v in sorted(r["classes"].items(), key=lambda kv: -kv[1])[:5])
        print(f"{r['image']}: {r['label_png']}, {r['overlay_png']}  ({top})")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from repvit.dense.segmentation.export import export_segmenter_onnx
    from repvit.dense.segmentation.task import load_segmenter

    model, cfg, meta = load_segmenter(args.checkpoint)
    s = cfg.img_size
    res = export_segmenter_onnx(model, args.output, example_size=(s, s), check_sizes=((s, s), (s + 32, 2 * s)),
                                rtol=args.rtol, metadata={k: meta[k] for k in ("class_names", "mean", "std")
                                                          if k in meta} | {"model_name": cfg.model})
    if args.json:
        print(json.dumps(res))
    else:
        print(f"wrote {res['path']} (fused, dynamic batch/height/width); ONNX Runtime parity "
              f"{res['max_rel_diff']:.2e} relative at sizes {res['checked']}")
    return 0
