"""SAM-family image encoders on the CPU at 1024 x 1024, batch 1, interleaved in one run: the fused EdgeSAM-form
encoder (legacy RepViT-M0.9 + fusion neck), the fused RepViT-SAM M2.3 encoder, SAM's ViT-B and MobileSAM's TinyViT,
in eager PyTorch and ONNX Runtime. A click's decoder and its time in the app: ``benchmarks/sam_click.py``.

All weights are random (speed only). SAM ViT-B comes from ``segment_anything``; MobileSAM's TinyViT from the PyPI
package ``mobilesam-mirror`` (a packaging of the MobileSAM repository, module ``mobile_sam``), which this script
installs with ``pip install --no-deps mobilesam-mirror`` when it is missing (not a dependency of repvit;
``--no-install`` to skip). Writes JSON and prints a table with ratios, the CPU model and its ISA flags.

    python benchmarks/sam_latency.py [--threads 2] [--rounds 5] [--iters 2] [--no-onnx] [--no-mobilesam] [--quick]
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


def _onnx_session(model: torch.nn.Module, x: torch.Tensor, path: Path, threads: int):
    """Export ``model`` (fixed shape) to ``path`` and return an ONNX Runtime session on ``threads`` threads."""
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=2, help="encoder calls per candidate per round")
    ap.add_argument("--img-size", type=int, default=1024)
    ap.add_argument("--no-onnx", action="store_true")
    ap.add_argument("--no-mobilesam", action="store_true")
    ap.add_argument("--no-install", action="store_true", help="do not pip-install mobilesam-mirror when missing")
    ap.add_argument("--no-macs", action="store_true", help="skip counting MACs (one extra forward per encoder)")
    ap.add_argument("--quick", action="store_true", help="smoke test: 256 px, 1 round of 1, no ONNX, no MobileSAM")
    ap.add_argument("--out", default="benchmarks/results/sam_latency.json")
    args = ap.parse_args()
    if args.quick:
        args.img_size, args.rounds, args.iters = 256, 1, 1
        args.no_onnx = args.no_mobilesam = args.no_macs = True
        if args.out == ap.get_default("out"):
            args.out = str(Path(tempfile.gettempdir()) / "sam_latency_quick.json")
    torch.manual_seed(0)
    s = args.img_size
    x = torch.randn(1, 3, s, s)

    from segment_anything import sam_model_registry

    t0 = time.perf_counter()
    edge_sam = build_repvit_sam(variant="edge_sam", img_size=s, fused=True)
    repvit_sam = build_repvit_sam(img_size=s, fused=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vit_b = sam_model_registry["vit_b"]()
    encoders = {EDGE: edge_sam.image_encoder.eval(), REPVIT: repvit_sam.image_encoder.eval()}
    if s == 1024:  # ViT-B's positional embedding is built for 1024 (--quick times only the RepViT encoders)
        encoders[VIT_B] = vit_b.image_encoder.eval()
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
            try:
                sess = _onnx_session(m, x, Path(tmp.name) / f"{len(cands)}.onnx", args.threads)
            except Exception as e:  # a model the exporter cannot handle: say so, keep the others
                onnx_notes[k] = f"ONNX export failed: {type(e).__name__}: {str(e)[:200]}"
                continue
            feed = {"image": x.numpy()}
            cands[f"{k} (onnxruntime)"] = lambda sess=sess, feed=feed: sess.run(None, feed)
    setup_s = time.perf_counter() - t0
    res = interleaved_latency(cands, rounds=args.rounds, iters_per_round=args.iters, warmup=1,
                              threads=args.threads, settle_s=0.2)
    tmp.cleanup()
    ratios = {}
    for rt in ("torch", "onnxruntime"):
        ours = res.get(f"{EDGE} ({rt})")
        for ref in (VIT_B, TINY, REPVIT):
            other = res.get(f"{ref} ({rt})")
            if ours and other:
                ratios[f"{ref} / {EDGE} ({rt})"] = other.median_ms / ours.median_ms
    targets = {"ViT-B / EdgeSAM >= 30 (torch)": ratios.get(f"{VIT_B} / {EDGE} (torch)"),
               "TinyViT / EdgeSAM >= 3 (torch)": ratios.get(f"{TINY} / {EDGE} (torch)")}
    targets = {k: (None if v is None else {"ratio": v, "met": v >= float(k.split(">= ")[1].split()[0])})
               for k, v in targets.items()}
    env = environment_info()
    out = {
        "benchmark": "sam_latency", "img_size": s, "batch": 1, "threads": args.threads, "rounds": args.rounds,
        "iters_per_round": args.iters, "quick": args.quick, "params": params, "macs": macs,
        "mobilesam": mobilesam_note, "onnx_notes": onnx_notes, "setup_s": setup_s,
        "results": {k: v.to_dict() for k, v in res.items()}, "ratios": ratios, "targets": targets,
        "environment": env,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"SAM image encoders @ {s}x{s}, batch 1, {args.threads} threads, {args.rounds}x{args.iters} interleaved; "
          f"load {env.get('loadavg_1m_5m_15m')}")
    print(f"CPU: {env.get('cpu_model', env.get('processor'))}; ISA flags: {env.get('cpu_flags')}")
    print(f"| {'candidate':<42} | {'params':>7} | {'GMACs':>6} | {'median ms':>10} | {'p90 ms':>10} |")
    print(f"|{'-' * 44}|{'-' * 9}|{'-' * 8}|{'-' * 12}|{'-' * 12}|")
    for k, v in res.items():
        name = next((n for n in params if k.startswith(n + " (")), None)
        ps = f"{params[name] / 1e6:.1f}M" if name else "-"
        ms = f"{macs[name] / 1e9:.1f}" if name in macs else "-"
        print(f"| {k:<42} | {ps:>7} | {ms:>6} | {v.median_ms:>10.1f} | {v.p90_ms:>10.1f} |")
    for k, r in ratios.items():
        print(f"{k}: {r:.2f}x")
    for k, t in targets.items():
        verdict = "not measured" if t is None else f"{t['ratio']:.1f}x ({'met' if t['met'] else 'NOT met'})"
        print(f"target {k}: {verdict}")
    print(f"MobileSAM: {mobilesam_note}")
    for k, n in onnx_notes.items():
        print(f"{k}: {n}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
