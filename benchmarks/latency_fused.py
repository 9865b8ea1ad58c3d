"""Batch-1 CPU latency of our fused RepViT against timm's fused RepViT (same weights), interleaved in one run.

Also reports the speed-up of fused over unfused. Writes JSON and prints a table.

    python benchmarks/latency_fused.py [--model repvit_m0_9] [--threads 2] [--rounds 30]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import timm
import torch

import repvit
from repvit.bench.latency import environment_info, interleaved_latency


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="repvit_m0_9")
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--iters", type=int, default=10, help="iterations per candidate per round")
    ap.add_argument("--out", default="benchmarks/results/latency_fused.json")
    args = ap.parse_args()

    torch.manual_seed(0)
    ref = timm.create_model(args.model, pretrained=False).eval()
    ours = repvit.create_model(args.model, distillation=True).eval()
    ours.load_state_dict(ref.state_dict())
    ours_fused = repvit.fuse_model(ours)
    timm_fused = timm.create_model(args.model, pretrained=False).eval()
    timm_fused.load_state_dict(ref.state_dict())
    timm_fused.fuse()
    x = torch.randn(1, 3, args.img_size, args.img_size)
    with torch.no_grad():
        diff = (ours_fused(x) - timm_fused(x)).abs().max().item()

    cands = {
        "repvit fused": lambda: ours_fused(x),
        "timm fused": lambda: timm_fused(x),
        "repvit unfused": lambda: ours(x),
    }
    res = interleaved_latency(cands, rounds=args.rounds, iters_per_round=args.iters, threads=args.threads)
    ratio = res["repvit fused"].median_ms / res["timm fused"].median_ms
    speedup = res["repvit unfused"].median_ms / res["repvit fused"].median_ms
    out = {
        "benchmark": "latency_fused",
        "model": args.model,
        "img_size": args.img_size,
        "batch": 1,
        "threads": args.threads,
        "rounds": args.rounds,
        "iters_per_round": args.iters,
        "max_abs_logit_diff_vs_timm": diff,
        "results": {k: v.to_dict() for k, v in res.items()},
        "ratio_ours_fused_vs_timm_fused": ratio,
        "speedup_fused_vs_unfused": speedup,
        "goal": "ratio <= 1.02",
        "environment": environment_info(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"{args.model} @ {args.img_size}, batch 1, {args.threads} threads, {args.rounds}x{args.iters} interleaved")
    print(f"| {'candidate':<16} | {'median ms':>9} | {'p90 ms':>8} |")
    print(f"|{'-' * 18}|{'-' * 11}|{'-' * 10}|")
    for k, v in res.items():
        print(f"| {k:<16} | {v.median_ms:>9.3f} | {v.p90_ms:>8.3f} |")
    print(f"ours fused / timm fused: {ratio:.3f}  (goal <= 1.02)")
    print(f"fused speed-up over unfused: {speedup:.2f}x   (max |logit diff| vs timm: {diff:.2e})")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
