"""Per backend: our fused RepViT against timm's reparameterized RepViT with the same weights and the same backend.

Both models get timm's random-init weights (ours loads timm's state dict, then fuses; timm's goes through
``timm.utils.model.reparameterize_model``), their outputs are checked to agree, and every (model, backend) pair is
timed interleaved in one run at batch 1 with pinned threads. Writes JSON (with each candidate's preparation time)
and prints a table with ours / timm.

By default it runs every CPU backend: eager, channels_last, compile (torch.compile / inductor), torchscript,
onnxruntime, onnxruntime-int8 and openvino (OpenVINO's CPU plugin on the same ONNX export, f32). Backends whose
packages are missing are reported and skipped. Preparing ``compile`` dominates the run's set-up (about 30 s for the
two models on a 2-core machine, more with a cold inductor cache); leave it out with ``--backends`` for a quicker run.

    python benchmarks/backends_vs_timm.py --out benchmarks/results/backends_vs_timm.json
    python benchmarks/backends_vs_timm.py --backends eager,onnxruntime,openvino
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import torch

DEFAULT = "eager,channels_last,compile,torchscript,onnxruntime,onnxruntime-int8,openvino"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="repvit_m0_9")
    p.add_argument("--backends", default=DEFAULT, help=f"comma-separated (default {DEFAULT})")
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--out", default="benchmarks/results/backends_vs_timm.json")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")

    import timm
    from timm.utils.model import reparameterize_model

    import repvit
    from repvit.bench.backends import prepare_backend
    from repvit.bench.latency import environment_info, interleaved_latency

    torch.manual_seed(0)
    timm_train = timm.create_model(args.model, pretrained=False).eval()
    ours = repvit.create_model(args.model, checkpoint=timm_train.state_dict(), fused=True).eval()
    theirs = reparameterize_model(timm_train).eval()
    x = torch.randn(1, 3, args.img_size, args.img_size)
    with torch.no_grad():
        a, b = ours(x), theirs(x)
    agree = float((a - b).abs().max() / b.abs().max())
    calib = [torch.randn(8, 3, args.img_size, args.img_size).numpy() for _ in range(2)]

    cands, errors, prepare_s = {}, {}, {}
    for backend in [s.strip() for s in args.backends.split(",") if s.strip()]:
        for who, model in (("ours", ours), ("timm", theirs)):
            t0 = time.perf_counter()
            try:
                cands[f"{who}|{backend}"] = prepare_backend(model, backend, x, threads=args.threads,
                                                            calib=calib if backend.endswith("int8") else None)
            except Exception as e:  # noqa: BLE001 - report any backend failure and go on
                errors[f"{who}|{backend}"] = f"{type(e).__name__}: {e}"
            prepare_s[f"{who}|{backend}"] = round(time.perf_counter() - t0, 2)
    res = interleaved_latency(cands, rounds=args.rounds, iters_per_round=args.iters, warmup=args.warmup,
                              threads=args.threads)
    rows = []
    for backend in dict.fromkeys(k.split("|")[1] for k in res):
        o, t = res.get(f"ours|{backend}"), res.get(f"timm|{backend}")
        if o is None or t is None:
            continue
        rows.append({"backend": backend, "ours_ms": o.median_ms, "ours_p90_ms": o.p90_ms, "timm_ms": t.median_ms,
                     "timm_p90_ms": t.p90_ms, "ours_over_timm": o.median_ms / t.median_ms})
    out = {"environment": environment_info(), "settings": vars(args), "max_rel_diff_ours_vs_timm": agree,
           "rows": rows, "errors": errors, "prepare_s": prepare_s}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"{args.model} @{args.img_size}, batch 1, {args.threads} threads; outputs agree to {agree:.1e} (relative)")
    print("| backend | ours median ms | ours p90 | timm median ms | timm p90 | ours / timm |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['backend']} | {r['ours_ms']:.2f} | {r['ours_p90_ms']:.2f} | {r['timm_ms']:.2f} | "
              f"{r['timm_p90_ms']:.2f} | {r['ours_over_timm']:.3f} |")
    for k, v in errors.items():
        print(f"skipped {k}: {v}")
    return out


if __name__ == "__main__":
    main()
