"""Detection CPU latency, batch 1: our fused RepViT backbone at 512x512 against timm's fused RepViT backbone
(``features_only=True`` + ``timm.utils.reparameterize_model``, the same weights), and the whole torchvision detector
(Mask R-CNN by default, paper heads: FPN 256, 1024 box head, 4x256 mask head) end to end at a fixed size on each of
the two backbones, all interleaved round by round in one run.

End to end includes the detector's own normalization, RPN, NMS, RoI heads and mask pasting. With random weights
every class scores about 1/81 on every proposal, so the score threshold decides how much work NMS does: at 0 every
(proposal, class) pair reaches NMS (80,000 for 1000 proposals). The two-stage detectors' threshold is therefore set
from the benchmark image so that ``--candidates`` pairs (default 1000; 0: threshold 0, every pair) pass it, the same
for every candidate, and every run returns the same detections (``--detections``, default 100: the COCO setting).

With ONNX Runtime installed (``--no-onnx`` to skip) our fused backbone (RepViT and FPN, the detector's
``backbone``) and the whole detector (the graph ``repvit detect export`` writes,
``repvit.dense.detection.export.export_detector_onnx``) also run in ONNX Runtime sessions
(``repvit.deploy.onnx_export.make_session``), with ``ORT / eager`` for each.

    python benchmarks/detect_latency.py [--model repvit_m1_1] [--detector maskrcnn] [--threads 2] [--rounds 10]
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
from repvit.dense.detection import DetectorSpec, build_detector, fuse_detector


class TimmTaps(nn.Module):
    """timm's features_only RepViT as a dense backbone: its stage outputs as an OrderedDict with our keys."""

    def __init__(self, net: nn.Module, keys: list[str], out_channels: list[int], strides: list[int]):
        super().__init__()
        self.net, self.keys, self.out_channels_list, self.strides = net, keys, out_channels, strides

    def forward(self, x):
        return OrderedDict(zip(self.keys, self.net(x)))


def _onnx_candidates(det: nn.Module, x: torch.Tensor, img: torch.Tensor, name: str, threads: int) -> dict:
    """The fused detector's backbone and the whole detector in ONNX Runtime sessions, as callables."""
    import tempfile

    from repvit.dense.detection.export import export_detector_onnx
    from repvit.deploy.onnx_export import export_onnx_bytes, make_session
    from repvit.deploy.onnx_passes import apply_passes

    with tempfile.TemporaryDirectory() as tmp:
        path = export_detector_onnx(det, Path(tmp) / "det.onnx", height=img.shape[1], width=img.shape[2])
        whole = path.read_bytes()
    graphs = {
        "backbone+FPN ours, onnxruntime": (apply_passes(export_onnx_bytes(det.backbone, x, dynamic_batch=False)), x),
        f"{name} ours, onnxruntime": (whole, img),
    }
    out = {}
    for key, (data, inp) in graphs.items():
        sess = make_session(data, threads=threads)
        feed = {sess.get_inputs()[0].name: inp.numpy()}
        out[key] = lambda sess=sess, feed=feed: sess.run(None, feed)
    return out


