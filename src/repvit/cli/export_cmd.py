"""``repvit export``: fuse a model, export it to ONNX / TorchScript / Core ML / ExecuTorch / TFLite (optionally INT8)
and check parity."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a fused model to ONNX, TorchScript, Core ML, ExecuTorch or TFLite and "
                                             "check parity",
                       description="Fuse the model, export it, run the exported file and compare it with the fused "
                                   "PyTorch model; exit 1 with the difference when they do not match.")
    p.add_argument("--model", default=None, help="model name (see `repvit list`); default: read from --checkpoint")
    p.add_argument("--checkpoint", default=None, help="weights in any supported format (ours, timm, authors', fused)")
    p.add_argument("--format", default=None,
                   help="onnx, torchscript, coreml, executorch or tflite (default: from the --output suffix)")
    p.add_argument("--output", required=True,
                   help="file to write: .onnx, .pt (TorchScript), .mlpackage (Core ML), .pte (ExecuTorch) or .tflite")
    p.add_argument("--img-size", type=int, nargs="+", default=[224], metavar=("H", "W"),
                   help="input size, multiples of 32 (default 224)")
    p.add_argument("--batch", default=None,
                   help="'dynamic' (default; ONNX batch axis; 1 for the fixed-shape formats) or N (Core ML: always 1)")
    p.add_argument("--bake-normalization", action="store_true",
                   help="the graph takes RGB in 0..1 and applies ImageNet mean/std itself (Core ML always does)")
    p.add_argument("--int8", action="store_true",
                   help="static INT8 quantization, per-channel weights (onnx: QDQ for ONNX Runtime; executorch: PT2E + "
                        "XNNPACKQuantizer)")
    p.add_argument("--int8-mode", default="auto", choices=("auto", "safe", "full"),
                   help="ONNX INT8 weights: auto (7-bit on x86 CPUs without VNNI, where 8-bit products saturate), safe "
                        "(7-bit, accurate on every CPU) or full (8-bit: VNNI, AMX, ARM); recorded in the metadata")
    p.add_argument("--calib", default=None, help="INT8 calibration data: a folder of images, or 'digits'")
    p.add_argument("--calib-limit", type=int, default=256, help="at most this many calibration images")
    p.add_argument("--mean", type=float, nargs=3, default=None,
                   help="input normalization mean (default: ImageNet's; 0.5 for a digits-trained checkpoint)")
    p.add_argument("--std", type=float, nargs=3, default=None, help="input normalization std (see --mean)")
    p.add_argument("--features-only", action="store_true", help="export the backbone: 4 feature maps as outputs")
    p.add_argument("--num-classes", type=int, default=None, help="head classes (default: checkpoint's, else 1000)")
    p.add_argument("--optimize", default="basic", choices=("none", "basic", "extended"),
                   help="ONNX graph optimizations stored in the file (basic: portable; extended: ONNX Runtime only)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")
    p.add_argument("--rtol", type=float, default=1e-4, help="parity tolerance relative to max |output|")
    from ._pretrained import add_pretrained_arg

    add_pretrained_arg(p, "export published weights instead of --checkpoint")
    p.set_defaults(func=run)


def _format(args: argparse.Namespace) -> str:
    from repvit.deploy.export import FORMATS, format_for_path

    if args.format:
        if args.format not in FORMATS:
            raise ValueError(f"Unknown export format {args.format!r}; supported: {', '.join(FORMATS)}.")
        return args.format
    return format_for_path(args.output)


def run(args: argparse.Namespace) -> int:
    from timm.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    from repvit.data import is_digits
    from repvit.deploy.export import check_img_size, export_model
    from repvit.models import create_model, read_checkpoint

    fmt = _format(args)
    if len(args.img_size) > 2:
        raise ValueError("--img-size takes H or H W.")
    img = check_img_size(tuple(args.img_size) if len(args.img_size) == 2 else args.img_size[0])
    if args.pretrained is not None:
        from ._pretrained import pretrained_file

        if args.checkpoint:
            raise ValueError("pass --checkpoint or --pretrained, not both.")
        args.checkpoint, args.model = pretrained_file(args.pretrained, args.model)
    if args.model is None and args.checkpoint is None:
        raise ValueError("pass --model NAME (see `repvit list`) and/or --checkpoint FILE.")
    class_names, fused_ckpt, trained_on = None, False, None
    if args.checkpoint:
        ckpt = read_checkpoint(args.checkpoint)
        class_names, fused_ckpt = ckpt.meta.get("class_names"), ckpt.fused
        trained_on = (ckpt.meta.get("train_config") or {}).get("data")
    mean, std = IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    if trained_on is not None and is_digits(trained_on):  # the digits transform normalizes with mean/std 0.5
        from repvit.data.digits import DIGITS_MEAN, DIGITS_STD

        mean, std = (DIGITS_MEAN,) * 3, (DIGITS_STD,) * 3
    mean, std = tuple(args.mean or mean), tuple(args.std or std)
    model = create_model(args.model, checkpoint=args.checkpoint, num_classes=args.num_classes, fused=fused_ckpt,
                         features_only=args.features_only)
    batch = args.batch or ("1" if fmt == "coreml" else "dynamic")
    calib = None
    if args.int8:
        from repvit.deploy.calib import load_calibration

        if not args.calib:
            raise ValueError("--int8 needs --calib FOLDER (images) or --calib digits.")
        calib = load_calibration(args.calib, img, mean, std, normalize=not args.bake_normalization,
                                 limit=args.calib_limit)
    res = export_model(model, args.output, fmt, img_size=img, batch=batch,
                       bake_normalization=args.bake_normalization,
                       mean=mean, std=std, class_names=class_names, int8=args.int8, calib=calib, rtol=args.rtol,
                       int8_mode=args.int8_mode,
                       opset=args.opset, optimize=args.optimize)
    print(f"wrote {res.path} ({fmt}, {res.metadata['model_name']}, input {res.metadata['input_size']}, "
          f"batch {res.metadata['batch']}, outputs {', '.join(res.output_names)})")
    print(f"parity vs fused PyTorch: max abs diff {res.parity.max_abs_diff:.2e}, "
          f"relative {res.parity.max_rel_diff:.2e} "
          f"(tolerance {args.rtol:.0e}; {len(res.parity.checked)} checks)")
    if res.ops:
        print(f"{'ONNX ops' if fmt == 'onnx' else 'program'}: {', '.join(res.ops)}")
    if res.int8:
        print("INT8 vs FP32 on the calibration images: " + json.dumps({k: round(v, 4) for k, v in res.int8.items()}))
        if "int8_plan" in res.metadata:
            print(f"INT8 plan: {res.metadata['int8_plan']}")
    return 0
