"""``repvit segment``: Semantic FPN training, evaluation, prediction and ONNX export (digits or ADE20K layout)."""

from __future__ import annotations

import argparse

from repvit.runtime import add_device_arg, resolve_device

from ._dense import add_backbone_args, add_checkpoint_arg, add_task_parser, describe_run, print_result, task_config
from ._engine_flags import add_engine_flags, run_training

DEFAULT_RECIPE = "segment_digits"
_CHECKPOINT_HELP = ("a segmentation checkpoint (OUT/best.pt), the authors' mmseg file, or a published weights name "
                    "(repvit_m1_1_ade20k; repvit weights list)")


def register(sub: argparse._SubParsersAction) -> None:
    add_task_parser(
        sub, "segment", help="semantic segmentation (Semantic FPN): train, eval, predict, export",
        description="Semantic FPN on RepViT, on the built-in digit scenes or an ADE20K-layout folder.",
        actions=(_add_train, _add_eval, _add_predict, _add_export))


def _add_train(actions: argparse._SubParsersAction) -> None:
    t = actions.add_parser("train", help="train (single process or torchrun)",
                           description="Settings: the recipe (--config, default segment_digits) < --set KEY=VALUE < "
                                       "the named flags. lr is for a total batch of lr_base_batch and is scaled to "
                                       "the real one. Under torchrun each process gets --batch-size images; only rank "
                                       "0 writes.")
    add_engine_flags(
        t, ["data", "output_dir", "seed", "model", "epochs", "iters", "img_size", "batch_size", "num_classes",
            "resume", "lr", "workers", "device", "threads", "amp", "sync_bn"],
        helps={"data": "'digits' (built-in scenes) or an ADE20K-layout folder",
               "model": "backbone model name (repvit list)", "iters": "total optimiser steps (overrides epochs)",
               "img_size": "training crop, evaluation short side, digits canvas",
               "num_classes": "classes of --data PATH after reduce_zero_label (ADE20K: 150)",
               "sync_bn": "SyncBatchNorm in the head under DDP"},
        exclusive=("epochs", "iters"), config_default=DEFAULT_RECIPE,
        recipes="segment_digits, segment_semfpn_ade20k")
    # segmentation's own flags (dest = the SegmentConfig field they set)
    add_backbone_args(t, "backbone weights: any classification checkpoint, or the authors' mmseg/mmdet file")
    t.add_argument("--finetune", metavar="F", help="start from a segmentation checkpoint (another class count: "
                   "the classifier is re-initialised)")
    t.set_defaults(func=run_train)


def _add_eval(actions: argparse._SubParsersAction) -> None:
    e = actions.add_parser("eval", help="mIoU / pixel accuracy / per-class IoU of a checkpoint on held-out data")
    add_checkpoint_arg(e, _CHECKPOINT_HELP + " (authors' files are evaluated with their test pipeline)")
    e.add_argument("--data", help="'digits' or an ADE20K-layout folder (default: the checkpoint's data)")
    e.add_argument("--num-classes", type=int, help="optional check against the checkpoint's class count")
    e.add_argument("--batch-size", type=int, default=8)
    add_device_arg(e)
    e.add_argument("--ema", action="store_true", help="evaluate the EMA weights")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.set_defaults(func=run_eval)


def _add_predict(actions: argparse._SubParsersAction) -> None:
    pr = actions.add_parser("predict", help="label PNG and coloured overlay PNG per image")
    pr.add_argument("source", metavar="IMAGE|DIR")
    add_checkpoint_arg(pr, _CHECKPOINT_HELP)
    pr.add_argument("--output-dir", required=True)
    add_device_arg(pr)
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(func=run_predict)


def _add_export(actions: argparse._SubParsersAction) -> None:
    x = actions.add_parser("export", help="fused ONNX with dynamic height and width, checked against ONNX Runtime")
    add_checkpoint_arg(x, _CHECKPOINT_HELP)
    x.add_argument("--output", required=True, metavar="M.onnx")
    x.add_argument("--rtol", type=float, default=1e-4, help="parity tolerance relative to max |logit|")
    x.add_argument("--json", action="store_true")
    x.set_defaults(func=run_export)


def resolve_config(args: argparse.Namespace):
    """The SegmentConfig the arguments describe."""
    from repvit.dense.segmentation.config import SegmentConfig

    return task_config(args, SegmentConfig)


def _describe(res: dict) -> str:
    return describe_run(res, "segment", f"best val mIoU {res['best']:.4f}")


def run_train(args: argparse.Namespace) -> int:
    from repvit.dense.segmentation.task import train

    return run_training(args, resolve_config(args), train, describe=_describe,
                        summary=lambda res: {k: v for k, v in res.items() if k not in ("model", "eval")}
                        | {"eval": _plain(res["eval"])})


def _plain(d):
    return {k: v for k, v in (d or {}).items() if isinstance(v, (int, float, str, list, type(None)))}


def run_eval(args: argparse.Namespace) -> int:
    from repvit.dense.segmentation.evaluate import evaluate_checkpoint

    res = evaluate_checkpoint(args.checkpoint, args.data, num_classes=args.num_classes, batch_size=args.batch_size,
                              device=resolve_device(args.device), use_ema=args.ema)
    print_result(args, res, _eval_text)
    return 0


def _eval_text(res: dict) -> str:
    rows = (f"  {name:>16s}  {'-' if iou is None else f'{iou:.4f}'}"
            for name, iou in zip(res["class_names"], res["per_class_iou"]))
    return "\n".join([f"mIoU {res['miou']:.4f}  pixel acc {res['pixel_acc']:.4f}  ({res['images']} images)", *rows])


def run_predict(args: argparse.Namespace) -> int:
    from repvit.dense.segmentation.predict import predict_images

    res = predict_images(args.checkpoint, args.source, args.output_dir, device=resolve_device(args.device))
    print_result(args, res, lambda res: "\n".join(map(_predict_line, res)))
    return 0


def _predict_line(r: dict) -> str:
    top = ", ".join(f"{k} {v:.1%}" for k, v in sorted(r["classes"].items(), key=lambda kv: -kv[1])[:5])
    return f"{r['image']}: {r['label_png']}, {r['overlay_png']}  ({top})"


def run_export(args: argparse.Namespace) -> int:
    from repvit.dense.segmentation.export import export_checkpoint

    res = export_checkpoint(args.checkpoint, args.output, rtol=args.rtol)
    print_result(args, res, lambda res: f"wrote {res['path']} (fused, dynamic batch/height/width); ONNX Runtime "
                                        f"parity {res['max_rel_diff']:.2e} relative at sizes {res['checked']}")
    return 0
