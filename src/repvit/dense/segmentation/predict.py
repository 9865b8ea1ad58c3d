"""Prediction on image files with a segmentation checkpoint (label PNG + coloured overlay PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from repvit.data import IMAGE_EXTENSIONS
from repvit.runtime import resolve_device

from .data import eval_transform

__all__ = ["predict_images", "palette"]


def palette(num_classes: int, background: bool) -> list[tuple[int, int, int]]:
    """Fixed, well-spread colours per class (golden-ratio hues); class 0 black when it is the background."""
    import colorsys

    cols = []
    for i in range(num_classes):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.85, 0.95)
        cols.append((int(r * 255), int(g * 255), int(b * 255)))
    if background and cols:
        cols[0] = (0, 0, 0)
    return cols


def _image_files(source: str | Path) -> list[Path]:
    p = Path(source)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise FileNotFoundError(f"{p} holds no images ({', '.join(IMAGE_EXTENSIONS)}).")
        return files
    if not p.is_file():
        raise FileNotFoundError(f"image {p} does not exist.")
    return [p]


@torch.no_grad()
def predict_images(checkpoint: str | Path, source: str | Path, output_dir: str | Path, *, device: str = "cpu",
                   alpha: float = 0.5) -> list[dict[str, Any]]:
    """Segment an image or every image of a folder; writes ``STEM_label.png`` (class index per pixel, uint8) and
    ``STEM_overlay.png`` (the image with the classes coloured) to ``output_dir``.

    ``checkpoint``: a ``repvit segment train`` checkpoint, or the authors' mmseg file or its published name
    (``repvit_m1_1_ade20k``; their images go through their test resize, ``AlignResize``).

    Returns one dict per image: ``image``, ``label_png``, ``overlay_png``, ``classes`` (names present, with pixel
    fractions).
    """
    from PIL import Image
    from torchvision.utils import draw_segmentation_masks

    from .authors import open_segmenter
    from .data import AlignResize, _read_image

    model, _, meta = open_segmenter(checkpoint)
    dev = resolve_device(device)
    model.to(dev)
    names = list(meta.get("class_names") or range(model.num_classes))
    has_bg = bool(names) and names[0] == "background"
    colors = palette(model.num_classes, has_bg)
    if meta["layout"] == "mmseg":  # the authors' test resize (as `segment eval` evaluates their files)
        tf = AlignResize((2048, 512), 32, mean=meta["mean"], std=meta["std"])
    else:
        tf = eval_transform(meta["config"].img_size, mean=meta.get("mean"), std=meta.get("std"))
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for f in _image_files(source):
        img = _read_image(f)
        x = tf(img)[None].to(dev)
        logits = F.interpolate(model(x), size=img.shape[-2:], mode="bilinear", align_corners=False)
        pred = logits[0].argmax(0).cpu()
        label_png, overlay_png = out_dir / f"{f.stem}_label.png", out_dir / f"{f.stem}_overlay.png"
        Image.fromarray(pred.numpy().astype(np.uint8)).save(label_png)
        shown = [c for c in range(model.num_classes) if not (has_bg and c == 0)]
        masks = torch.stack([pred == c for c in shown]) if shown else torch.zeros(0, *pred.shape, dtype=torch.bool)
        over = draw_segmentation_masks(img, masks, alpha=alpha, colors=[colors[c] for c in shown])
        Image.fromarray(over.permute(1, 2, 0).numpy()).save(overlay_png)
        counts = torch.bincount(pred.flatten(), minlength=model.num_classes).double() / pred.numel()
        results.append({"image": str(f), "label_png": str(label_png), "overlay_png": str(overlay_png),
                        "classes": {str(names[c]): round(float(counts[c]), 4) for c in range(len(counts))
                                    if counts[c] > 0}})
    return results
