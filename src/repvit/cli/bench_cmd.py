"""``repvit bench``: latency / throughput / efficiency of RepViT and timm baselines across backends, in one run."""

from __future__ import annotations

import argparse


def _csv(s: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in s.split(",") if x.strip())


def register(sub: argparse._SubParsersAction) -> None:
    from repvit.bench.backends import BACKENDS
    from repvit.bench.baselines import DEFAULT_MODELS
    from repvit.bench.runner import DEFAULT_BACKENDS

    p = sub.add_parser("bench", help="measure latency and throughput of models x backends (markdown, JSON, CSV, PNG)",
                       description="All candidates are timed interleaved in one run with pinned threads; the "
                                   "compute bound (2 x MACs / the better sgemm FLOP/s of MKL and OpenBLAS) is measured "
                                   "in the same run.")
    p.add_argument("--models", type=_csv, default=DEFAULT_MODELS,
                   help="comma-separated: repvit names (fused; add ':unfused'), timm names, 'timm:repvit_m0_9' "
                        f"(default: {','.join(DEFAULT_MODELS)})")
    p.add_argument("--backends", type=_csv, default=DEFAULT_BACKENDS,
                   help=f"comma-separated from {','.join(BACKENDS)} (default: {','.join(DEFAULT_BACKENDS)})")
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--threads", type=int, default=2, help="intra-op threads, pinned (default 2)")
    p.add_argument("--rounds", type=int, default=8, help="interleaved rounds for batch-1 latency")
    p.add_argument("--iters", type=int, default=5, help="timed calls per candidate per round")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--throughput-batch", type=int, default=32, help="batch for throughput; 0 skips it")
    p.add_argument("--throughput-rounds", type=int, default=3)
    p.add_argument("--out-dir", default="bench_results", help="where bench.{md,json,csv} and bench_pareto.png go")
    p.add_argument("--accuracy-checkpoint", default=None,
                   help="a checkpoint trained on the digits set (e.g. make demo's runs/demo/train/best.pt): check "
                        "every backend's held-out top-1 and agreement with FP32 in the same run")
    p.add_argument("--int8-mode", default="auto", choices=("auto", "safe", "full"),
                   help="INT8 weights for ONNX Runtime and OpenVINO: auto (7-bit on x86 CPUs without VNNI, where 8-bit "
                        "products saturate), safe (7-bit everywhere) or full (8-bit)")
    p.add_argument("--sgemm-n", type=int, default=1024, help="matrix size of the MKL and OpenBLAS sgemm probes")
    p.add_argument("--no-plot", action="store_true", help="skip the Pareto PNG (no matplotlib needed)")
    from ._pretrained import add_pretrained_arg

    add_pretrained_arg(p, "load published weights into the repvit models (alone: each model's default; NAME: the "
                          "models of its architecture)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from repvit.bench.report import to_markdown, write_outputs
    from repvit.bench.runner import BenchSettings, run_benchmark

    settings = BenchSettings(models=tuple(args.models), backends=tuple(args.backends), img_size=args.img_size,
                             threads=args.threads, rounds=args.rounds, iters=args.iters, warmup=args.warmup,
                             throughput_batch=args.throughput_batch, throughput_rounds=args.throughput_rounds,
                             sgemm_n=args.sgemm_n, accuracy_checkpoint=args.accuracy_checkpoint,
                             int8_mode=args.int8_mode, pretrained=args.pretrained)
    result = run_benchmark(settings, progress=lambda s: print(f"  {s}", flush=True))
    print()
    print(to_markdown(result))
    for r in (result.get("accuracy") or {}).get("rows", []):
        if r.get("warning"):
            print(r["warning"])
    paths = write_outputs(result, args.out_dir, plot=not args.no_plot)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
