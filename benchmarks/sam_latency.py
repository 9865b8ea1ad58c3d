"""RepViT-SAM latency on the CPU: the image encoder at 1024 x 1024, batch 1, against SAM's ViT-B encoder and
MobileSAM's TinyViT, in eager PyTorch and ONNX Runtime, interleaved in one run; and SAM's mask decoder.

All weights are random (speed only). SAM ViT-B comes from ``segment_anything``; MobileSAM's TinyViT from the PyPI
package ``mobilesam-mirror`` (a packaging of the MobileSAM repository, module ``mobile_sam``) when it is installed.
Writes JSON and prints a table with ratios.

    python benchmarks/sam_latency.py [--threads 2] [--rounds 5] [--iters 2] [--no-onnx] [--no-mobilesam]
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import warnings
from pathlib import Path

import torch

from repvit.bench.latency import environment_info, interleaved_latency
from repvit.sam import build_repvit_sam


def _onnx_session(model: torch.nn.Module, x: torch.Tensor, path: Path, threads: int):
    """Export ``model`` (fixed shape) to ``path`` and return an ONNX Runtime session on ``threads`` threads."""
    from repvit.deploy.onnx_export import make_session

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, input_names=["image"],
                          output_names=["image_embeddings"], do_constant_folding=True)
    return make_session(path, threads=threads, level="all")


def _mobilesam_encoder():
    try:
        from mobile_sam import sam_model_registry
    except ImportError:
        return None, "not installed (pip install mobilesam-mirror)"
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
    ap.add_argument("--no-macs", action="store_true", help="skip counting MACs (one extra forward per encoder)")
    ap.add_argument("--out", default="benchmarks/results/sam_latency.json")
    args = ap.parse_args()
    torch.manual_seed(0)
    s = args.img_size
    x = torch.randn(1, 3, s, s)

    from segment_anything import sam_model_registry

    repvit_sam = build_repvit_sam(img_size=s)
    unfused = repvit_sam.image_encoder.eval()
    fused = copy.deepcopy(unfused).fuse()
    vit_b = sam_model_registry["vit_b"]().image_encoder.eval()
    encoders = {"RepViT-SAM M2.3 fused": fused, "RepViT-SAM M2.3 unfused": unfused, "SAM ViT-B": vit_b}
    mobilesam_note = "skipped (--no-mobilesam)"
    if not args.no_mobilesam:
        tiny, mobilesam_note = _mobilesam_encoder()
        if tiny is not None:
            encoders["MobileSAM TinyViT"] = tiny
    params = {k: sum(p.numel() for p in m.parameters()) for k, m in encoders.items()}
    macs = {}
    if not args.no_macs:
        from repvit.bench.complexity import count_macs

        macs = {k: count_macs(m, s) for k, m in encoders.items() if not k.endswith("unfused")}

    cands = {f"{k} (torch)": (lambda m=m: m(x)) for k, m in encoders.items()}
    onnx_notes: dict[str, str] = {}
    tmp = tempfile.TemporaryDirectory()
    if not args.no_onnx:
        for k, m in encoders.items():
            if k.endswith("unfused"):
                continue
            try:
                sess = _onnx_session(m, x, Path(tmp.name) / f"{len(cands)}.onnx", args.threads)
            except Exception as e:  # a model the exporter cannot handle: say so, keep the others
                onnx_notes[k] = f"ONNX export failed: {type(e).__name__}: {str(e)[:200]}"
                continue
            feed = {"image": x.numpy()}
            cands[f"{k} (onnxruntime)"] = lambda sess=sess, feed=feed: sess.run(None, feed)
    enc = interleaved_latency(cands, rounds=args.rounds, iters_per_round=args.iters, warmup=1,
                              threads=args.threads, settle_s=0.2)

    # the mask decoder (prompt encoder + two-way transformer + upscaling), one point, through SAM's ONNX wrapper
    from repvit.sam.export import _onnx_decoder, decoder_example_inputs

    dec = _onnx_decoder(repvit_sam, return_single_mask=True)
    inputs = decoder_example_inputs(repvit_sam, num_points=2)
    dcands = {"SAM mask decoder (torch)": lambda: dec(**inputs)}
    if not args.no_onnx:
        from repvit.deploy.onnx_export import make_session
        from repvit.sam.export import export_decoder_onnx, run_decoder_onnx

        export_decoder_onnx(repvit_sam, Path(tmp.name) / "decoder.onnx")
        dsess = make_session(Path(tmp.name) / "decoder.onnx", threads=args.threads, level="all")
        dcands["SAM mask decoder (onnxruntime)"] = lambda: run_decoder_onnx(dsess, inputs)
    decr = interleaved_latency(dcands, rounds=args.rounds, iters_per_round=10, warmup=3, threads=args.threads,
                               settle_s=0.2)
    tmp.cleanup()

    res = {**enc, **decr}
    ratios = {}
    for rt in ("torch", "onnxruntime"):
        ours = res.get(f"RepViT-SAM M2.3 fused ({rt})")
        for ref in ("SAM ViT-B", "MobileSAM TinyViT"):
            other = res.get(f"{ref} ({rt})")
            if ours and other:
                ratios[f"{ref} / RepViT-SAM fused ({rt})"] = other.median_ms / ours.median_ms
    if "RepViT-SAM M2.3 unfused (torch)" in res:
        ratios["unfused / fused (torch)"] = (res["RepViT-SAM M2.3 unfused (torch)"].median_ms
                                             / res["RepViT-SAM M2.3 fused (torch)"].median_ms)
    out = {
        "benchmark": "sam_latency", "img_size": s, "batch": 1, "threads": args.threads, "rounds": args.rounds,
        "iters_per_round": args.iters, "params": params, "macs": macs, "mobilesam": mobilesam_note,
        "onnx_notes": onnx_notes,
        "results": {k: v.to_dict() for k, v in res.items()}, "ratios": ratios, "environment": environment_info(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"SAM image encoders @ {s}x{s}, batch 1, {args.threads} threads, {args.rounds}x{args.iters} interleaved; "
          f"load {out['environment']['loadavg_1m_5m_15m']}")
    print(f"| {'candidate':<38} | {'params':>7} | {'GMACs':>6} | {'median ms':>10} | {'p90 ms':>10} |")
    print(f"|{'-' * 40}|{'-' * 9}|{'-' * 8}|{'-' * 12}|{'-' * 12}|")
    for k, v in res.items():
        name = next((n for n in params if k.startswith(n + " (")), None)
        ps = f"{params[name] / 1e6:.1f}M" if name else "-"
        ms = f"{macs[name] / 1e9:.0f}" if name in macs else "-"
        print(f"| {k:<38} | {ps:>7} | {ms:>6} | {v.median_ms:>10.1f} | {v.p90_ms:>10.1f} |")
    for k, r in ratios.items():
        print(f"{k}: {r:.2f}x")
    print(f"MobileSAM: {mobilesam_note}")
    for k, n in onnx_notes.items():
        print(f"{k}: {n}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
