"""INT8 plans against the fastest FP32 on this CPU: RepViT at batch 1 (``--batch N``: N images a call), every
candidate timed interleaved.

FP32: ONNX Runtime (the product's session, :func:`repvit.deploy.onnx_export.make_session`), OpenVINO f32 and
ExecuTorch/XNNPACK when executorch is installed (the fastest FP32 on AMD Zen 3 at 2 threads; ``--no-executorch``
leaves it out, and the table then says so). INT8: ONNX Runtime with this CPU's plan
(:func:`repvit.deploy.int8_mode.int8_plan`: GELU fused, Conv/Gemm/Add in INT8), ONNX Runtime with every
Conv/Gemm/Add/Mul quantized and GELU left as exported (no plan), OpenVINO with NNCF's transformer scheme, and with
``--executorch-int8`` ExecuTorch INT8. The JSON records the CPU model, family/model number and ISA flags; the table
gives each candidate's speed-up over the fastest FP32 of the same run.

    python benchmarks/int8_plans.py                     # repvit_m0_9, 224 px, 2 threads
    python benchmarks/int8_plans.py --executorch-int8   # ExecuTorch INT8 too (minutes to quantize)
    python benchmarks/int8_plans.py --batch 8           # a server's batches of 8
    python benchmarks/int8_plans.py --quick             # smallest setting (smoke test)
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from dataclasses import replace
from pathlib import Path

import torch


def _ort_unplanned(model, x, threads, calib, choice):
    """ONNX Runtime INT8 with every Conv/Gemm/Add/Mul quantized and GELU unfused."""
    from repvit.deploy.int8_mode import Int8Plan
    from repvit.deploy.onnx_export import export_onnx_bytes, make_session
    from repvit.deploy.onnx_passes import apply_passes
    from repvit.deploy.quantize import quantize_onnx_bytes

    plan = Int8Plan("all-ops", ("Conv", "Gemm", "Add", "Mul"), False, "onnxruntime-int8", "")
    data = quantize_onnx_bytes(apply_passes(export_onnx_bytes(model, x, dynamic_batch=True)), calib,
                               int8_mode=replace(choice, plan=plan))
    sess = make_session(data, threads=threads, spinning=False)
    feed = {sess.get_inputs()[0].name: x.numpy()}
    return lambda: sess.run(None, feed)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="repvit_m0_9")
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=1, help="images per call (1: latency; more: a server's batches)")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--no-executorch", action="store_true",
                   help="leave ExecuTorch FP32 out (about a minute to lower); the fastest FP32 may then be missed")
    p.add_argument("--executorch-int8", action="store_true", help="add ExecuTorch INT8 (slow to quantize)")
    p.add_argument("--quick", action="store_true", help="smallest setting: repvit_m0_6 at 64 px, 2 rounds")
    p.add_argument("--out", default="benchmarks/results/int8_plans.json")
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.img_size, args.rounds, args.iters = "repvit_m0_6", 64, 2, 2
    warnings.filterwarnings("ignore")

    import repvit
    from repvit.bench.backends import available_backends, prepare_backend
    from repvit.bench.latency import environment_info, interleaved_latency
    from repvit.deploy.int8_mode import resolve_int8_mode

    torch.manual_seed(0)
    model = repvit.fuse_model(repvit.create_model(args.model)).eval()
    s = args.img_size
    x = torch.randn(args.batch, 3, s, s)
    calib = torch.randn(8, 3, s, s)
    choice = resolve_int8_mode("auto")
    executorch = not args.no_executorch and "executorch" in available_backends()
    backends = ["onnxruntime", "openvino"] + (["executorch"] if executorch else [])
    backends += ["onnxruntime-int8", "openvino-int8"] + (["executorch-int8"] if args.executorch_int8 else [])
    names = {"onnxruntime-int8": f"onnxruntime-int8 (plan {choice.plan.name})"}
    cands = {names.get(b, b): prepare_backend(model, b, x, threads=args.threads, calib=calib, int8_mode=choice)
             for b in backends}
    cands["onnxruntime-int8 (all ops, GELU unfused)"] = _ort_unplanned(model, x, args.threads, [calib.numpy()],
                                                                        choice)
    lat = interleaved_latency(cands, rounds=args.rounds, iters_per_round=args.iters, warmup=3, threads=args.threads)
    fp32 = {k: v for k, v in lat.items() if "int8" not in k}
    int8 = {k: v for k, v in lat.items() if "int8" in k}
    best32 = min(fp32, key=lambda k: fp32[k].median_ms)
    best8 = min(int8, key=lambda k: int8[k].median_ms)
    env = environment_info()
    out = {"environment": env, "settings": vars(args), "int8": choice.to_dict(),
           "latency": {k: v.to_dict() for k, v in lat.items()}, "executorch_fp32_run": executorch,
           "fastest_fp32": best32, "fastest_int8": best8,
           "int8_speedup_vs_fastest_fp32": fp32[best32].median_ms / int8[best8].median_ms}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, default=str))
    flags = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in (env.get("cpu_flags") or {}).items())
    print(f"{args.model} @{s}, batch {args.batch}, {args.threads} threads; CPU {env.get('cpu_model')} (family "
          f"{env.get('cpu_family')}, model {env.get('cpu_model_number')}); flags {flags}; ISA class "
          f"{choice.isa}, plan {choice.plan.name}, weights {choice.mode}; load average {os.getloadavg()[0]:.1f}")
    print("| candidate | median ms | p90 ms | vs fastest FP32 |")
    print("|---|---:|---:|---:|")
    for k, r in lat.items():
        print(f"| {k} | {r.median_ms:.2f} | {r.p90_ms:.2f} | {fp32[best32].median_ms / r.median_ms:.2f}x |")
    print(f"fastest INT8 ({best8}) vs fastest FP32 ({best32}): {out['int8_speedup_vs_fastest_fp32']:.2f}x")
    if not executorch:
        print("ExecuTorch FP32 was not run (--no-executorch or not installed): the fastest FP32 may be missing")
    return out


if __name__ == "__main__":
    main()
