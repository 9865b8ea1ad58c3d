"""Where a SAM encoder's time goes in ONNX Runtime: the per-operator profile of the graph ``repvit sam export`` writes,
run in the session ``repvit.deploy.onnx_export.make_session`` builds (level ``all``: NCHWc layout, squeeze-excite
kept in it), grouped by operator type and, for convolutions, by kind (1x1, k x k, depthwise) with their MACs and
GFLOP/s, so each kind can be read against the sgemm rate (``benchmarks/sam_latency.py`` measures that bound).

Per node, the fastest of ``--runs`` runs is kept (on a shared machine the minimum is the least disturbed figure);
the per-type sums are of those minima. Random weights (speed only).

    python benchmarks/sam_ort_profile.py                         # EdgeSAM encoder, 1024 px, 1 thread
    python benchmarks/sam_ort_profile.py --threads 2 --variant repvit_sam
    python benchmarks/sam_ort_profile.py --quick                 # 256 px, 2 runs (smoke test)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path


def _session_graph(data: bytes) -> bytes:
    """The graph ``make_session(data)`` runs: ONNX Runtime's level-``all`` graph with the NCHWc SE rewrite when it
    applies (the rewrite's own check against the plain graph is ``make_session``'s)."""
    from repvit.deploy.ort_nchwc import nchwc_block_size, ort_optimized_bytes, rewrite_se_blocks

    optimized = ort_optimized_bytes(data)
    block = nchwc_block_size()
    return optimized if block is None else rewrite_se_blocks(optimized, block)[0]


def _conv_kinds(data: bytes) -> dict[str, tuple[str, int]]:
    """Each Conv's output name -> (kind, MACs) in the exported graph (shapes from ONNX shape inference)."""
    import numpy as np
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load_from_string(data))
    g = model.graph
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in (*g.value_info, *g.output)}
    weights = {i.name: list(i.dims) for i in g.initializer}
    out = {}
    for n in g.node:
        if n.op_type != "Conv" or n.input[1] not in weights or n.output[0] not in shapes:
            continue
        w = weights[n.input[1]]
        group = next((a.i for a in n.attribute if a.name == "group"), 1)
        kind = "Conv depthwise" if group > 1 and w[1] == 1 else "Conv 1x1" if w[2:] == [1, 1] else "Conv k x k"
        out[n.output[0]] = (kind, int(np.prod(shapes[n.output[0]])) * w[1] * w[2] * w[3])
    return out


def _profile(graph: bytes, x, threads: int, runs: int) -> dict[str, tuple[str, float]]:
    """Node name -> (op type, fastest kernel time in ms over ``runs`` runs after one warm-up)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC  # the graph is already optimized
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    so.add_session_config_entry("session.force_spinning_stop", "1")
    so.enable_profiling = True
    so.profile_file_prefix = os.path.join(tempfile.gettempdir(), "sam_ort_profile")
    sess = ort.InferenceSession(graph, so, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x}
    for _ in range(runs + 1):
        sess.run(None, feed)
    path = sess.end_profiling()
    events = json.loads(Path(path).read_text())
    os.remove(path)
    times: dict[str, list[float]] = defaultdict(list)
    types = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            name = e["name"].removesuffix("_kernel_time")
            times[name].append(e["dur"] / 1e3)
            types[name] = e["args"].get("op_name", "?")
    return {k: (types[k], min(v[1:] or v)) for k, v in times.items()}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", default="edge_sam", choices=("edge_sam", "repvit_sam"))
    p.add_argument("--img-size", type=int, default=1024)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=8)
    p.add_argument("--top", type=int, default=15, help="slowest nodes to list")
    p.add_argument("--quick", action="store_true", help="smallest setting: 256 px, 2 runs")
    p.add_argument("--out", default="benchmarks/results/sam_ort_profile.json")
    args = p.parse_args(argv)
    if args.quick:
        args.img_size, args.runs = 256, 2

    import torch

    from repvit.bench.latency import environment_info
    from repvit.sam import build_repvit_sam
    from repvit.sam.export import export_encoder_onnx

    torch.manual_seed(0)
    kwargs = {"variant": "edge_sam"} if args.variant == "edge_sam" else {}
    sam = build_repvit_sam(img_size=args.img_size, fused=True, **kwargs)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "encoder.onnx"
        export = export_encoder_onnx(sam, path)
        data = path.read_bytes()
    kinds = _conv_kinds(data)
    x = torch.randn(1, 3, args.img_size, args.img_size).numpy()
    nodes = _profile(_session_graph(data), x, args.threads, args.runs)

    groups: dict[str, dict[str, float]] = defaultdict(lambda: {"nodes": 0, "ms": 0.0, "macs": 0})
    for name, (op, ms) in nodes.items():
        kind, macs = kinds.get(name.removesuffix("_nchwc"), (op, 0))
        if op == "Conv" and kind == "Conv":  # renamed by ONNX Runtime's fusions or added by the SE rewrite
            kind = "Conv (squeeze-excite: 1x1 fused with activation, scale)"
        groups[kind]["nodes"] += 1
        groups[kind]["ms"] += ms
        groups[kind]["macs"] += macs
    total = sum(g["ms"] for g in groups.values())
    for g in groups.values():
        g["share"] = g["ms"] / total
        g["gflops"] = 2 * g["macs"] / g["ms"] / 1e6 if g["macs"] else None
    slowest = sorted(nodes.items(), key=lambda kv: -kv[1][1])[: args.top]
    out = {"environment": environment_info(), "settings": vars(args), "parity": export["parity"],
           "sum_of_node_minima_ms": total, "by_kind": dict(sorted(groups.items(), key=lambda kv: -kv[1]["ms"])),
           "slowest_nodes": [{"node": k, "op": op, "ms": ms} for k, (op, ms) in slowest]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, default=str))
    env = out["environment"]
    print(f"{args.variant} encoder @{args.img_size}, {args.threads} threads, fastest of {args.runs} runs per node; "
          f"CPU {env.get('cpu_model')}; load {env.get('loadavg_1m_5m_15m')}")
    print("| op type / conv kind | nodes | ms | share | GMACs | GFLOP/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind, g in out["by_kind"].items():
        rate = f"{g['gflops']:.1f}" if g["gflops"] else "-"
        print(f"| {kind} | {g['nodes']} | {g['ms']:.1f} | {100 * g['share']:.1f}% | {g['macs'] / 1e9:.2f} | {rate} |")
    print(f"| total | {len(nodes)} | {total:.1f} | 100% | | |")
    for row in out["slowest_nodes"]:
        print(f"  {row['ms']:7.2f} ms  {row['op']:<12} {row['node']}")
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
