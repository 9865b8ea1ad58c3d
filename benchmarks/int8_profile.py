"""Where INT8 time goes: ONNX Runtime's per-operator profile of a fused RepViT in FP32 and in INT8 (static QDQ, this
CPU's ``auto`` INT8 mode and plan), grouped by operator type, plus which ops stayed in float and how many Q/DQ pairs
remain; with ``--openvino`` also OpenVINO's per-layer profile (``PERF_COUNT``) of f32 and NNCF INT8, grouped by
layer type and kernel (e.g. ``brgconv_avx2_1x1_f32`` against ``jit_avx2_1x1_I8`` for the pointwise convolutions).

On x86 CPUs without VNNI the INT8 convolutions use AVX2 u8s8 kernels (vpmaddubsw + vpmaddwd: two instructions per
32 MACs where VNNI needs one), the depthwise convolutions are memory bound either way, and every QuantizeLinear /
DequantizeLinear left between INT8 ops is pure overhead. This script measures each part, so the ratio INT8/FP32
can be read per operator type. ONNX Runtime's times are those of the graph ``make_session`` runs, each node's fastest
kernel time over ``--runs`` runs summed per type (:mod:`repvit.bench.ort_profile`).

    python benchmarks/int8_profile.py                       # repvit_m0_9, 224 px, 2 threads
    python benchmarks/int8_profile.py --quick               # smallest setting (smoke test)
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import torch


def _profile(data: bytes, x, threads: int, runs: int) -> dict[str, float]:
    """ms per run by operator type in the graph ``make_session`` runs: each node's fastest kernel time over ``runs``
    runs (:mod:`repvit.bench.ort_profile`), summed per type."""
    from repvit.bench.ort_profile import node_minima, session_graph

    by_op: dict[str, float] = defaultdict(float)
    for op, ms in node_minima(session_graph(data), [x], threads, runs).values():
        by_op[op] += ms
    return dict(sorted(by_op.items(), key=lambda kv: -kv[1]))


def _ov_profile(model, x, threads: int, runs: int) -> dict[str, float]:
    """OpenVINO's per-layer time (ms per run) of an ``openvino.Model``, grouped by ``layer type [kernel]``."""
    from repvit.deploy import openvino_runtime as ovr

    model.reshape({model.inputs[0].get_any_name(): list(x.shape)})
    cfg = ovr.cpu_config(threads, "f32") | {"PERF_COUNT": True}
    request = ovr.import_openvino().Core().compile_model(model, "CPU", cfg).create_infer_request()
    for _ in range(3):
        request.infer({0: x})
    by_op: dict[str, float] = defaultdict(float)
    for _ in range(runs):
        request.infer({0: x})
        for p in request.profiling_info:
            by_op[f"{p.node_type} [{p.exec_type}]"] += p.real_time.total_seconds() * 1e3 / runs
    return {k: v for k, v in sorted(by_op.items(), key=lambda kv: -kv[1]) if v > 0}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="repvit_m0_9")
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--int8-mode", default="auto", choices=("auto", "safe", "full"))
    p.add_argument("--openvino", action="store_true", help="also profile OpenVINO f32 and NNCF INT8")
    p.add_argument("--quick", action="store_true", help="smallest setting: repvit_m0_6 at 64 px, 2 runs")
    p.add_argument("--out", default="benchmarks/results/int8_profile.json")
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.img_size, args.runs = "repvit_m0_6", 64, 2

    import onnx

    import repvit
    from repvit.bench.latency import environment_info
    from repvit.deploy.int8_mode import resolve_int8_mode
    from repvit.deploy.onnx_export import export_onnx_bytes
    from repvit.deploy.onnx_passes import apply_passes
    from repvit.deploy.quantize import quantize_onnx_bytes

    torch.manual_seed(0)
    model = repvit.fuse_model(repvit.create_model(args.model)).eval()
    x = torch.randn(1, 3, args.img_size, args.img_size)
    fp32 = apply_passes(export_onnx_bytes(model, x, dynamic_batch=True))
    calib = [torch.randn(4, 3, args.img_size, args.img_size).numpy() for _ in range(2)]
    choice = resolve_int8_mode(args.int8_mode)
    int8 = quantize_onnx_bytes(fp32, calib, int8_mode=choice)
    graph = onnx.load_from_string(int8).graph
    ops = [n.op_type for n in graph.node]
    quantized_inputs = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    float_ops = sorted({n.op_type for n in graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
                        and not any(i in quantized_inputs for i in n.input)})
    prof = {"fp32": _profile(fp32, x.numpy(), args.threads, args.runs),
            "int8": _profile(int8, x.numpy(), args.threads, args.runs)}
    if args.openvino:
        import contextlib
        import io

        from repvit.deploy import openvino_runtime as ovr

        with contextlib.redirect_stdout(io.StringIO()):  # NNCF draws progress bars on stdout
            ov_int8 = ovr.quantize_nncf(fp32, calib, int8_mode=choice)
        prof["openvino_f32"] = _ov_profile(ovr.read_onnx(fp32), x.numpy(), args.threads, args.runs)
        prof["openvino_int8"] = _ov_profile(ov_int8, x.numpy(), args.threads, args.runs)
    totals = {k: sum(v.values()) for k, v in prof.items()}
    out = {"environment": environment_info(), "settings": vars(args), "int8": choice.to_dict(),
           "qdq_graph": {"QuantizeLinear": ops.count("QuantizeLinear"),
                         "DequantizeLinear": ops.count("DequantizeLinear"), "ops_with_no_int8_input": float_ops},
           "per_op_ms": prof, "total_kernel_ms": totals, "int8_speedup_kernels": totals["fp32"] / totals["int8"]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, default=str))
    env = out["environment"]
    print(f"{args.model} @{args.img_size}, {args.threads} threads; CPU {env.get('cpu_model')} (family "
          f"{env.get('cpu_family')}, model {env.get('cpu_model_number')}), ISA class {env.get('int8_isa_class')}; "
          f"INT8 mode {choice.mode}")
    print("| op type (kernel, as ORT ran it) | FP32 ms | INT8 graph ms |")
    print("|---|---:|---:|")
    for op in dict.fromkeys(list(prof["fp32"]) + list(prof["int8"])):
        print(f"| {op} | {prof['fp32'].get(op, 0):.3f} | {prof['int8'].get(op, 0):.3f} |")
    print(f"| total | {totals['fp32']:.3f} | {totals['int8']:.3f} |")
    print(f"INT8/FP32 speed-up (kernel time): {out['int8_speedup_kernels']:.2f}x; Q/DQ nodes in the file: "
          f"{out['qdq_graph']['QuantizeLinear']}/{out['qdq_graph']['DequantizeLinear']}")
    if args.openvino:
        print("| OpenVINO layer [kernel] | f32 ms | NNCF INT8 ms |")
        print("|---|---:|---:|")
        for op in dict.fromkeys(list(prof["openvino_f32"]) + list(prof["openvino_int8"])):
            print(f"| {op} | {prof['openvino_f32'].get(op, 0):.3f} | {prof['openvino_int8'].get(op, 0):.3f} |")
        print(f"| total | {totals['openvino_f32']:.3f} | {totals['openvino_int8']:.3f} |")
        out["openvino_int8_speedup_kernels"] = totals["openvino_f32"] / totals["openvino_int8"]
        Path(args.out).write_text(json.dumps(out, indent=2, default=str))
    return out


if __name__ == "__main__":
    main()
