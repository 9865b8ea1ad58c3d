"""``repvit demo``: the whole pipeline on the built-in digits set.

Train a small RepViT on scikit-learn's digits, evaluate it on the held-out split, fuse it, check the fused model
against the trained one, export it to ONNX (FP32 and INT8) with parity checks, measure batch-1 latency of each form
(interleaved, 2 threads) and print a summary of accuracy, parameters, MACs and latency.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train on the built-in digits set, evaluate, fuse, export, measure")
    p.add_argument("--output-dir", default="runs/demo", help="where checkpoints, exports and the summary go")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the digits recipe's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="threads for the latency measurement")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--int8-mode", default="auto", choices=("auto", "safe", "full"),
                   help="INT8 weights: auto (7-bit on x86 CPUs without VNNI), safe (7-bit) or full (8-bit)")
    p.set_defaults(func=run)


def _step(msg: str) -> float:
    print(f"\n== {msg}", flush=True)
    return time.perf_counter()


def run(args: argparse.Namespace) -> int:
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    summary: dict = {"output_dir": str(out)}
    cfg, best = _train(args, out, summary)
    _evaluate(best, summary)
    model, fused = _fuse(cfg, best, summary)
    calib = _export(args, model, cfg.img_size, best, out, summary)
    lat = _latency(args, model, fused, cfg, calib, out, summary)
    summary["wall_s"] = time.perf_counter() - t0
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    _print_summary(summary, lat, cfg.img_size, out)
    return 0


def _train(args: argparse.Namespace, out: Path, summary: dict):
    """Step 1: train on the digits set (resuming a run already in ``out``); the config and the best checkpoint."""
    from repvit.classification import TrainConfig, train

    _step("1/5 train a RepViT on the built-in digits set (scikit-learn, fixed held-out split)")
    cfg = TrainConfig(data="digits", output_dir=str(out / "train"), seed=args.seed, progress=not args.no_progress,
                      resume="auto")
    if args.epochs:
        cfg = cfg.replace(epochs=args.epochs)
    res = train(cfg)
    best = res["best_checkpoint"]
    print(f"trained {cfg.model} for {res['epochs']} epochs in {res['wall_time_s']:.0f} s -> {best}")
    summary.update(model=cfg.model, epochs=res["epochs"], train_s=res["wall_time_s"])
    return cfg, best


def _evaluate(best: str, summary: dict) -> None:
    """Step 2: top-1 of the checkpoint on the held-out split, unfused and fused."""
    from repvit.classification import evaluate_checkpoint

    _step("2/5 evaluate on the held-out split (unfused and fused)")
    ev = evaluate_checkpoint(best, "digits")
    ev_fused = evaluate_checkpoint(best, "digits", fused=True)
    print(f"top-1 {ev['top1']:.2f}%  (fused {ev_fused['top1']:.2f}%)  on {ev['images']} held-out images")
    summary.update(top1=ev["top1"], top1_fused=ev_fused["top1"], images=ev["images"])


def _fuse(cfg, best: str, summary: dict):
    """Step 3: the trained model and its fused form, their sizes and how far their logits differ."""
    import torch

    import repvit
    from repvit.bench.complexity import count_macs, count_params
    from repvit.models import is_fused

    _step("3/5 fuse (re-parameterize) and check")
    model = repvit.create_model(checkpoint=best).eval()
    fused = repvit.fuse_model(model)
    img = cfg.img_size
    x = torch.randn(8, cfg.in_chans, img, img)
    with torch.no_grad():
        diff = ((fused(x) - model(x)).abs().max() / model(x).abs().max()).item()
    summary.update(params=count_params(model), fused_params=count_params(fused),
                   fused_macs=count_macs(fused, img), fused_macs_224=count_macs(fused, 224),
                   fuse_rel_diff=diff, no_bn_left=is_fused(fused))
    print(f"params {summary['params'] / 1e6:.3f} M -> fused {summary['fused_params'] / 1e6:.3f} M; "
          f"fused MACs {summary['fused_macs'] / 1e6:.1f} M at {img}px ({summary['fused_macs_224'] / 1e9:.3f} G at "
          f"224px); max relative logit difference {diff:.1e}; BatchNorm left: {not is_fused(fused)}")
    return model, fused


def _export(args: argparse.Namespace, model, img: int, best: str, out: Path, summary: dict):
    """Step 4: FP32 and INT8 ONNX files with parity checks; the calibration images, or None when the ONNX extra is
    missing (the step is skipped)."""
    import repvit

    _step("4/5 export to ONNX (FP32 and INT8) with parity checks")
    try:
        from repvit.deploy.calib import load_calibration
        from repvit.deploy.export import export_model

        ckpt = repvit.models.read_checkpoint(best)
        names = ckpt.meta.get("class_names")
        r32 = export_model(model, out / "model.onnx", "onnx", img_size=img, class_names=names)
        calib = load_calibration("digits", (img, img), None, None, limit=256, batch_size=32)
        r8 = export_model(model, out / "model_int8.onnx", "onnx", img_size=img, class_names=names, int8=True,
                          calib=calib, int8_mode=args.int8_mode)
        summary["int8_mode"] = {k: r8.metadata[k] for k in ("int8_mode", "int8_mode_requested", "int8_isa_at_export",
                                                            "int8_plan")}
        summary.update(onnx=str(r32.path), onnx_int8=str(r8.path), onnx_parity=r32.parity.to_dict())
        print(f"wrote {r32.path} (max relative difference to fused PyTorch {r32.parity.max_rel_diff:.1e}) "
              f"and {r8.path}")
        return calib
    except ImportError as e:
        print(f"skipped: {e}")
        return None


def _latency(args: argparse.Namespace, model, fused, cfg, calib, out: Path, summary: dict):
    """Step 5: batch-1 latency of every form, interleaved (and the ONNX files' top-1 when they were written)."""
    import torch

    from repvit.bench.backends import prepare_backend
    from repvit.bench.latency import interleaved_latency

    _step(f"5/5 latency, batch 1, {args.threads} threads, interleaved")
    img = cfg.img_size
    ex = torch.randn(1, cfg.in_chans, img, img)
    cands = {"pytorch unfused": prepare_backend(model, "eager", ex, args.threads),
             "pytorch fused": prepare_backend(fused, "eager", ex, args.threads)}
    if calib is not None:
        cands["onnxruntime fp32"] = prepare_backend(fused, "onnxruntime", ex, args.threads)
        cands["onnxruntime int8"] = prepare_backend(fused, "onnxruntime-int8", ex, args.threads,
                                                    calib=calib, int8_mode=args.int8_mode)
        summary["top1_int8"] = _onnx_top1(out / "model_int8.onnx", img)
        summary["top1_onnx_fp32"] = _onnx_top1(out / "model.onnx", img)
        from repvit.bench.accuracy import lowp_warning

        warning = lowp_warning("onnxruntime-int8", "int8", summary["top1_int8"] - summary["top1_onnx_fp32"])
        summary["warnings"] = [warning] if warning else []
    lat = interleaved_latency(cands, rounds=10, iters_per_round=10, threads=args.threads)
    summary["latency_ms"] = {k: round(v.median_ms, 4) for k, v in lat.items()}
    return lat


def _print_summary(summary: dict, lat: dict, img: int, out: Path) -> None:
    base = lat["pytorch fused"].median_ms
    print("\n== summary")
    print(f"model              {summary['model']} ({summary['epochs']} epochs, {summary['train_s']:.0f} s)")
    acc = f"top-1 {summary['top1']:.2f}% (fused {summary['top1_fused']:.2f}%"
    if "top1_int8" in summary:
        acc += f", ONNX fp32 {summary['top1_onnx_fp32']:.2f}%, INT8 {summary['top1_int8']:.2f}%"
    print(f"accuracy           {acc}) on {summary['images']} held-out digits")
    if "top1_int8" in summary:
        m = summary["int8_mode"]
        print(f"INT8 mode          {m['int8_mode']} (asked {m['int8_mode_requested']}, CPU class "
              f"{m['int8_isa_at_export']}); plan {m['int8_plan']}")
        for warning in summary["warnings"]:
            print(warning)
    print(f"params             {summary['params'] / 1e6:.3f} M train-time, {summary['fused_params'] / 1e6:.3f} M fused")
    print(f"MACs (fused)       {summary['fused_macs'] / 1e6:.1f} M at {img}px, {summary['fused_macs_224'] / 1e9:.3f} G "
          "at 224px")
    print("latency (batch 1)  " + ", ".join(f"{k} {v.median_ms:.3f} ms ({_vs_fused(k, v.median_ms, base)})"
                                             for k, v in lat.items()))
    print(f"total              {summary['wall_s']:.0f} s; everything is in {out}/ (summary.json)")


def _vs_fused(name: str, ms: float, base_ms: float) -> str:
    """How a latency compares with fused PyTorch's, in words that read the right way round."""
    if name == "pytorch fused":
        return "the reference"
    ratio = base_ms / ms
    if ratio >= 1:
        return f"{ratio:.1f}× faster than fused PyTorch"
    return f"{1 / ratio:.1f}× slower than fused PyTorch"


def _onnx_top1(path: Path, img: int) -> float:
    """Top-1 of an exported ONNX model on the held-out digits, run by ONNX Runtime."""
    import numpy as np
    import onnxruntime as ort

    from repvit.data.digits import load_digits_split

    x, y = load_digits_split("val", img_size=img)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    logits = np.concatenate([sess.run(None, {name: xb.numpy()})[0] for xb in x.split(64)])
    return float((logits.argmax(1) == y.numpy()).mean() * 100)
