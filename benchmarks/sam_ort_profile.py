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
import tempfile
from pathlib import Path


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
    from repvit.bench.ort_profile import conv_kinds, group_nodes, groups_table, node_minima, session_graph
    from repvit.sam import build_repvit_sam
    from repvit.sam.export import export_encoder_onnx

    torch.manual_seed(0)
    kwargs = {"variant": "edge_sam"} if args.variant == "edge_sam" else {}
    sam = build_repvit_sam(img_size=args.img_size, fused=True, **kwargs)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "encoder.onnx"
        export = export_encoder_onnx(sam, path)
        data = path.read_bytes()
    graph = session_graph(data)
    x = torch.randn(1, 3, args.img_size, args.img_size).numpy()
    nodes = node_minima(graph, [x], args.threads, args.runs)
    groups = group_nodes(nodes, conv_kinds(data))
    total = sum(g["ms"] for g in groups.values())
    slowest = sorted(nodes.items(), key=lambda kv: -kv[1][1])[: args.top]
    out = {"environment": environment_info(), "settings": vars(args), "parity": export["parity"],
           "sum_of_node_minima_ms": total, "by_kind": groups,
           "slowest_nodes": [{"node": k, "op": op, "ms": ms} for k, (op, ms) in slowest]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, default=str))
    env = out["environment"]
    print(f"{args.variant} encoder @{args.img_size}, {args.threads} threads, fastest of {args.runs} runs per node; "
          f"CPU {env.get('cpu_model')}; load {env.get('loadavg_1m_5m_15m')}")
    print("\n".join(groups_table(groups)))
    for row in out["slowest_nodes"]:
        print(f"  {row['ms']:7.2f} ms  {row['op']:<12} {row['node']}")
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
