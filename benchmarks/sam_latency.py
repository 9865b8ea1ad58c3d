"""SAM-family image encoders on the CPU at 1024 x 1024, batch 1, interleaved in one run: the fused EdgeSAM-form
encoder (legacy RepViT-M0.9 + fusion neck), the fused RepViT-SAM M2.3 encoder, SAM's ViT-B and MobileSAM's TinyViT,
in eager PyTorch and ONNX Runtime. A click's decoder and its time in the app: ``benchmarks/sam_click.py``.

ONNX Runtime runs our encoders as users get them: the graph ``repvit sam export`` writes
(``repvit.sam.export.export_encoder_onnx``) in ``repvit.deploy.onnx_export.make_session``; the competitors are
exported with plain ``torch.onnx.export`` (opset 17) and run in the same session. Every encoder's compute bound
(2 x MACs / the better large-sgemm rate of MKL, timed with the candidates, and OpenBLAS, timed just before in its
own process; ``repvit.bench.compute_bound``) is reported beside it, with ``ORT / eager`` per encoder and the
EdgeSAM ratios against the targets (ViT-B >= 30x, TinyViT >= 3x, in both runtimes).

All weights are random (speed only). SAM ViT-B comes from ``segment_anything``; MobileSAM's TinyViT from the PyPI
package ``mobilesam-mirror`` (a packaging of the MobileSAM repository, module ``mobile_sam``), which this script
installs with ``pip install --no-deps mobilesam-mirror`` when it is missing (not a dependency of repvit;
``--no-install`` to skip). Writes JSON and prints a table with ratios, the CPU model and its ISA flags.

    python benchmarks/sam_latency.py [--threads 2] [--rounds 5] [--iters 2] [--no-onnx] [--no-mobilesam] [--quick]
        [--skip repvit_sam,vit_b]
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from repvit.bench.latency import environment_info, interleaved_latency
from repvit.sam import build_repvit_sam

EDGE = "EdgeSAM fused"
REPVIT = "RepViT-SAM M2.3 fused"
VIT_B = "SAM ViT-B"
TINY = "MobileSAM TinyViT"
SGEMM = "sgemm (torch.mm, compute bound)"


def _product_session(sam: torch.nn.Module, path: Path, threads: int):
    """Our encoder as users get it: ``repvit sam export``'s graph in ``make_session`` on ``threads`` threads."""
    from repvit.deploy.onnx_export import make_session
    from repvit.sam.export import export_encoder_onnx

    export_encoder_onnx(sam, path)
    return make_session(path, threads=threads)


def _onnx_session(model: torch.nn.Module, x: torch.Tensor, path: Path, threads: int):
    """Export ``model`` (fixed shape) with plain ``torch.onnx.export`` to ``path`` and return an ONNX Runtime
    session on ``threads`` threads."""
    from repvit.deploy.onnx_export import make_session

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, input_names=["image"],
                          output_names=["image_embeddings"], do_constant_folding=True)
    return make_session(path, threads=threads, level="all")


def _mobilesam_encoder(install: bool):
    try:
        from mobile_sam import sam_model_registry
    except ImportError:
        if not install:
            return None, "not installed (pip install --no-deps mobilesam-mirror)"
        cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "mobilesam-mirror"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            return None, f"not installed; `{' '.join(cmd[2:])}` failed: {done.stderr.strip()[-200:]}"
        importlib.invalidate_caches()
        try:
            from mobile_sam import sam_model_registry
        except ImportError as e:
            return None, f"installed mobilesam-mirror but cannot import mobile_sam: {e}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its timm imports are deprecated paths
        return sam_model_registry["vit_t"]().image_encoder.eval(), "mobilesam-mirror (module mobile_sam), vit_t"


def _goal(target: str) -> float:
    """The number a target's name ends on ("... >= 30 (torch)" -> 30)."""
    return float(target.replace("<=", ">=").split(">= ")[1].split()[0])


