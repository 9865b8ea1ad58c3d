"""Dense-prediction CPU latency at 512x512, batch 1: our fused RepViT backbone against timm's fused RepViT backbone
(``features_only=True`` + ``timm.utils.reparameterize_model``, the same weights), and the full Semantic FPN (FPN 256,
head 128, fused) on each of the two backbones, all interleaved round by round in one run. With ONNX Runtime installed
(``--no-onnx`` to skip) our backbone and Semantic FPN also run in ONNX Runtime as users get them (the graph
``repvit segment export`` writes, ``repvit.dense.segmentation.export.segmenter_onnx_bytes``; the backbone with one
graph output per stage, exported with the same passes) in ``repvit.deploy.onnx_export.make_session``, with
``ORT / eager`` per model.

The paper's table reports backbone latency at 512x512 (iPhone 12: M1.1 4.9 ms, M1.5 6.4 ms, M2.3 9.9 ms); this is
the CPU counterpart. Writes JSON to benchmarks/results/ and prints a table with the ratios.

    python benchmarks/dense_latency.py [--model repvit_m1_1] [--threads 2] [--rounds 10] [--iters 5]
"""

from __future__ import annotations

import argparse
import importlib.util
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


def _onnx_candidates(backbone: nn.Module, seg: nn.Module, x: torch.Tensor, threads: int) -> dict:
    """Our fused backbone and Semantic FPN in ONNX Runtime sessions, as callables."""
    from repvit.dense.segmentation.export import segmenter_onnx_bytes
    from repvit.deploy.onnx_export import export_onnx_bytes, make_session
    from repvit.deploy.onnx_passes import apply_passes

    graphs = {
        "backbone ours, onnxruntime": apply_passes(export_onnx_bytes(backbone, x, dynamic_batch=False)),
        "semfpn ours, onnxruntime": segmenter_onnx_bytes(seg, example_size=tuple(x.shape[-2:])),
    }
    out = {}
    for name, data in graphs.items():
        sess = make_session(data, threads=threads)
        feed = {sess.get_inputs()[0].name: x.numpy()}
        out[name] = lambda sess=sess, feed=feed: sess.run(None, feed)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="repvit_m1_1", help="a RepViT that timm has (m0_9 ... m2_3)")
    ap.add_argument("--img-size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--iters", type=int, default=5, help="iterations per candidate per round")
    ap.add_argument("--num-classes", type=int, default=150)
    ap.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime candidates")
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
    if not args.no_onnx and importlib.util.find_spec("onnxruntime") is None:
        print("onnxruntime is not installed: the ONNX Runtime candidates are skipped")
        args.no_onnx = True
    if not args.no_onnx:
        cands |= _onnx_candidates(ours_fused, seg_fused, x, args.threads)
    res = interleaved_latency(cands, rounds=args.rounds, iters_per_round=args.iters, threads=args.threads,
                              settle_s=0.0 if args.no_onnx else 0.2)
    ort_ratios = {name: res[f"{name}, onnxruntime"].median_ms / res[f"{name} fused"].median_ms
                  for name in ("backbone ours", "semfpn ours") if f"{name}, onnxruntime" in res}
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
        "ratio_onnxruntime_vs_eager": ort_ratios,
        "goal": "backbone ratio <= 1.02; ONNX Runtime / eager <= 1",
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
    for name, r in ort_ratios.items():
        print(f"{name}: ONNX Runtime / eager {r:.3f} (goal <= 1)")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
