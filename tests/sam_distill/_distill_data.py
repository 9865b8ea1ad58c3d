"""Small data for the distillation tests: synthetic photos-like images and a tiny random SAM ViT teacher."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image


def make_images(root: Path, n: int, seed: int = 0, size: tuple[int, int] = (96, 160)) -> Path:
    """``n`` RGB images of random sizes: a colour gradient with a few filled discs."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        h, w = rng.integers(size[0], size[1], 2)
        yy, xx = np.mgrid[0:h, 0:w]
        a = np.zeros((h, w, 3)) + rng.uniform(0, 255, 3) * (xx / w)[..., None]
        for _ in range(4):
            cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(8, 40)
            a[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0, 255, 3)
        Image.fromarray(a.astype(np.uint8)).save(root / f"im{i:03d}.png")
    return root


def tiny_teacher(img_size: int, seed: int = 123) -> torch.nn.Module:
    """segment_anything's ViT image encoder, tiny and random, with SAM's output (256 x img_size/16 squared)."""
    from segment_anything.modeling import ImageEncoderViT

    torch.manual_seed(seed)
    return ImageEncoderViT(img_size=img_size, patch_size=16, embed_dim=64, depth=2, num_heads=2,
                           out_chans=256).eval()


def tiny_teacher_sam(img_size: int, seed: int = 123) -> torch.nn.Module:
    """A whole SAM teacher for prompt distillation: :func:`tiny_teacher`'s image encoder with SAM's prompt encoder
    and mask decoder (``segment_anything``'s modules, random but fixed weights)."""
    from repvit.sam import build_sam_from_encoder

    enc = tiny_teacher(img_size, seed)
    torch.manual_seed(seed + 1)
    return build_sam_from_encoder(enc).eval()
