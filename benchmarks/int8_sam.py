"""INT8 for the SAM image encoder: this CPU's INT8 plan (:func:`repvit.deploy.int8_mode.int8_plan`) applied to the
fused EdgeSAM (or RepViT-SAM) encoder's ONNX export, against FP32: embedding cosine similarity, mask IoU and latency,
interleaved.

Mask IoU: on each evaluation image, a 3 x 3 grid of single-point prompts goes through the model's own prompt encoder
and mask decoder (FP32, PyTorch) on the FP32 and on the INT8 embedding; the best-scoring of SAM's three candidates is
thresholded at 0 on the 256 x 256 low-resolution logits, and the IoU of the two masks is reported per prompt (target:
>= 0.95 on real photos; prompts whose FP32 mask is empty are left out, and counted).

With ``--checkpoint`` (the published ``edge_sam`` weights, a file) the figures are those of the real model. Without
one the model has random weights: the cosine and the IoU then only show that quantization does not break the graph,
not what INT8 costs the masks. Calibration and evaluation images are scikit-image's sample photos resized where
scikit-image is installed, else random noise.

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


def _mask_ious(sam: torch.nn.Module, fp32: np.ndarray, int8: np.ndarray, size: int) -> tuple[list[float], int]:
    """IoUs of the FP32 and INT8 embeddings' masks for a 3 x 3 grid of single-point prompts (see the module doc), and
    how many prompts were left out because the FP32 mask was empty."""
    ious, empty = [], 0
    pe = sam.prompt_encoder.get_dense_pe()
    for y in (0.25, 0.5, 0.75):
        for x in (0.25, 0.5, 0.75):
            pts = (torch.tensor([[[x * size, y * size]]]), torch.ones(1, 1, dtype=torch.int))
            sparse, dense = sam.prompt_encoder(points=pts, boxes=None, masks=None)
            masks = []
            for emb in (fp32, int8):
                low, iou = sam.mask_decoder(image_embeddings=torch.from_numpy(emb), image_pe=pe,
                                            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                            multimask_output=True)
                masks.append((low[0, int(torch.argmax(iou[0]))] > 0).numpy())
            if not masks[0].any():
                empty += 1
                continue
            ious.append(float((masks[0] & masks[1]).sum() / (masks[0] | masks[1]).sum()))
    return ious, empty


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
                           img_size=args.img_size).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "enc.onnx"
        export_encoder_onnx(sam, path)
        fp32 = path.read_bytes()
    choice = resolve_int8_mode("auto")
    int8 = quantize_onnx_bytes(fp32, _images(4, args.img_size, seed=1), int8_mode=choice)
    s32, s8 = (make_session(d, threads=args.threads, spinning=False) for d in (fp32, int8))
    cos, ious, empty = [], [], 0
    for x in _images(8, args.img_size, seed=2):
        e32, e8 = (s.run(None, {"image": x})[0] for s in (s32, s8))
        a, b = e32.reshape(-1).astype(np.float64), e8.reshape(-1).astype(np.float64)
        cos.append(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))))
        with torch.inference_mode():
            found, n_empty = _mask_ious(sam, e32, e8, args.img_size)
        ious += found
        empty += n_empty
    x = _images(1, args.img_size, seed=3)[0]
    lat = interleaved_latency({"fp32": lambda: s32.run(None, {"image": x}), "int8": lambda: s8.run(None, {"image": x})},
                              rounds=args.rounds, iters_per_round=3, warmup=2, threads=args.threads)
    out = {"environment": environment_info(), "settings": vars(args), "int8": choice.to_dict(),
           "weights": args.checkpoint or "random: cosine shows the graph is intact, not mask "
           "quality", "embedding_cosine": cos,
           "mask_iou": {"per_prompt": ious, "min": min(ious, default=float("nan")),
                        "mean": float(np.mean(ious)) if ious else float("nan"),
                        "share_at_least_0_95": float(np.mean([v >= 0.95 for v in ious])) if ious else float("nan"),
                        "prompts_with_empty_fp32_mask": empty},
           "latency": {k: v.to_dict() for k, v in lat.items()},
           "int8_speedup": lat["fp32"].median_ms / lat["int8"].median_ms}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, default=str))
    print(f"{args.variant} encoder @{args.img_size}, weights {args.checkpoint or 'random'}, plan {choice.plan.name}, "
          f"{args.threads} threads: embedding cosine min {min(cos):.4f} mean {np.mean(cos):.4f}; mask IoU min "
          f"{out['mask_iou']['min']:.4f} mean {out['mask_iou']['mean']:.4f}, "
          f"{100 * out['mask_iou']['share_at_least_0_95']:.0f}% of {len(ious)} prompts >= 0.95 ({empty} left out: "
          f"empty FP32 mask); FP32 "
          f"{lat['fp32'].median_ms:.1f} ms, INT8 {lat['int8'].median_ms:.1f} ms ({out['int8_speedup']:.2f}x)")
    return out


if __name__ == "__main__":
    main()