@torch.no_grad()
def _threshold_for(det: nn.Module, img: torch.Tensor, n: int) -> float:
    """The box score threshold that ``n`` (proposal, class) pairs of ``img`` pass: the ``n``-th largest score of an
    eager run without threshold, NMS or masks."""
    heads = det.roi_heads
    saved = heads.score_thresh, heads.nms_thresh, heads.detections_per_img, heads.mask_roi_pool
    heads.score_thresh, heads.nms_thresh, heads.detections_per_img, heads.mask_roi_pool = 0.0, 1.0, 10**7, None
    try:
        scores = det([img])[0]["scores"]
    finally:
        heads.score_thresh, heads.nms_thresh, heads.detections_per_img, heads.mask_roi_pool = saved
    return float(scores.sort(descending=True).values[min(n, scores.numel()) - 1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="repvit_m1_1", help="a RepViT that timm has (m0_9 ... m2_3)")
    ap.add_argument("--detector", default="maskrcnn", choices=["maskrcnn", "fasterrcnn", "retinanet"])
    ap.add_argument("--img-size", type=int, default=512, help="backbone input and the detector's fixed size")
    ap.add_argument("--detections", type=int, default=100)
    ap.add_argument("--candidates", type=int, default=1000,
                    help="(proposal, class) pairs above the score threshold before NMS (two-stage detectors; 0: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--iters", type=int, default=3, help="iterations per candidate per round")
    ap.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime candidates")
    ap.add_argument("--out", default=None, help="default benchmarks/results/detect_latency_<model>_<detector>.json")
    args = ap.parse_args()

    torch.manual_seed(0)
    s = args.img_size
    det = build_detector(DetectorSpec(model=args.model, detector=args.detector, min_size=s, max_size=s,
                                      box_score_thresh=0.0, detections_per_img=args.detections), 81).eval()
    if args.detector == "retinanet":
        det.score_thresh = 0.0
    body = det.backbone.backbone  # our DenseBackbone
    idx = body.out_indices
    ref = timm.create_model(args.model, pretrained=False, features_only=True, out_indices=tuple(idx)).eval()
    sd = {k.replace("stages_", "stages."): v for k, v in ref.state_dict().items()}
    body.load_state_dict({k: v for k, v in sd.items() if k in body.state_dict()})
    img = torch.rand(3, s, s, generator=torch.Generator().manual_seed(0))
    if args.detector != "retinanet" and args.candidates > 0:
        det.roi_heads.score_thresh = _threshold_for(det, img, args.candidates)
    det_fused = fuse_detector(det)
    ours_fused = det_fused.backbone.backbone
    timm_bb = TimmTaps(reparameterize_model(ref), [str(i) for i in idx], body.out_channels_list, body.strides).eval()
    det_timm = fuse_detector(det)
    det_timm.backbone.backbone = timm_bb  # the same FPN and heads on timm's fused backbone

    x = torch.randn(1, 3, s, s)
    with torch.no_grad():
        diff = max((a - b).abs().max().item() for a, b in zip(ours_fused(x).values(), timm_bb(x).values()))
        n_det = det_fused([img])[0]["boxes"].shape[0]
    cands = {
        "backbone ours fused": lambda: ours_fused(x),
        "backbone timm fused": lambda: timm_bb(x),
        f"{args.detector} ours fused": lambda: det_fused([img]),
        f"{args.detector} on timm fused": lambda: det_timm([img]),
    }
    ours_fpn = det_fused.backbone
    if not args.no_onnx and importlib.util.find_spec("onnxruntime") is None:
        print("onnxruntime is not installed: the ONNX Runtime candidates are skipped")
        args.no_onnx = True
    if not args.no_onnx:
        cands |= _onnx_candidates(det_fused, x, img, args.detector, args.threads)
        cands["backbone+FPN ours fused"] = lambda: ours_fpn(x)
    res = interleaved_latency(cands, rounds=args.rounds, iters_per_round=args.iters, threads=args.threads,
                              settle_s=0.0 if args.no_onnx else 0.2)
    pairs = {"backbone+FPN ours": "backbone+FPN ours fused", f"{args.detector} ours": f"{args.detector} ours fused"}
    ort_ratios = {name: res[f"{name}, onnxruntime"].median_ms / res[eager].median_ms
                  for name, eager in pairs.items() if f"{name}, onnxruntime" in res}
    ratio_bb = res["backbone ours fused"].median_ms / res["backbone timm fused"].median_ms
    ratio_det = res[f"{args.detector} ours fused"].median_ms / res[f"{args.detector} on timm fused"].median_ms
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    out = {
        "benchmark": "detect_latency",
        "model": args.model,
        "detector": args.detector,
        "img_size": s,
        "batch": 1,
        "threads": args.threads,
        "rounds": args.rounds,
        "iters_per_round": args.iters,
        "detections_per_image": n_det,
        "candidates_before_nms": args.candidates if args.detector != "retinanet" else None,
        "box_score_thresh": getattr(det.roi_heads, "score_thresh", None),
        "max_abs_feature_diff_vs_timm": diff,
        "results": {k: v.to_dict() for k, v in res.items()},
        "ratio_backbone_ours_vs_timm": ratio_bb,
        "ratio_detector_ours_vs_timm_backbone": ratio_det,
        "ratio_onnxruntime_vs_eager": ort_ratios,
        "goal": "backbone ratio <= 1.02; ONNX Runtime / eager <= 1",
        "loadavg_after": load,
        "environment": environment_info(),
    }
    path = Path(args.out or f"benchmarks/results/detect_latency_{args.model}_{args.detector}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"{args.model} {args.detector} @ {s}x{s}, batch 1, {args.threads} threads, {args.rounds}x{args.iters} "
          f"interleaved, {n_det} detections (load average after: {' '.join(load)})")
    print(f"| {'candidate':<26} | {'median ms':>9} | {'p90 ms':>8} |")
    print(f"|{'-' * 28}|{'-' * 11}|{'-' * 10}|")
    for k, v in res.items():
        print(f"| {k:<26} | {v.median_ms:>9.2f} | {v.p90_ms:>8.2f} |")
    print(f"backbone ours fused / timm fused: {ratio_bb:.3f}  (goal <= 1.02; max |feature diff| {diff:.2e})")
    print(f"{args.detector} end to end on ours / on timm's backbone: {ratio_det:.3f}")
    for name, r in ort_ratios.items():
        print(f"{name}: ONNX Runtime / eager {r:.3f} (goal <= 1)")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
