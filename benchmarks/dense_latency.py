"""Dense-prediction CPU latency at 512x512, batch 1: our fused RepViT backbone against timm's fused RepViT backbone
(``features_only=True`` + ``timm.utils.reparameterize_model``, the same weights), and the full Semantic FPN (FPN 256,
head 128, fused) on each of the two backbones, all interleaved round by round in one run.

The paper's table reports backbone latency at 512x512 (iPhone 12: M1.1 4.9 ms, M1.5 6.4 ms, M2.3 9.9 ms); this is
the CPU counterpart. Writes JSON to benchmarks/results/ and prints a table with the ratios.

    python benchmarks/dense_latency.py [--model repvit_m1_1] [--threads 2] [--rounds 10] [--iters 5]
"""

from __future__ import annotations

import argparse
import json
from collections import OrderedDict
from pathlib import Path

import timm
import torch
import torch.nn as nn
from timm.utils import reparameterize_model

from repvit.bench.latency import environment_info, interleaved_latency
from repvit.dense import DenseBackbone, RepViTFPN
from repvit.dense.segmentation.model import SemanticFPN, SemanticFPNHead


class TimmTaps(nn.Module):
    """timm's features_only RepViT as a dense backbone: its stage outputs as an OrderedDict "0".."3"."""

    def __init__(self, net: nn.Module, out_channels: list[int], strides: list[int]):
        super().__init__()
        self.net, self.out_channels_list, self.strides = net, out_channels, strides

    def forward(self, x):
        return OrderedDict((str(i), f) for i, f in enumerate(self.net(x)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="repvit_m1_1", help="a RepViT that timm has (m0_9 ... m2_3)")
    ap.add_argument("--img-size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--iters", type=int, default=5, help="iterations per candidate per round")
    ap.add_argument("--num-classes", type=int, default=150)
    ap.add_argument("--out", default=None, help="default benchmarks/results/dense_latency_<model>.json")
    args = ap.parse_args()

    torch.manual_seed(0)
    ref = timm.create_model(args.model, pretrained=False, features_only=True).eval()
    sd = {k.replace("stages_", "stages."): v for k, v in ref.state_dict().items()}
    ours = DenseBackbone(args.model, taps="stage").eval()
    ours.load_state_dict(sd)
    ours_fused = ours.fuse()
    timm_fused = reparameterize_model(ref)
    timm_bb = TimmTaps(timm_fused, ours.out_channels_list, ours.strides).eval()
    x = torch.randn(1, 3, args.img_size, args.img_size)
    with torch.no_grad():
        diff = max((a - b).abs().max().item() for a, b in zip(ours_fused(x).values(), timm_bb(x).values()))

    seg = SemanticFPN(RepViTFPN(ours, 256), SemanticFPNHead(256, 128, args.num_classes, ours.strides)).eval()
    seg_fused = seg.fuse()
    seg_timm = seg.fuse()
    seg_timm.neck.backbone = timm_bb  # the same FPN and head on timm's fused backbone
    cands = {
        "backbone ours fused": lambda: ours_fused(x),
        "backbone timm fused": lambda: timm_bb(x),
        "semfpn ours fused": lambda: seg_fused(x),
        "semfpn on timm fused": lambda: seg_timm(x),
    }
    res = interleaved_latency(cands, rounds=args.rounds, iters_per_round=args.iters, threads=args.threads)
    ratio_bb = res["backbone ours fused"].median_ms / res["backbone timm fused"].median_ms
    ratio_full = res["semfpn ours fused"].median_ms / res["semfpn on timm fused"].median_ms
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    out = {
        "benchmark": "dense_latency",
        "model": args.model,
        "img_size": args.img_size,
        "batch": 1,
        "threads": args.threads,
        "rounds": args.rounds,
        "iters_per_round": args.iters,
        "semfpn": {"fpn_channels": 256, "head_channels": 128, "num_classes": args.num_classes},
        "max_abs_feature_diff_vs_timm": diff,
        "results": {k: v.to_dict() for k, v in res.items()},
        "ratio_backbone_ours_vs_timm": ratio_bb,
        "ratio_semfpn_ours_vs_timm_backbone": ratio_full,
        "goal": "backbone ratio <= 1.02",
        "loadavg_after": load,
        "environment": environment_info(),
    }
    path = Path(args.out or f"benchmarks/results/dense_latency_{args.model}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"{args.model} @ {args.img_size}x{args.img_size}, batch 1, {args.threads} threads, "
          f"{args.rounds}x{args.iters} interleaved (load average after: {' '.join(load)})")
    print(f"| {'candidate':<22} | {'median ms':>9} | {'p90 ms':>8} |")
    print(f"|{'-' * 24}|{'-' * 11}|{'-' * 10}|")
    for k, v in res.items():
        print(f"| {k:<22} | {v.median_ms:>9.2f} | {v.p90_ms:>8.2f} |")
    print(f"backbone ours fused / timm fused: {ratio_bb:.3f}  (goal <= 1.02; max |feature diff| {diff:.2e})")
    print(f"Semantic FPN on ours / on timm's backbone: {ratio_full:.3f}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
