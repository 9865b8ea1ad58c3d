"""A click in the SAM app against this machine's compute bound: the server time from a click to the mask PNG and
the overlay (what the app's handler does: ``SamSession.segment`` on the cached embedding, ``mask_overlay``,
``save_png``), after the first encode, with EdgeSAM's decoder (random weights: speed only) on a 1024 x 768 photo.

Interleaved in one run: the click; its overlay + PNG alone, and on an elliptic mask (random weights decode a
fragmented mask, which costs PNG compression more than a real object's outline); the same click with
segment-anything's own decoder path (``MaskDecoder`` on the embedding, the chosen mask through
``Sam.postprocess_masks``: the session's decode before :class:`repvit.sam.click.ClickDecoder`); the decode alone
both ways, with the per-click part exported to ONNX Runtime (``SamSession(runtime="onnxruntime")``), through
``SamPredictor.predict`` and through segment-anything's ONNX decoder (``SamOnnxModel``) in ONNX Runtime; and a
1024^3 ``torch.mm``. FLOPs per click are counted with ``torch.utils.flop_counter.FlopCounterMode`` on the per-click
path (after the per-image part); the bound is ``flops / rate`` with the best sgemm rate of this run (``torch.mm``
here, OpenBLAS in its own process first, :mod:`repvit.bench.compute_bound`). Targets: click / bound <= 1.25 and
click <= 30 ms. Writes JSON and prints a table with ratios, the CPU model and its ISA flags.

    python benchmarks/sam_click.py [--threads 2] [--rounds 5] [--iters 4] [--quick]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from repvit.bench.compute_bound import best_rate, openblas_sgemm_probe, sgemm_callable, sgemm_flops
from repvit.bench.latency import environment_info, interleaved_latency, thread_count
from repvit.sam import build_repvit_sam
from repvit.sam.predict import mask_overlay, save_png
from repvit.sam.session import ImageEmbedding, SamSession

CLICK = "click: segment + overlay + PNG"
CLICK_OLD = "click, segment-anything's decoder"
DECODE = "decode (ClickDecoder)"
DECODE_OLD = "decode (MaskDecoder + postprocess)"
PREDICT = "decode (SamPredictor.predict)"
OVERLAY = "overlay + PNG, the decoded mask"
OVERLAY_BLOB = "overlay + PNG, an ellipse (a real mask)"
DECODE_ORT = "decode (ClickDecoder in onnxruntime)"
SAM_ONNX = "SAM's ONNX decoder (onnxruntime)"
SGEMM = "sgemm 1024 (torch.mm)"


def old_decode(session: SamSession, emb: ImageEmbedding, points, multimask: bool = True) -> tuple[np.ndarray, float]:
    """The reference: segment-anything's prompt encoder and ``MaskDecoder`` on the embedding, the chosen mask
    through ``Sam.postprocess_masks`` (one point; SamPredictor's coordinate transform)."""
    sam = session.sam
    with torch.inference_mode():
        tr = session.predictor_for(emb).transform
        coords = tr.apply_coords(np.array([[p[0], p[1]] for p in points], np.float32), emb.original_size)
        pts = (torch.as_tensor(coords)[None], torch.as_tensor([[p[2] for p in points]], dtype=torch.int))
        sparse, dense = sam.prompt_encoder(points=pts, boxes=None, masks=None)
        low, iou = sam.mask_decoder(image_embeddings=emb.features, image_pe=sam.prompt_encoder.get_dense_pe(),
                                    sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                    multimask_output=multimask)
        best = int(torch.argmax(iou[0]))
        up = sam.postprocess_masks(low[:, best:best + 1], emb.input_size, emb.original_size)
        return (up[0, 0] > sam.mask_threshold).numpy(), float(iou[0, best])


def _sam_onnx_decoder(sam: torch.nn.Module, path: Path, threads: int):
    """segment-anything's ONNX decoder (``SamOnnxModel``: prompt encoder, decoder, one mask up-sampled to the image,
    here with a mask input) in ONNX Runtime on two points, the form SAM's own web demo runs per click."""
    from repvit.deploy.onnx_export import make_session
    from repvit.sam.export import decoder_example_inputs, export_decoder_onnx, run_decoder_onnx

    export_decoder_onnx(sam, path)
    sess = make_session(path, threads=threads, level="all")
    inputs = decoder_example_inputs(sam, num_points=2)
    return lambda: run_decoder_onnx(sess, inputs)


def count_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc, torch.inference_mode():
        fn()
    return int(fc.get_total_flops())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=4, help="clicks per candidate per round (rounds x iters timed)")
    ap.add_argument("--img-size", type=int, default=1024)
    ap.add_argument("--no-onnx", action="store_true", help="skip the per-click part in ONNX Runtime")
    ap.add_argument("--no-openblas", action="store_true", help="skip the OpenBLAS sgemm probe (own process)")
    ap.add_argument("--quick", action="store_true", help="smoke test: 256 px, 1 round of 1, no OpenBLAS probe")
    ap.add_argument("--out", default="benchmarks/results/sam_click.json")
    args = ap.parse_args()
    if args.quick:
        args.img_size, args.rounds, args.iters, args.no_openblas = 256, 1, 1, True
        if args.out == ap.get_default("out"):
            args.out = str(Path(tempfile.gettempdir()) / "sam_click_quick.json")
    probes: dict[str, dict] = {}
    if not args.no_openblas:  # first, in its own process: OpenBLAS's spinning threads would slow what follows
        try:
            probes["openblas (numpy)"] = openblas_sgemm_probe(threads=args.threads)
        except Exception as e:  # keep the in-process probe
            probes["openblas (numpy)"] = {"error": f"{type(e).__name__}: {str(e)[:200]}"}

    torch.manual_seed(0)
    s = args.img_size
    sam = build_repvit_sam(variant="edge_sam", img_size=s, fused=True).eval()
    session = SamSession(sam)
    image = np.random.default_rng(0).integers(0, 256, (s * 3 // 4, s, 3), dtype=np.uint8)
    key = "benchmark"
    emb, _ = session.embed(image, key)
    point = [(s * 0.45, s * 0.3, 1)]  # one point: three candidates, the best-scoring kept
    out_dir = Path(tempfile.mkdtemp(prefix="sam_click_"))
    png = out_dir / "mask.png"

    def click() -> None:
        res = session.segment(image, point, key=key)
        mask_overlay(image, res.mask, point)
        save_png(res.mask, png)

    def click_old() -> None:
        mask, _ = old_decode(session, emb, point)
        mask_overlay(image, mask, point)
        save_png(mask, png)

    mask_now, _ = session.decode(emb, point)
    yy, xx = np.mgrid[:image.shape[0], :image.shape[1]]
    ellipse = ((yy - point[0][1]) / (s * 0.2)) ** 2 + ((xx - point[0][0]) / (s * 0.3)) ** 2 < 1

    def overlay(mask: np.ndarray) -> None:
        mask_overlay(image, mask, point)
        save_png(mask, png)

    def predict() -> None:
        session.predictor_for(emb).predict(np.array([point[0][:2]], np.float32), np.array([1]), multimask_output=True)

    sgemm, sgemm_flop = sgemm_callable(1024)
    cands = {CLICK: click, CLICK_OLD: click_old, DECODE: lambda: session.decode(emb, point),
             DECODE_OLD: lambda: old_decode(session, emb, point), PREDICT: predict, SGEMM: sgemm,
             OVERLAY: lambda: overlay(mask_now), OVERLAY_BLOB: lambda: overlay(ellipse)}
    with torch.inference_mode():  # the same mask both ways, before timing
        new_mask, new_iou = session.decode(emb, point)
        ref_mask, ref_iou = old_decode(session, emb, point)
    inter = np.logical_and(new_mask, ref_mask).sum()
    union = np.logical_or(new_mask, ref_mask).sum()
    parity = {"iou_vs_segment_anything": float(inter / union) if union else 1.0,
              "predicted_iou_abs_diff": abs(new_iou - ref_iou)}

    onnx_note = "skipped (--no-onnx)"
    if not args.no_onnx:
        ort_session = SamSession(sam, runtime="onnxruntime")  # on the same embedding and context
        try:
            with torch.inference_mode(), thread_count(args.threads):
                ort_mask, ort_iou = ort_session.decode(emb, point)
            cands[DECODE_ORT] = lambda: ort_session.decode(emb, point)
            onnx_note = (f"mask agreement with torch {np.mean(ort_mask == new_mask):.6f}, "
                         f"IoU difference {abs(ort_iou - new_iou):.1e}")
        except Exception as e:  # report, keep the other results
            onnx_note = f"export failed: {type(e).__name__}: {str(e)[:200]}"
        cands[SAM_ONNX] = _sam_onnx_decoder(sam, out_dir / "decoder.onnx", args.threads)

    t0 = time.perf_counter()
    res = interleaved_latency(cands, rounds=args.rounds, iters_per_round=args.iters, warmup=2, threads=args.threads,
                              settle_s=0.0 if args.no_onnx else 0.05)
    time_s = time.perf_counter() - t0
    with torch.inference_mode():  # the flop counts and the parts of a click, outside the timed rounds
        flops = {"click": count_flops(lambda: session.decode(emb, point)),
                 "old_click": count_flops(lambda: old_decode(session, emb, point)),
                 "per_image": count_flops(lambda: session.clicks.prepare(emb.features))}
    probes[SGEMM] = {"library": "mkl (torch.mm)", "threads": args.threads, "median_ms": res[SGEMM].median_ms,
                     "gflops": sgemm_flops(res[SGEMM].median_ms, sgemm_flop) / 1e9,
                     "best_gflops": sgemm_flops(res[SGEMM].min_ms, sgemm_flop) / 1e9, "process": "interleaved"}
    rate_name, rate = best_rate(probes)
    bound = flops["click"] / (rate["gflops"] * 1e9) * 1e3
    click_ms, decode_ms = res[CLICK].median_ms, res[DECODE].median_ms
    summary = {
        "flops_per_click": flops["click"], "flops_per_click_segment_anything": flops["old_click"],
        "flops_per_image_precompute": flops["per_image"], "sgemm_rate": rate_name, "sgemm_gflops": rate["gflops"],
        "bound_ms": bound, "click_ms": click_ms, "decode_ms": decode_ms,
        "click_over_bound": click_ms / bound, "decode_over_bound": decode_ms / bound,
        "click_old_over_click": res[CLICK_OLD].median_ms / click_ms,
        "decode_old_over_decode": res[DECODE_OLD].median_ms / decode_ms,
        "overlay_png_ms": res[OVERLAY].median_ms, "overlay_png_ellipse_ms": res[OVERLAY_BLOB].median_ms,
        "click_with_ellipse_ms": decode_ms + res[OVERLAY_BLOB].median_ms,
        "decoded_mask": {"area_fraction": float(mask_now.mean()),
                         "row_transitions": int(np.count_nonzero(np.diff(mask_now, axis=1)))},
        "sam_onnx_decoder_over_decode": (res[SAM_ONNX].median_ms / decode_ms if SAM_ONNX in res else None),
        "onnxruntime_over_torch_decode": (res[DECODE_ORT].median_ms / decode_ms if DECODE_ORT in res else None),
        "target_ratio_1_25_met": click_ms / bound <= 1.25, "target_30_ms_met": click_ms <= 30.0,
    }
    env = environment_info()
    out = {"benchmark": "sam_click", "model": "edge_sam (fused, random weights)", "img_size": s,
           "image": list(image.shape), "prompt": "one point, multimask (best of three)", "threads": args.threads,
           "rounds": args.rounds, "iters_per_round": args.iters, "quick": args.quick, "time_s": time_s,
           "results": {k: v.to_dict() for k, v in res.items()}, "sgemm_probes": probes, "parity": parity,
           "onnx": onnx_note, "summary": summary, "environment": env}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))

    print(f"SAM click on a {image.shape[1]} x {image.shape[0]} image (encoder input {s}), {args.threads} threads, "
          f"{args.rounds}x{args.iters} interleaved; load {env.get('loadavg_1m_5m_15m')}")
    print(f"CPU: {env.get('cpu_model', env.get('processor'))}; ISA flags: {env.get('cpu_flags')}")
    print(f"| {'candidate':<40} | {'median ms':>10} | {'p90 ms':>8} | {'min ms':>8} |")
    print(f"|{'-' * 42}|{'-' * 12}|{'-' * 10}|{'-' * 10}|")
    for k, v in res.items():
        print(f"| {k:<40} | {v.median_ms:>10.2f} | {v.p90_ms:>8.2f} | {v.min_ms:>8.2f} |")
    print(f"GFLOP per click: {flops['click'] / 1e9:.3f} (segment-anything's decoder: {flops['old_click'] / 1e9:.3f}; "
          f"once per image: {flops['per_image'] / 1e9:.3f})")
    print(f"sgemm: {rate['gflops']:.1f} GFLOP/s ({rate_name}); bound {bound:.2f} ms")
    print(f"click / bound {summary['click_over_bound']:.2f} (target <= 1.25: "
          f"{'met' if summary['target_ratio_1_25_met'] else 'NOT met'}); decode / bound "
          f"{summary['decode_over_bound']:.2f}; click {click_ms:.1f} ms (target <= 30 ms: "
          f"{'met' if summary['target_30_ms_met'] else 'NOT met'})")
    print(f"the decoded mask (random weights) covers {mask_now.mean():.0%} of the image in fragments; with an "
          f"ellipse's overlay + PNG a click would take {summary['click_with_ellipse_ms']:.1f} ms")
    print(f"old / new: click {summary['click_old_over_click']:.2f}x, decode {summary['decode_old_over_decode']:.2f}x; "
          f"mask IoU vs segment-anything {parity['iou_vs_segment_anything']:.5f}")
    if summary["onnxruntime_over_torch_decode"] is not None:
        print(f"decode, onnxruntime / torch: {summary['onnxruntime_over_torch_decode']:.2f}x; SAM's ONNX decoder / "
              f"decode: {summary['sam_onnx_decoder_over_decode']:.2f}x")
    print(f"onnx: {onnx_note}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
