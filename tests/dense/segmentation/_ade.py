"""A tiny folder in ADE20K's layout, written by the tests (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def make_ade_folder(root: Path, num_classes: int = 4, n_train: int = 12, n_val: int = 6, size=(48, 64),
                    seed: int = 0) -> Path:
    """Images with coloured rectangles; label PNGs with 0 ("other") around them and classes 1..num_classes inside.

    The image colour encodes the class, so a small model can learn it; some label pixels are 255 (ignored).
    """
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, size=(num_classes + 1, 3))
    for split, n in (("training", n_train), ("validation", n_val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "annotations" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            h, w = size if i % 2 == 0 else (size[0] + 8, size[1] - 8)
            lab = np.zeros((h, w), np.uint8)
            for _ in range(3):
                c = int(rng.integers(1, num_classes + 1))
                y, x = int(rng.integers(0, h - 12)), int(rng.integers(0, w - 12))
                lab[y:y + int(rng.integers(8, 24)), x:x + int(rng.integers(8, 24))] = c
            lab[:2, :] = 255
            img = colours[lab.clip(0, num_classes)] + rng.integers(-10, 10, size=(h, w, 3))
            Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(root / "images" / split / f"ADE_{i:04d}.jpg",
                                                                   quality=95)
            Image.fromarray(lab).save(root / "annotations" / split / f"ADE_{i:04d}.png")
    return root
