"""Our ONNX export of fused RepViT-M0.9 (batch 1, 224x224, 2 threads) against this machine's FP32 compute bound.

The bound is ``2 x MACs / sgemm FLOP/s``, with the best large-sgemm rate of two libraries on the same thread count:
MKL (``torch.mm`` 1024x1024, timed interleaved with the sessions in the same run) and OpenBLAS (numpy, timed first
in its own process, because its threads spin after a call and would slow the next candidate). Every result records
the CPU model and its ISA flags. Variants, all interleaved:

* ``timm plain``: timm's ``repvit_m0_9`` reparameterized (``timm.utils.model.reparameterize_model``), exported as-is
  (TorchScript exporter, opset 17), ONNX Runtime defaults (all optimizations).
* ``ours``: ``repvit export`` output (fused, Identity removal, ReduceMean -> GlobalAveragePool so ONNX Runtime's
  NCHWc layout covers the squeeze-excite blocks, basic optimizations saved), run by ``repvit.deploy.make_session``
  with its defaults, what users get: ONNX Runtime all optimizations plus the NCHWc squeeze-excite rewrite
  (:mod:`repvit.deploy.ort_nchwc`), worker threads spinning between the ops of a run and stopped when it returns
  (``session.force_spinning_stop``: no core stays busy for the next candidate).
* ``ours (no spin)``: the same with spinning off (idle workers sleep between ops).
* ``ours without SE rewrite``: the same session without the NCHWc squeeze-excite rewrite.
* ``ours NCHW``: ONNX Runtime at the extended level (no NCHWc layout transformation).
* ``ours without graph passes``: our export without the graph passes (what the passes buy).
* ``ours in OpenVINO``: the same file compiled by OpenVINO's CPU plugin (f32, latency hint, pinned threads), when
  ``openvino`` is installed (``pip install 'repvit[openvino]'``).
* ``per-layer sgemm (dense layers only)``: not a runtime but a limit: ``torch.mm`` at the GEMM shape of each dense
  conv/linear layer of the model, one after another (``repvit.bench.compute_bound.layer_gemm_callable``), with no
  depthwise convs, activations or layout work. No runtime whose dense kernels are no faster than this machine's
  sgemm at those shapes gets below it.
* ``timm plain (ORT defaults, spin)`` (with ``--with-spin``): ONNX Runtime's default threads, which keep spinning
  after a run and slow whatever runs next in an interleaved run (the sgemm probe included); every candidate's
  block is then followed by an untimed pause (``--settle-ms``, default 50) so they have gone idle.
Writes JSON (``--out``) and prints a table with every variant's median / p90 and ``x bound``, and whether ``ours``
is within the target (``--target``, default 1.15x the bound, medians of the same run). After the timed run, the
profile of ``ours`` (:mod:`repvit.bench.ort_profile`: each node's fastest kernel time over ``--profile-runs`` runs,
convolutions grouped by kind and output size with their GFLOP/s) says where its time goes against the sgemm rate.

    python benchmarks/onnx_vs_bound.py --rounds 20 --out benchmarks/results/onnx_vs_bound.json
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import torch


def _session(data: bytes, threads: int, level: str = "all", spinning: bool = True, nchwc_se: bool = True):
    from repvit.deploy.onnx_export import make_session

    return make_session(data, threads=threads, level=level, spinning=spinning, nchwc_se=nchwc_se)


def _plain_ort_session(data: bytes, threads: int):
    """ONNX Runtime's own defaults (all optimizations, threads spinning after a run) on ``threads`` threads."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="repvit_m0_9")
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--sgemm-n", type=int, default=1024)
    p.add_argument("--with-spin", action="store_true", help="add variants with ONNX Runtime thread spinning on")
    p.add_argument("--settle-ms", type=float, default=None,
                   help="untimed pause after each candidate's block (default 50 with --with-spin, else 0)")
    p.add_argument("--target", type=float, default=1.15, help="ours' median within this many times the bound")
    p.add_argument("--profile-runs", type=int, default=20, help="runs of ours' per-node profile (0: none)")
    p.add_argument("--out", default="benchmarks/results/onnx_vs_bound.json")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")

    import timm
    from timm.utils.model import reparameterize_model

    import repvit
    from repvit.bench.complexity import count_macs
    from repvit.bench.compute_bound import (
        best_rate,
        bound_ms,
        layer_gemm_callable,
        openblas_sgemm_probe,
        sgemm_callable,
        sgemm_flops,
    )
    from repvit.bench.latency import environment_info, interleaved_latency
    from repvit.deploy.export import export_model
    from repvit.deploy.onnx_export import export_onnx_bytes, optimize_onnx_bytes

    torch.manual_seed(0)
    s = args.img_size
    x = torch.randn(1, 3, s, s)
    feed = x.numpy()
    ours_model = repvit.create_model(args.model, fused=True).eval()
    macs = count_macs(ours_model, s)
    tmp = Path(args.out).with_suffix(".onnx")
    export_model(ours_model, tmp, "onnx", img_size=s, batch=1)
    ours = tmp.read_bytes()
    tmp.unlink()
    no_passes = optimize_onnx_bytes(export_onnx_bytes(ours_model, x, dynamic_batch=False), "basic")
    timm_model = reparameterize_model(timm.create_model(args.model, pretrained=False).eval())
    timm_plain = export_onnx_bytes(timm_model, x, dynamic_batch=False)

    t = args.threads
    sessions = {
        "timm plain (ORT defaults, no-spin)": _session(timm_plain, t, spinning=False),
        "ours": _session(ours, t),
        "ours (no spin)": _session(ours, t, spinning=False),
        "ours without SE rewrite": _session(ours, t, nchwc_se=False),
        "ours NCHW (ORT extended level)": _session(ours, t, level="extended"),
        "ours without graph passes": _session(no_passes, t),
    }
    if args.with_spin:  # ORT's default threads keep spinning after each run and slow down the next candidate
        sessions["timm plain (ORT defaults, spin)"] = _plain_ort_session(timm_plain, t)
    cands = {k: (lambda sess=v: sess.run(None, {sess.get_inputs()[0].name: feed})) for k, v in sessions.items()}
    try:
        from repvit.deploy.openvino_runtime import compile_onnx

        compiled = compile_onnx(ours, threads=t)
        request = compiled.create_infer_request()
        cands["ours in OpenVINO"] = lambda: request.infer({0: feed})
    except ImportError as e:
        print(f"(no OpenVINO row: {e})")
    layers_fn, layers_flop = layer_gemm_callable(ours_model, x)
    cands["per-layer sgemm (dense layers only)"] = layers_fn
    sg_fn, sg_flop = sgemm_callable(args.sgemm_n)
    cands["sgemm"] = sg_fn
    openblas = openblas_sgemm_probe(args.sgemm_n, t)  # its own process, before the interleaved run
    settle = (50.0 if args.with_spin else 0.0) if args.settle_ms is None else args.settle_ms
    res = interleaved_latency(cands, rounds=args.rounds, iters_per_round=args.iters, warmup=args.warmup,
                              threads=t, settle_s=settle / 1e3)
    sg = res.pop("sgemm")
    probes = {"mkl": {"library": "mkl (torch.mm)", "median_ms": sg.median_ms,
                      "gflops": sgemm_flops(sg.median_ms, sg_flop) / 1e9,
                      "best_gflops": sgemm_flops(sg.min_ms, sg_flop) / 1e9}, "openblas": openblas}
    lib, best = best_rate(probes)
    flops = best["gflops"] * 1e9
    best_flops = max(p["best_gflops"] for p in probes.values() if p) * 1e9
    b = bound_ms(macs, flops)
    rows = []
    for name, r in res.items():
        rows.append({"variant": name, **r.to_dict(), "bound_ms": b, "x_bound": r.median_ms / b,
                     "x_bound_best": r.min_ms / bound_ms(macs, best_flops)})
    dense = res["per-layer sgemm (dense layers only)"]
    out = {"environment": environment_info(), "settings": vars(args), "macs": macs,
           "dense_layers": {"gflop": layers_flop / 1e9,
                            "gflops": sgemm_flops(dense.median_ms, layers_flop) / 1e9},
           "sgemm": {"n": args.sgemm_n, "median_ms": best["median_ms"], "gflops": flops / 1e9,
                     "best_gflops": best_flops / 1e9, "bound_library": lib, **probes},
           "bound_ms": b, "rows": rows}
    x_ours = res["ours"].median_ms / b
    out["target"] = {"ours_x_bound_max": args.target, "ours_x_bound": x_ours, "met": x_ours <= args.target}
    if args.profile_runs > 0:  # after the timed run, so that it cannot disturb it
        from repvit.bench.ort_profile import conv_kinds, group_nodes, groups_table, node_minima, session_graph

        nodes = node_minima(session_graph(ours), [feed], t, args.profile_runs)
        groups = group_nodes(nodes, conv_kinds(ours), by_size=True)
        out["ours_profile"] = {"runs": args.profile_runs,
                               "sum_of_node_minima_ms": sum(g["ms"] for g in groups.values()), "by_kind": groups}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"{args.model} @{s}, batch 1, {t} threads; {macs / 1e9:.3f} GMACs; sgemm {flops / 1e9:.1f} GFLOP/s "
          f"({lib}; MKL {probes['mkl']['gflops']:.1f}, OpenBLAS {openblas['gflops']:.1f}; median; best "
          f"{best_flops / 1e9:.1f}) -> bound {b:.2f} ms")
    env = out["environment"]
    print(f"CPU: {env.get('cpu_model')}; flags: {env.get('cpu_flags')}; load average {env.get('loadavg_1m_5m_15m')}")
    print(f"dense layers alone: {layers_flop / 1e9:.3f} GFLOP as torch.mm at the model's own shapes run at "
          f"{out['dense_layers']['gflops']:.1f} GFLOP/s ({out['dense_layers']['gflops'] / (flops / 1e9):.0%} of the "
          f"{args.sgemm_n}x{args.sgemm_n} rate)")
    print("| variant | median ms | p90 ms | min ms | x bound (median/median) | x bound (best/best) |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['variant']} | {r['median_ms']:.2f} | {r['p90_ms']:.2f} | {r['min_ms']:.2f} | "
              f"{r['x_bound']:.3f} | {r['x_bound_best']:.3f} |")
    print(f"target: ours <= {args.target:.2f}x bound: {x_ours:.3f}x ({'met' if out['target']['met'] else 'NOT met'})")
    if "ours_profile" in out:
        prof = out["ours_profile"]
        print(f"ours, per node (fastest of {prof['runs']} runs), {prof['sum_of_node_minima_ms']:.2f} ms in all; "
              f"sgemm rate {flops / 1e9:.1f} GFLOP/s")
        print("\n".join(groups_table(prof["by_kind"], flops / 1e9)))
    return out


if __name__ == "__main__":
    main()
