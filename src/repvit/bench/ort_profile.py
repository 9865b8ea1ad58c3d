"""Where an ONNX graph's time goes in ONNX Runtime: per-node kernel times of the session
:func:`repvit.deploy.onnx_export.make_session` builds, grouped by operator type and, for convolutions, by kind (1x1,
k x k, depthwise; optionally by output size too) with their MACs and GFLOP/s, to read against the sgemm rate
(:mod:`repvit.bench.compute_bound`).

Per node, the fastest of ``runs`` runs is kept: on a shared machine the minimum is the least disturbed figure.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["session_graph", "conv_kinds", "node_minima", "group_nodes", "groups_table"]

SE_CONV = "Conv (squeeze-excite: 1x1 fused with activation, scale)"


def session_graph(data: bytes) -> bytes:
    """The graph ``make_session(data)`` runs: ONNX Runtime's level-``all`` graph with the NCHWc squeeze-excite rewrite
    when it applies (the rewrite's own check against the plain graph is ``make_session``'s)."""
    from repvit.deploy.ort_nchwc import nchwc_block_size, ort_optimized_bytes, rewrite_se_blocks

    optimized = ort_optimized_bytes(data)
    block = nchwc_block_size()
    return optimized if block is None else rewrite_se_blocks(optimized, block)[0]


def conv_kinds(data: bytes) -> dict[str, tuple[str, int, tuple[int, ...]]]:
    """Each Conv's output name -> (kind, MACs, output spatial size) in the exported graph ``data`` (shapes from ONNX
    shape inference; convolutions whose weight or output shape is unknown are left out)."""
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
        w, shape = weights[n.input[1]], shapes[n.output[0]]
        group = next((a.i for a in n.attribute if a.name == "group"), 1)
        kind = "Conv depthwise" if group > 1 and w[1] == 1 else "Conv 1x1" if w[2:] == [1, 1] else "Conv k x k"
        out[n.output[0]] = (kind, int(np.prod(shape)) * w[1] * w[2] * w[3], tuple(shape[2:]))
    return out


def node_minima(graph: bytes, inputs: Sequence[Any], threads: int, runs: int) -> dict[str, tuple[str, float]]:
    """Node name -> (op type, fastest kernel time in ms over ``runs`` runs after one warm-up) for ``graph`` (already
    optimized: the session applies only the basic level) on ``inputs`` (arrays, in the graph's input order),
    ``threads`` intra-op threads. The profile file ONNX Runtime writes goes to a temporary folder and is removed."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    so.add_session_config_entry("session.force_spinning_stop", "1")
    so.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        so.profile_file_prefix = os.path.join(tmp, "ort_profile")
        sess = ort.InferenceSession(graph, so, providers=["CPUExecutionProvider"])
        feed = {i.name: x for i, x in zip(sess.get_inputs(), inputs, strict=True)}
        for _ in range(runs + 1):
            sess.run(None, feed)
        events = json.loads(Path(sess.end_profiling()).read_text())
    times: dict[str, list[float]] = defaultdict(list)
    types = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            name = e["name"].removesuffix("_kernel_time")
            times[name].append(e["dur"] / 1e3)
            types[name] = e["args"].get("op_name", "?")
    return {k: (types[k], min(v[1:] or v)) for k, v in times.items()}


def group_nodes(nodes: dict[str, tuple[str, float]], kinds: dict[str, tuple[str, int, tuple[int, ...]]],
                by_size: bool = False) -> dict[str, dict[str, float]]:
    """:func:`node_minima`'s nodes summed per op type or conv kind (with ``by_size``, per kind and output size, e.g.
    ``Conv 1x1 @14x14``): ``nodes``, ``ms``, ``macs``, ``share`` of the total and ``gflops`` (None without MACs),
    slowest first. ONNX Runtime's NCHWc convolutions are matched to the exported ones by name."""
    groups: dict[str, dict[str, float]] = defaultdict(lambda: {"nodes": 0, "ms": 0.0, "macs": 0})
    for name, (op, ms) in nodes.items():
        kind, macs, size = kinds.get(name.removesuffix("_nchwc"), (op, 0, ()))
        if op == "Conv" and kind == "Conv":  # renamed by ONNX Runtime's fusions or added by the SE rewrite
            kind = SE_CONV
        if by_size and size and kind.startswith("Conv "):
            kind = f"{kind} @{'x'.join(map(str, size))}"
        groups[kind]["nodes"] += 1
        groups[kind]["ms"] += ms
        groups[kind]["macs"] += macs
    total = sum(g["ms"] for g in groups.values()) or 1.0
    for g in groups.values():
        g["share"] = g["ms"] / total
        g["gflops"] = 2 * g["macs"] / g["ms"] / 1e6 if g["macs"] and g["ms"] else None
    return dict(sorted(groups.items(), key=lambda kv: -kv[1]["ms"]))


def groups_table(groups: dict[str, dict[str, float]], sgemm_gflops: float | None = None) -> list[str]:
    """:func:`group_nodes`'s groups as Markdown table lines (with each rate as a share of ``sgemm_gflops`` when
    given), a total row last."""
    rated = sgemm_gflops is not None
    lines = ["| op type / conv kind | nodes | ms | share | GMACs | GFLOP/s |" + (" % of sgemm rate |" if rated else ""),
             "|---|---:|---:|---:|---:|---:|" + ("---:|" if rated else "")]
    for kind, g in groups.items():
        rate = "-" if g["gflops"] is None else f"{g['gflops']:.1f}"
        share = "" if not rated else (" - |" if g["gflops"] is None else f" {g['gflops'] / sgemm_gflops:.0%} |")
        lines.append(f"| {kind} | {g['nodes']} | {g['ms']:.2f} | {100 * g['share']:.1f}% | {g['macs'] / 1e9:.2f} | "
                     f"{rate} |{share}")
    total = sum(g["ms"] for g in groups.values())
    lines.append(f"| total | {sum(g['nodes'] for g in groups.values())} | {total:.2f} | 100% | | |" +
                 (" |" if rated else ""))
    return lines
