"""Where an exported detector's time goes in ONNX Runtime: the per-operator profile of the graph
``repvit detect export`` writes (``repvit.dense.detection.export.export_detector_onnx``, fused backbone, fixed size),
grouped by operator type, with the slowest nodes. Random weights: the box score threshold is set, as in
``benchmarks/detect_latency.py``, so that ``--candidates`` (proposal, class) pairs reach NMS (0: threshold 0, every
pair). Writes JSON (with the CPU model and ISA flags) and prints a table.

    python benchmarks/detect_ort_profile.py [--model repvit_m1_1] [--detector maskrcnn] [--threads 2] [--runs 2]
    python benchmarks/detect_ort_profile.py --candidates 0    # every pair reaches NMS
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="repvit_m1_1")
    ap.add_argument("--detector", default="maskrcnn", choices=["maskrcnn", "fasterrcnn"])
    ap.add_argument("--img-size", type=int, default=512)
    ap.add_argument("--detections", type=int, default=100)
    ap.add_argument("--candidates", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=2, help="profiled runs after one warm-up (their mean is reported)")
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--out", default="benchmarks/results/detect_ort_profile.json")
    args = ap.parse_args()

    import onnxruntime as ort

    sys.path.insert(0, str(Path(__file__).parent))
    from detect_latency import _threshold_for

    from repvit.bench.latency import environment_info
    from repvit.dense.detection import DetectorSpec, build_detector, fuse_detector
    from repvit.dense.detection.export import export_detector_onnx

    torch.manual_seed(0)
    s = args.img_size
    det = build_detector(DetectorSpec(model=args.model, detector=args.detector, min_size=s, max_size=s,
                                      box_score_thresh=0.0, detections_per_img=args.detections), 81).eval()
    img = torch.rand(3, s, s, generator=torch.Generator().manual_seed(0))
    if args.candidates > 0:
        det.roi_heads.score_thresh = _threshold_for(det, img, args.candidates)
    with tempfile.TemporaryDirectory() as tmp:
        path = export_detector_onnx(fuse_detector(det), Path(tmp) / "det.onnx", height=s, width=s)
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = args.threads, 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(tmp) / "profile")
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        feed = {sess.get_inputs()[0].name: img.numpy()}
        sess.run(None, feed)  # warm-up (profiled too: dropped below)
        for _ in range(args.runs):
            sess.run(None, feed)
        events = json.loads(Path(sess.end_profiling()).read_text())
    runs = [e for e in events if e.get("cat") == "Session" and e["name"] == "model_run"]
    start = runs[1]["ts"] if len(runs) > 1 else 0  # after the warm-up
    by_type: dict[str, float] = defaultdict(float)
    by_node: dict[str, float] = defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= start:
            ms = e["dur"] / 1e3 / args.runs
            by_node[(e["name"][:-len("_kernel_time")], e["args"].get("op_name", "?"))] += ms
            if e.get("args", {}).get("parent_name") is None:  # nodes inside an If/Loop count in their parent
                by_type[e["args"].get("op_name", "?")] += ms
    total = sum(by_type.values())
    wall = sum(r["dur"] for r in runs[1:]) / 1e3 / max(len(runs) - 1, 1)
    out = {"settings": vars(args), "box_score_thresh": getattr(det.roi_heads, "score_thresh", None),
           "run_ms": wall, "kernel_ms": total,
           "by_op_type": dict(sorted(by_type.items(), key=lambda kv: -kv[1])),
           "slowest_nodes": [{"node": n, "op": op, "ms": ms}
                             for (n, op), ms in sorted(by_node.items(), key=lambda kv: -kv[1])[:args.top]],
           "environment": environment_info()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    env = out["environment"]
    print(f"{args.model} {args.detector} @ {s}, {args.threads} threads, {args.candidates or 'all'} candidates before "
          f"NMS; run {wall:.1f} ms, kernels {total:.1f} ms; CPU {env.get('cpu_model')}, flags {env.get('cpu_flags')}")
    print("| op type | ms | share |\n|---|---:|---:|")
    for k, v in list(out["by_op_type"].items())[:args.top]:
        print(f"| {k} | {v:.1f} | {100 * v / total:.1f}% |")
    for n in out["slowest_nodes"]:
        print(f"  {n['ms']:8.1f} ms  {n['op']:<14} {n['node'][:80]}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