def _compute_bound(sgemm, sgemm_flop: float, openblas: dict, macs: dict[str, int], res: dict,
                   n: int) -> dict | None:
    """Each encoder's compute bound (2 x MACs at the better median sgemm rate of MKL, timed with the candidates,
    and OpenBLAS) and every candidate's median against it; None without MACs (``--no-macs``)."""
    from repvit.bench.compute_bound import best_rate, bound_ms, sgemm_flops

    if not macs:
        return None
    probes = {"mkl": {"library": "mkl (torch.mm)", "median_ms": sgemm.median_ms,
                      "gflops": sgemm_flops(sgemm.median_ms, sgemm_flop) / 1e9,
                      "best_gflops": sgemm_flops(sgemm.min_ms, sgemm_flop) / 1e9}}
    if openblas.get("gflops"):
        probes["openblas"] = openblas
    lib, best = best_rate(probes)
    bounds = {k: bound_ms(m, best["gflops"] * 1e9) for k, m in macs.items()}
    x_bound = {k: r.median_ms / bounds[name] for k, r in res.items()
               for name in bounds if k.startswith(name + " (")}
    return {"sgemm": {"n": n, "library": probes[lib]["library"], "gflops": best["gflops"],
                      "mkl_gflops": probes["mkl"]["gflops"],
                      "openblas_gflops": probes.get("openblas", {}).get("gflops"), "probes": probes},
            "bound_ms": bounds, "x_bound": x_bound}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=2, help="encoder calls per candidate per round")
    ap.add_argument("--img-size", type=int, default=1024)
    ap.add_argument("--no-onnx", action="store_true")
    ap.add_argument("--no-mobilesam", action="store_true")
    ap.add_argument("--skip", default="", help="comma-separated encoders not to time: repvit_sam, vit_b (the ratios "
                                               "that need them are then not measured)")
    ap.add_argument("--no-install", action="store_true", help="do not pip-install mobilesam-mirror when missing")
    ap.add_argument("--no-macs", action="store_true", help="skip counting MACs (one extra forward per encoder)")
    ap.add_argument("--sgemm-n", type=int, default=1024, help="matrix size of the sgemm probes (compute bound)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 256 px, 1 round of 1, no MobileSAM, small sgemm probes")
    ap.add_argument("--out", default="benchmarks/results/sam_latency.json")
    args = ap.parse_args()
    if args.quick:
        args.img_size, args.rounds, args.iters, args.sgemm_n = 256, 1, 1, 128
        args.no_mobilesam = True
        if args.out == ap.get_default("out"):
            args.out = str(Path(tempfile.gettempdir()) / "sam_latency_quick.json")
    torch.manual_seed(0)
    s = args.img_size
    x = torch.randn(1, 3, s, s)

    from segment_anything import sam_model_registry

    skip = {k.strip() for k in args.skip.split(",") if k.strip()}
    if skip - {"repvit_sam", "vit_b"}:
        ap.error(f"--skip takes repvit_sam and vit_b, got {', '.join(sorted(skip - {'repvit_sam', 'vit_b'}))}")
    t0 = time.perf_counter()
    edge_sam = build_repvit_sam(variant="edge_sam", img_size=s, fused=True)
    ours = {EDGE: edge_sam}
    if "repvit_sam" not in skip:
        ours[REPVIT] = build_repvit_sam(img_size=s, fused=True)
    encoders = {k: sam.image_encoder.eval() for k, sam in ours.items()}
    if s == 1024 and "vit_b" not in skip:  # ViT-B's positional embedding is built for 1024 (--quick: ours only)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            encoders[VIT_B] = sam_model_registry["vit_b"]().image_encoder.eval()
    mobilesam_note = "skipped (--no-mobilesam)"
    if not args.no_mobilesam:
        tiny, mobilesam_note = _mobilesam_encoder(not args.no_install)
        if tiny is not None:
            encoders[TINY] = tiny
    params = {k: sum(p.numel() for p in m.parameters()) for k, m in encoders.items()}
    macs = {}
    if not args.no_macs:
        from repvit.bench.complexity import count_macs

        macs = {k: count_macs(m, s) for k, m in encoders.items()}

    cands = {f"{k} (torch)": (lambda m=m: m(x)) for k, m in encoders.items()}
    onnx_notes: dict[str, str] = {}
    tmp = tempfile.TemporaryDirectory()
    if not args.no_onnx:
        for k, m in encoders.items():
            path = Path(tmp.name) / f"{len(cands)}.onnx"
            try:
                if k in ours:
                    sess = _product_session(ours[k], path, args.threads)
                else:
                    sess = _onnx_session(m, x, path, args.threads)
            except Exception as e:  # a model the exporter cannot handle: say so, keep the others
                onnx_notes[k] = f"ONNX export failed: {type(e).__name__}: {str(e)[:200]}"
                continue
            feed = {"image": x.numpy()}
            cands[f"{k} (onnxruntime)"] = lambda sess=sess, feed=feed: sess.run(None, feed)
    from repvit.bench.compute_bound import openblas_sgemm_probe, sgemm_callable

    sgemm_fn, sgemm_flop = sgemm_callable(args.sgemm_n)
    cands[SGEMM] = sgemm_fn
    setup_s = time.perf_counter() - t0
    try:  # its own process, before the interleaved run: OpenBLAS's threads spin after a call
        openblas = openblas_sgemm_probe(args.sgemm_n, args.threads)
    except (RuntimeError, OSError, ValueError) as e:
        openblas = {"error": str(e)[-300:]}
    res = interleaved_latency(cands, rounds=args.rounds, iters_per_round=args.iters, warmup=1,
                              threads=args.threads, settle_s=0.2)
    bound = _compute_bound(res.pop(SGEMM), sgemm_flop, openblas, macs, res, args.sgemm_n)

    tmp.cleanup()
    ratios = {}
    for rt in ("torch", "onnxruntime"):
        edge = res.get(f"{EDGE} ({rt})")
        for ref in (VIT_B, TINY, REPVIT):
            other = res.get(f"{ref} ({rt})")
            if edge and other:
                ratios[f"{ref} / {EDGE} ({rt})"] = other.median_ms / edge.median_ms
    for name in encoders:
        eager, ort_ = res.get(f"{name} (torch)"), res.get(f"{name} (onnxruntime)")
        if eager and ort_:
            ratios[f"{name} ORT / eager"] = ort_.median_ms / eager.median_ms
    targets = {
        "EdgeSAM ORT / eager <= 1": (ratios.get(f"{EDGE} ORT / eager"), "<="),
        "ViT-B / EdgeSAM >= 30 (onnxruntime)": (ratios.get(f"{VIT_B} / {EDGE} (onnxruntime)"), ">="),
        "TinyViT / EdgeSAM >= 3 (onnxruntime)": (ratios.get(f"{TINY} / {EDGE} (onnxruntime)"), ">="),
        "ViT-B / EdgeSAM >= 30 (torch)": (ratios.get(f"{VIT_B} / {EDGE} (torch)"), ">="),
        "TinyViT / EdgeSAM >= 3 (torch)": (ratios.get(f"{TINY} / {EDGE} (torch)"), ">="),
    }
    targets = {k: (None if v is None else {"ratio": v, "met": v <= _goal(k) if op == "<=" else v >= _goal(k)})
               for k, (v, op) in targets.items()}
    tiny_ort, edge_bound = res.get(f"{TINY} (onnxruntime)"), (bound or {}).get("bound_ms", {}).get(EDGE)
    if tiny_ort and edge_bound:  # the most any runtime could reach on this machine at sgemm speed
        ratios[f"{TINY} (onnxruntime) / {EDGE} compute bound"] = tiny_ort.median_ms / edge_bound
    env = environment_info()
    out = {
        "benchmark": "sam_latency", "img_size": s, "batch": 1, "threads": args.threads, "rounds": args.rounds,
        "iters_per_round": args.iters, "quick": args.quick, "params": params, "macs": macs,
        "mobilesam": mobilesam_note, "onnx_notes": onnx_notes, "setup_s": setup_s,
        "results": {k: v.to_dict() for k, v in res.items()}, "compute_bound": bound, "ratios": ratios,
        "targets": targets, "environment": env,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"SAM image encoders @ {s}x{s}, batch 1, {args.threads} threads, {args.rounds}x{args.iters} interleaved; "
          f"load {env.get('loadavg_1m_5m_15m')}")
    print(f"CPU: {env.get('cpu_model', env.get('processor'))}; ISA flags: {env.get('cpu_flags')}")
    if bound:
        sg = bound["sgemm"]
        print(f"Compute bound: 2 x MACs / {sg['gflops']:.1f} GFLOP/s ({sg['library']}, {args.sgemm_n}x{args.sgemm_n} "
              f"sgemm, {args.threads} threads, median; MKL {sg['mkl_gflops']:.1f}, OpenBLAS "
              f"{sg.get('openblas_gflops') or float('nan'):.1f})")
    print(f"| {'candidate':<42} | {'params':>7} | {'GMACs':>6} | {'median ms':>10} | {'p90 ms':>10} | "
          f"{'bound ms':>9} | {'x bound':>7} |")
    print(f"|{'-' * 44}|{'-' * 9}|{'-' * 8}|{'-' * 12}|{'-' * 12}|{'-' * 11}|{'-' * 9}|")
    for k, v in res.items():
        name = next((n for n in params if k.startswith(n + " (")), None)
        ps = f"{params[name] / 1e6:.1f}M" if name else "-"
        ms = f"{macs[name] / 1e9:.1f}" if name in macs else "-"
        b = (bound or {}).get("bound_ms", {}).get(name)
        bs, xb = (f"{b:.1f}", f"{v.median_ms / b:.2f}") if b else ("-", "-")
        print(f"| {k:<42} | {ps:>7} | {ms:>6} | {v.median_ms:>10.1f} | {v.p90_ms:>10.1f} | {bs:>9} | {xb:>7} |")
    for k, r in ratios.items():
        print(f"{k}: {r:.2f}x")
    for k, t in targets.items():
        verdict = "not measured" if t is None else f"{t['ratio']:.2f}x ({'met' if t['met'] else 'NOT met'})"
        print(f"target {k}: {verdict}")
    print(f"MobileSAM: {mobilesam_note}")
    for k, n in onnx_notes.items():
        print(f"{k}: {n}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
