"""Phase 2 (EdgeSAM's prompt-in-the-loop distillation) against phase 1 alone at the same number of steps.

Three students from the same seed, all scored on the same held-out images and the same fixed prompts (boxes and
points drawn from the teacher's masks) by :func:`repvit.sam_distill.evaluate_prompt_distill`:

* ``phase1_K``: phase 1 (embedding MSE) for K steps, paired with the teacher's prompt encoder and mask decoder;
* ``phase1_2K``: phase 1 for 2K steps (same pairing);
* ``phase1_K+phase2_K``: phase 1 for K steps, then phase 2 for K steps from it (``repvit sam distill --phase both``);
* optionally ``phase1_K+phase2_K_frozen_decoder`` (``--with-frozen-decoder``): phase 2 training only the encoder.

The held-out mask loss is EdgeSAM's (5 BCE + 5 Dice against ``teacher logits > 0``, all four mask outputs), mIoU the
IoU of the student's and the teacher's best masks. Images: crops of scikit-image's photos (astronaut, chelsea,
coffee, rocket, immunohistochemistry, hubble_deep_field, retina, colorwheel); the held-out crops come from the same
photos. Teacher: SAM's ViT-B image encoder architecture (``segment_anything.modeling.ImageEncoderViT``, 12 blocks,
width 768, windows 14, global attention in blocks 2/5/8/11) with SAM's prompt encoder and mask decoder, random
weights from a fixed seed (no SAM weights can be downloaded here). Student: RepViT-M0.9-SAM from random weights.

    python benchmarks/sam_prompt_distill.py [--steps K] [--img-size 128] [--images 40] [--out results.json]
    python benchmarks/sam_prompt_distill.py --smoke      # the smallest setting, seconds to a minute
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "retina",
          "colorwheel")


def make_crops(root: Path, n: int, long_side: int, seed: int = 0) -> Path:
    """``n`` random crops (40-100% of the shorter side, aspect 0.6-1.6) of scikit-image's photos, resized so the
    longer side is ``long_side``."""
    import skimage.data
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    photos = [getattr(skimage.data, name)() for name in PHOTOS]
    for i in range(n):
        img = photos[i % len(photos)]
        h, w = img.shape[:2]
        side = rng.uniform(0.4, 1.0) * min(h, w)
        aspect = rng.uniform(0.6, 1.6)
        ch, cw = int(min(h, side)), int(min(w, side * aspect))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = Image.fromarray(img[y:y + ch, x:x + cw])
        s = long_side / max(ch, cw)
        crop.resize((max(1, round(cw * s)), max(1, round(ch * s))), Image.BILINEAR).save(root / f"crop{i:03d}.png")
    return root


def vit_b_teacher(img_size: int, seed: int = 0) -> torch.nn.Module:
    """SAM ViT-B's architecture at ``img_size`` with SAM's prompt encoder and mask decoder, random weights."""
    from functools import partial

    from segment_anything.modeling import ImageEncoderViT

    from repvit.sam import build_sam_from_encoder

    torch.manual_seed(seed)
    enc = ImageEncoderViT(img_size=img_size, patch_size=16, embed_dim=768, depth=12, num_heads=12, mlp_ratio=4,
                          out_chans=256, qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
                          use_rel_pos=True, window_size=14, global_attn_indexes=(2, 5, 8, 11))
    return build_sam_from_encoder(enc).eval()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=40, help="K: phase-1 steps before phase 2, and phase-2 steps")
    p.add_argument("--img-size", type=int, default=128)
    p.add_argument("--images", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr1", type=float, default=3e-3, help="phase 1 learning rate (absolute)")
    p.add_argument("--lr2", type=float, default=1e-3, help="phase 2 learning rate (absolute)")
    p.add_argument("--max-prompts", type=int, default=8)
    p.add_argument("--eval-prompts", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--with-frozen-decoder", action="store_true", help="also phase 2 with the mask decoder frozen")
    p.add_argument("--smoke", action="store_true", help="the smallest setting (8 images at 64 px, 2 steps)")
    p.add_argument("--work-dir", help="keep runs here (default: a temporary folder)")
    p.add_argument("--out", default="benchmarks/results/sam_prompt_distill.json")
    args = p.parse_args(argv)
    if args.smoke:
        args.steps, args.img_size, args.images, args.max_prompts, args.eval_prompts = 2, 64, 8, 2, 2
        args.batch_size = 2
    torch.set_num_threads(args.threads)

    from repvit.bench.latency import environment_info
    from repvit.sam_distill import SamDistillConfig, evaluate_prompt_distill, train

    tmp = tempfile.TemporaryDirectory() if not args.work_dir else None
    work = Path(args.work_dir or tmp.name)
    images = make_crops(work / "images", args.images, long_side=int(args.img_size * 1.25), seed=args.seed)
    teacher = vit_b_teacher(args.img_size)
    k = args.steps
    base = SamDistillConfig(
        model="repvit_m0_9", data=str(images), img_size=args.img_size, batch_size=args.batch_size,
        lr_base_batch=args.batch_size, lr=args.lr1, cache_dir=str(work / "cache"), cache_dtype="float32",
        shard_size=16, val_fraction=0.2, warmup_epochs=0, tensorboard=False, plot=False, progress=False,
        workers=0, seed=args.seed, threads=args.threads, device=args.device, max_prompts=args.max_prompts,
        eval_prompts=args.eval_prompts, eval_every=10_000, min_lr=0.0)

    def run(name: str, cfg: SamDistillConfig) -> tuple[dict, float]:
        t0 = time.perf_counter()
        res = train(cfg, teacher)
        return res, time.perf_counter() - t0

    rows: dict[str, dict] = {}

    def score(name: str, checkpoint: str | None, steps: dict[str, int], seconds: float) -> None:
        ev = evaluate_prompt_distill(base, checkpoint, teacher, device=args.device)
        rows[name] = {"steps": steps, "train_s": round(seconds, 1), "mask_loss": ev["mask_loss"], "bce": ev["bce"],
                      "dice": ev["dice"], "miou": ev["miou"], "embedding_mse": ev["mse"],
                      "held_out_images": ev["images"]}
        print(f"{name:34s} mask loss {ev['mask_loss']:.4f}  mIoU {ev['miou']:.3f}  emb MSE {ev['mse']:.4f}  "
              f"({seconds:.0f} s)", file=sys.stderr, flush=True)

    score("untrained student", None, {"phase1": 0}, 0.0)  # for scale
    r1, s1 = run("p1_K", base.replace(output_dir=str(work / "p1_K"), iters=k))
    score("phase1_K", r1["last_checkpoint"], {"phase1": k}, s1)
    r2, s2 = run("p1_2K", base.replace(output_dir=str(work / "p1_2K"), iters=2 * k))
    score("phase1_2K", r2["last_checkpoint"], {"phase1": 2 * k}, s2)
    p2 = base.replace(phase="prompt", iters=k, lr=args.lr2, init=r1["last_checkpoint"])
    r3, s3 = run("p1_K+p2_K", p2.replace(output_dir=str(work / "p2_K")))
    score("phase1_K+phase2_K", r3["last_checkpoint"], {"phase1": k, "phase2": k}, s1 + s3)
    if args.with_frozen_decoder:
        r4, s4 = run("frozen", p2.replace(output_dir=str(work / "p2_K_frozen"), train_decoder=False))
        score("phase1_K+phase2_K_frozen_decoder", r4["last_checkpoint"], {"phase1": k, "phase2": k}, s1 + s4)

    env = environment_info()  # CPU model, family/model numbers, ISA flags, library versions
    result = {
        "settings": {k_: v for k_, v in vars(args).items() if k_ not in ("out", "work_dir")},
        "teacher": "SAM ViT-B architecture, random weights (seed 0)", "student": "RepViT-M0.9-SAM, random init",
        "images": f"{args.images} crops of scikit-image photos ({r1['meta']['num_val']} held out)",
        "cpu": f"{env['cpu_model']} ({env['cpu_count']} CPUs)", "load_average": os.getloadavg(),
        "torch": torch.__version__, "environment": env, "rows": rows,
        "phase2_beats_phase1_2K": rows["phase1_K+phase2_K"]["mask_loss"] < rows["phase1_2K"]["mask_loss"],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(result, indent=1))
    os.replace(tmp_out, out)
    print("\n| student | steps | held-out mask loss (5 BCE + 5 Dice) | mIoU vs teacher | embedding MSE |\n"
          "|---|---|---|---|---|")
    for name, r in rows.items():
        st = " + ".join(f"{v} {n}" for n, v in r["steps"].items())
        print(f"| {name} | {st} | {r['mask_loss']:.4f} | {r['miou']:.3f} | {r['embedding_mse']:.4f} |")
    print(f"\nwritten {out}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
