"""``repvit detect``: object detection and instance segmentation (Mask R-CNN, Faster R-CNN, RetinaNet).

Sub-commands: ``train`` (shared engine; torchrun for DDP), ``eval`` (COCO AP as JSON), ``predict`` (drawn PNGs and a
COCO results JSON), ``export`` (the whole detector to ONNX, checked against ONNX Runtime).
"""

from __future__ import annotations

import argparse

from repvit.runtime import add_device_arg, resolve_device, set_threads

from ._dense import add_backbone_args, add_checkpoint_arg, add_task_parser, describe_run, print_result, task_config
from ._engine_flags import add_engine_flags, run_training

_CHECKPOINT_HELP = ("a detect checkpoint (OUT/best.pt), the authors' mmdet Mask R-CNN file, or a published weights "
                    "name (repvit_m1_1_coco; repvit weights list)")


def register(sub: argparse._SubParsersAction) -> None:
    add_task_parser(
        sub, "detect", help="object detection / instance segmentation: train, eval, predict, export",
        description="Mask R-CNN (default), Faster R-CNN and RetinaNet from torchvision on RepViT + FPN.",
        actions=(_add_train, _add_eval, _add_predict, _add_export))


def _add_train(actions: argparse._SubParsersAction) -> None:
    t = actions.add_parser("train", help="train a detector (digits scenes or a COCO-layout folder; torchrun for DDP)",
                           description="Settings: the detect_digits recipe (defaults) < --config YAML < --set "
                                       "KEY=VALUE < the named flags. lr is for a total batch of lr_base_batch (16).")
    add_engine_flags(
        t, ["data", "output_dir", "seed", "model", "epochs", "iters", "img_size", "batch_size", "resume", "amp",
            "workers", "device", "threads"],
        helps={"data": "'digits' (built-in scenes) or a COCO-layout folder (train2017/, val2017/, "
                       "annotations/instances_*.json)",
               "model": "backbone: a RepViT model name (repvit list)",
               "img_size": "short side after resizing (the long side is capped at x1333/800)"},
        recipes="detect_digits, detect_maskrcnn_coco_1x")
    # detection's own flags (dest = the DetectConfig field they set)
    t.add_argument("--detector", choices=["maskrcnn", "fasterrcnn", "retinanet"])
    add_backbone_args(t, "initial weights: a classification checkpoint (any format), the authors' "
                         "detection/segmentation file, or a detect checkpoint")
    t.set_defaults(func=run_train)


def _add_eval(actions: argparse._SubParsersAction) -> None:
    e = actions.add_parser("eval", help="COCO box (and mask) AP of a checkpoint on the val split")
    add_checkpoint_arg(e, _CHECKPOINT_HELP + " (authors' files are evaluated with their test settings)")
    e.add_argument("--data", default="digits", help="'digits' or a COCO-layout folder (its val split)")
    e.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config keys for reading the data (val_images=..., val_annotations=..., val_subset=N)")
    e.add_argument("--fused", action="store_true", help="evaluate the deploy form (re-parameterized backbone)")
    e.add_argument("--batch-size", type=int, default=8)
    e.add_argument("--workers", type=int, default=0)
    add_device_arg(e)
    e.add_argument("--threads", type=int, default=None, help="CPU threads")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.set_defaults(func=run_eval)


def _add_predict(actions: argparse._SubParsersAction) -> None:
    pr = actions.add_parser("predict", help="draw detections on images; one COCO results JSON")
    pr.add_argument("images", metavar="IMAGE|DIR")
    add_checkpoint_arg(pr, _CHECKPOINT_HELP)
    pr.add_argument("--output-dir", required=True)
    pr.add_argument("--score-threshold", type=float, default=0.5, help="draw detections scoring at least this")
    pr.add_argument("--fused", action="store_true", help="run the deploy form")
    add_device_arg(pr)
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(func=run_predict)


def _add_export(actions: argparse._SubParsersAction) -> None:
    x = actions.add_parser("export", help="export the whole detector (fused backbone) to ONNX; check it in ONNX "
                                          "Runtime")
    add_checkpoint_arg(x, _CHECKPOINT_HELP)
    x.add_argument("--output", required=True, help="the .onnx file")
    x.add_argument("--height", type=int, help="input height (default: the training img_size)")
    x.add_argument("--width", type=int, help="input width (default: the height)")
    x.add_argument("--dynamic-size", action="store_true", help="symbolic image height and width")
    x.add_argument("--image", help="image for the parity check (default: a held-out digits scene for digits "
                                   "checkpoints, else a random image)")
    x.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime parity check")
    x.add_argument("--json", action="store_true")
    x.set_defaults(func=run_export)


def resolve_config(args: argparse.Namespace):
    """The DetectConfig the arguments describe."""
    from repvit.dense.detection.config import DetectConfig

    return task_config(args, DetectConfig)


def _describe(res: dict) -> str:
    ev = res["eval"] or {}
    mask = f", mask AP {ev['mask_ap']:.4f}" if ev.get("mask_ap") is not None else ""
    return describe_run(res, "detect", f"best box AP {res['best']:.4f}; last eval box AP "
                                       f"{ev.get('bbox_ap', float('nan')):.4f}{mask}")


def run_train(args: argparse.Namespace) -> int:
    from repvit.dense.detection.task import train

    return run_training(args, resolve_config(args), train, describe=_describe,
                        summary=lambda res: {k: v for k, v in res.items() if k not in ("model", "meta")})


def run_eval(args: argparse.Namespace) -> int:
    from repvit.dense.detection.evaluate import evaluate_checkpoint
    from repvit.engine.config import parse_overrides

    set_threads(args.threads)
    res = evaluate_checkpoint(args.checkpoint, data=args.data, fused=args.fused, batch_size=args.batch_size,
                              workers=args.workers, device=resolve_device(args.device),
                              overrides=parse_overrides(args.overrides))
    print_result(args, res, _eval_text)
    return 0


def _eval_text(res: dict) -> str:
    return "\n".join(f"{k:16s} {v if isinstance(v, int) or v is None else f'{v:.4f}'}" for k, v in res.items())


def run_predict(args: argparse.Namespace) -> int:
    from repvit.dense.detection.predict import predict_images

    res = predict_images(args.checkpoint, args.images, args.output_dir, score_threshold=args.score_threshold,
                         fused=args.fused, device=resolve_device(args.device))
    print_result(args, res, _predict_text)
    return 0


def _predict_text(res: dict) -> str:
    lines = [f"{item['image']}: {item['detections']} detections -> {item['png']}" for item in res["images"]]
    return "\n".join([*lines, f"COCO results: {res['results_json']}"])


def run_export(args: argparse.Namespace) -> int:
    from repvit.dense.detection.export import export_checkpoint

    res = export_checkpoint(args.checkpoint, args.output, height=args.height, width=args.width,
                            dynamic_size=args.dynamic_size, image=args.image, check=not args.no_check)
    print_result(args, res, _export_text)
    return 0 if res.get("parity_ok", True) else 1


def _export_text(res: dict) -> str:
    text = f"wrote {res['onnx']} ({res['input']})"
    if "parity" in res:
        text += "\nONNX Runtime parity: " + ", ".join(f"{k} {v}" for k, v in res["parity"].items())
    return text
