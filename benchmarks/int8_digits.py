"""INT8 vs FP32 on the built-in digits set: held-out top-1 and latency of the ONNX Runtime models.

Trains RepViT on the digits set with ``repvit.classification.train`` (or takes ``--checkpoint``), exports the fused
model to ONNX in FP32 and statically quantized INT8 (QDQ, per-channel weights, calibrated on training images only),
evaluates both in ONNX Runtime on the 450 held-out images, and times them interleaved at batch 1 (at the digits
resolution and at 224x224, where the convolutions dominate).

    python benchmarks/int8_digits.py --out benchmarks/results/int8_digits.json                # trains first
    python benchmarks/int8_digits.py --checkpoint runs/digits/best.pt
"""

from __future__ import annotations

import argparse
import atexit
import json
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch


def _top1(sess, x: torch.Tensor, y: torch.Tensor, batch: int = 50) -> float:
    name = sess.get_inputs()[0].name
    correct = 0
    for i in range(0, len(y), batch):
        logits = sess.run(None, {name: x[i:i + batch].numpy()})[0]
        correct += int((torch.from_numpy(logits).argmax(1) == y[i:i + batch]).sum())
    return 100.0 * correct / len(y)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="a trained digits checkpoint; default: train one now")
    p.add_argument("--model", default="repvit_m0_6")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--img-size", type=int, default=32)
    p.add_argument("--calib-images", type=int, default=256)
    p.add_argument("--calib-method", default="minmax", choices=("minmax", "entropy", "percentile"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--out", default="benchmarks/results/int8_digits.json")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")

    import repvit
    from repvit.bench.latency import environment_info, interleaved_latency
    from repvit.data import load_digits_split
    from repvit.data.digits import DIGITS_MEAN, DIGITS_STD
    from repvit.deploy.export import export_model
    from repvit.deploy.onnx_export import make_session

    ckpt = args.checkpoint
    train_summary = None
    if ckpt is None:
        from repvit.classification import train

        out_dir = tempfile.mkdtemp(prefix="int8_digits_")  # scratch: the run's checkpoints, removed at exit
        atexit.register(shutil.rmtree, out_dir, ignore_errors=True)
        summary = train({"model": args.model, "data": "digits", "epochs": args.epochs, "img_size": args.img_size,
                         "output_dir": out_dir, "progress": False})
        ckpt = summary["best_checkpoint"]
        train_summary = {k: summary.get(k) for k in ("best_top1", "top1", "epochs", "wall_time_s")}
    model = repvit.create_model(checkpoint=ckpt).eval()
    fused = repvit.fuse_model(model)
    s = args.img_size
    x_val, y_val = load_digits_split("val", img_size=s)
    x_train, _ = load_digits_split("train", img_size=s)
    g = torch.Generator().manual_seed(0)
    calib_x = x_train[torch.randperm(len(x_train), generator=g)[: args.calib_images]]
    calib = [b.numpy() for b in calib_x.split(32)]
    with torch.no_grad():
        torch_top1 = 100.0 * float((fused(x_val).argmax(1) == y_val).float().mean())

    tmp = Path(tempfile.mkdtemp(prefix="int8_export_"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    norm = dict(mean=(DIGITS_MEAN,) * 3, std=(DIGITS_STD,) * 3, class_names=[str(i) for i in range(10)])
    fp32 = export_model(model, tmp / "fp32.onnx", "onnx", img_size=s, **norm)
    from repvit.deploy.quantize import quantize_onnx_bytes

    int8_bytes = quantize_onnx_bytes(fp32.path.read_bytes(), calib, method=args.calib_method)
    sess_fp32 = make_session(fp32.path, threads=args.threads, spinning=False)
    sess_int8 = make_session(int8_bytes, threads=args.threads, spinning=False)
    top1_fp32, top1_int8 = _top1(sess_fp32, x_val, y_val), _top1(sess_int8, x_val, y_val)

    # latency at the digits resolution and at 224 (same weights, exported at 224, calibrated on upscaled digits)
    cands = {}
    lat_inputs = {s: x_val[:1].numpy()}
    big = 224
    fp32_224 = export_model(model, tmp / "fp32_224.onnx", "onnx", img_size=big, **norm)
    calib_224 = [b.numpy() for b in load_digits_split("train", img_size=big)[0][:64].split(16)]
    int8_224 = quantize_onnx_bytes(fp32_224.path.read_bytes(), calib_224, method=args.calib_method)
    lat_inputs[big] = load_digits_split("val", img_size=big)[0][:1].numpy()
    sessions = {f"fp32 @{s}": sess_fp32, f"int8 @{s}": sess_int8,
                f"fp32 @{big}": make_session(fp32_224.path, threads=args.threads, spinning=False),
                f"int8 @{big}": make_session(int8_224, threads=args.threads, spinning=False)}
    for name, sess in sessions.items():
        feed = {sess.get_inputs()[0].name: lat_inputs[int(name.split("@")[1])]}
        cands[name] = lambda sess=sess, feed=feed: sess.run(None, feed)
    lat = interleaved_latency(cands, rounds=args.rounds, iters_per_round=args.iters, warmup=5, threads=args.threads)

    out = {
        "environment": environment_info(), "settings": vars(args), "checkpoint": str(ckpt), "train": train_summary,
        "held_out_images": int(len(y_val)), "top1_pytorch_fused": torch_top1, "top1_onnx_fp32": top1_fp32,
        "top1_onnx_int8": top1_int8, "top1_drop_points": top1_fp32 - top1_int8,
        "int8_file_bytes": len(int8_bytes), "fp32_file_bytes": fp32.path.stat().st_size,
        "latency": {k: v.to_dict() for k, v in lat.items()},
        "speedup_int8": {f"@{r}": lat[f"fp32 @{r}"].median_ms / lat[f"int8 @{r}"].median_ms for r in (s, big)},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, default=str))
    print(f"{args.model} on digits ({len(y_val)} held-out images), checkpoint {ckpt}")
    print(f"top-1: PyTorch fused {torch_top1:.2f}%  ONNX FP32 {top1_fp32:.2f}%  ONNX INT8 {top1_int8:.2f}%  "
          f"(INT8 - FP32 = {top1_int8 - top1_fp32:+.2f} points; {args.calib_images} calibration images, "
          f"{args.calib_method})")
    print("| model | median ms | p90 ms | speed-up vs FP32 |")
    print("|---|---:|---:|---:|")
    for name, r in lat.items():
        ref = lat[name.replace("int8", "fp32")].median_ms
        print(f"| {name} | {r.median_ms:.2f} | {r.p90_ms:.2f} | {ref / r.median_ms:.2f}x |")
    return out


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
