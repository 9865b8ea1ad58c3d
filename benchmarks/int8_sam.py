"""INT8 for the SAM image encoder: this CPU's INT8 plan (:func:`repvit.deploy.int8_mode.int8_plan`) applied to the
fused EdgeSAM (or RepViT-SAM) encoder's ONNX export, against FP32: embedding cosine similarity and latency, interleaved.

With ``--checkpoint`` (the published ``edge_sam`` weights, a file) the cosine is that of the real model. Without one
the encoder has random weights: the cosine then only shows that quantization
does not break the graph, not what INT8 costs the masks. Calibration and evaluation images are random crops of
scikit-image's sample photos where scikit-image is installed, else random noise.

    python benchmarks/int8_sam.py --img-size 512                   # random-weight EdgeSAM encoder
    python benchmarks/int8_sam.py --checkpoint edge_sam.pth --img-size 1024
"""

from __future__ import annotations

import argparse
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch


def _images(n: int, size: int, seed: int) -> list[np.ndarray]:
    """``n`` normalized (1, 3, size, size) inputs: scikit-image photos resized, else random noise."""
    from repvit.sam.preprocess import sam_pixel_stats

    g = np.random.default_rng(seed)
    try:
        from skimage import data as skd

        photos = [skd.astronaut(), skd.coffee(), skd.chelsea(), skd.rocket()]
    except ImportError:
        photos = []
    mean, std = (np.asarray(v, dtype=np.float32).reshape(1, 3, 1, 1) for v in sam_pixel_stats())
    out = []
    for i in range(n):
        if photos:
            t = torch.from_numpy(photos[i % len(photos)]).permute(2, 0, 1)[None].float()
            t = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", align_corners=False).numpy()
            t = t[..., :, ::-1] if i >= len(photos) else t  # flipped copies past the first round
        else:
            t = g.uniform(0, 255, (1, 3, size, size)).astype(np.float32)
        out.append(np.ascontiguousarray((t - mean) / std, dtype=np.float32))
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", default="edge_sam")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--img-size", type=int, default=512)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--out", default="benchmarks/results/int8_sam.json")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")

    from repvit.bench.latency import environment_info, interleaved_latency
    from repvit.deploy.int8_mode import resolve_int8_mode
    from repvit.deploy.onnx_export import make_session
    from repvit.deploy.quantize import quantize_onnx_bytes
    from repvit.sam.export import export_encoder_onnx
    from repvit.sam.model import build_repvit_sam

    torch.manual_seed(0)
    sam = build_repvit_sam(args.checkpoint, variant=None if args.checkpoint else args.variant,
                           img_size=args.img_size)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "enc.onnx"
        export_encoder_onnx(sam, path)
        fp32 = path.read_bytes()
    choice = resolve_int8_mode("auto")
    int8 = quantize_onnx_bytes(fp32, _images(4, args.img_size, seed=1), int8_mode=choice)
    s32, s8 = (make_session(d, threads=args.threads, spinning=False) for d in (fp32, int8))
    cos = []
    for x in _images(8, args.img_size, seed=2):
        a, b = (s.run(None, {"image": x})[0].reshape(-1).astype(np.float64) for s in (s32, s8))
        cos.append(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))))
    x = _images(1, args.img_size, seed=3)[0]
    lat = interleaved_latency({"fp32": lambda: s32.run(None, {"image": x}), "int8": lambda: s8.run(None, {"image": x})},
                              rounds=args.rounds, iters_per_round=3, warmup=2, threads=args.threads)
    out = {"environment": environment_info(), "settings": vars(args), "int8": choice.to_dict(),
           "weights": args.checkpoint or "random: cosine shows the graph is intact, not mask "
           "quality", "embedding_cosine": cos, "latency": {k: v.to_dict() for k, v in lat.items()},
           "int8_speedup": lat["fp32"].median_ms / lat["int8"].median_ms}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, default=str))
    print(f"{args.variant} encoder @{args.img_size}, weights {args.checkpoint or 'random'}, plan {choice.plan.name}, "
          f"{args.threads} threads: embedding cosine min {min(cos):.4f} mean {np.mean(cos):.4f}; FP32 "
          f"{lat['fp32'].median_ms:.1f} ms, INT8 {lat['int8'].median_ms:.1f} ms ({out['int8_speedup']:.2f}x)")
    return out


if __name__ == "__main__":
    main()
