"""Evaluation of a segmentation checkpoint and prediction on image files (label PNG + coloured overlay PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from repvit.data import is_digits
from repvit.runtime import resolve_device

from .data import IMAGE_SUFFIXES, eval_transform, segment_collate
from .task import build_segment_datasets, evaluate_segmenter, load_segmenter

__all__ = ["evaluate_checkpoint", "predict_images", "palette"]


def evaluate_checkpoint(checkpoint: str | Path, data: str | None = None, *, num_classes: int | None = None,
                        batch_size: int = 8, device: str = "cpu", use_ema: bool = False,
                        workers: int = 0) -> dict[str, Any]:
    """mIoU, pixel accuracy and per-class IoU of a checkpoint on ``data``'s held-out split (default: its own data).

    Returns ``miou``, ``pixel_acc`` (fractions), ``per_class_iou`` (list, None for absent classes), ``class_names``,
    ``images``, ``pixels`` and ``loss``.

    ``checkpoint`` may also be the authors' mmseg file (or its published name, e.g. ``repvit_m1_1_ade20k``): it is
    then evaluated with their test pipeline (:class:`~repvit.dense.segmentation.data.AlignResize`: short side 512
    keeping the ratio, both sides aligned to multiples of 32; whole image, one image at a time; logits resized
    back to the label size) on ``data`` (an ADE20K-layout folder, 150 classes, label 0 ignored).
    """
    from torch.utils.data import DataLoader

    from ..checkpoint import read_authors_checkpoint

    authors = read_authors_checkpoint(checkpoint, "mmseg")
    if authors is not None:
        return _evaluate_authors(authors, data, num_classes=num_classes, device=device, workers=workers)
    model, cfg, meta = load_segmenter(checkpoint, use_ema=use_ema)
    k = int(meta["num_classes"])
    if num_classes is not None and int(num_classes) != k:
        raise ValueError(f"--num-classes {num_classes} does not match {checkpoint}, which has {k} classes.")
    cfg = cfg.replace(data=data or cfg.data, num_classes=None if is_digits(data or cfg.data) else k)
    _, val, vmeta = build_segment_datasets(cfg, train=False)
    if vmeta["num_classes"] != k:
        raise ValueError(f"{checkpoint} has {k} classes but --data {cfg.data} has {vmeta['num_classes']}.")
    dev = resolve_device(device)
    loader = DataLoader(val, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=segment_collate)
    out = evaluate_segmenter(model.to(dev), loader, dev, k)
    out["class_names"] = list(meta.get("class_names") or vmeta["class_names"])
    return out


def _evaluate_authors(ckpt, data: str | None, *, num_classes: int | None, device: str,
                      workers: int) -> dict[str, Any]:
    from torch.utils.data import DataLoader

    from .authors import semantic_fpn_from_mmseg
    from .data import ADE20KSegmentation, AlignResize, SegmentationView

    model = semantic_fpn_from_mmseg(ckpt.state_dict, where=str(ckpt.path))
    k = model.num_classes
    if not data or str(data).strip().lower() == "digits":
        raise ValueError(f"{ckpt.path} is the authors' ADE20K model: pass --data with an ADE20K-layout folder "
                         "(images/validation, annotations/validation).")
    if num_classes is not None and int(num_classes) != k:
        raise ValueError(f"--num-classes {num_classes} does not match {ckpt.path}, which has {k} classes.")
    val = SegmentationView(ADE20KSegmentation(data, "validation", num_classes=k, reduce_zero_label=True),
                           AlignResize((2048, 512), 32), train=False)
    dev = resolve_device(device)
    # one image per batch: padding a batch to a common size would change the logits near the borders
    loader = DataLoader(val, batch_size=1, shuffle=False, num_workers=workers, collate_fn=segment_collate)
    out = evaluate_segmenter(model.to(dev), loader, dev, k)
    classes = (ckpt.obj.get("meta") or {}).get("CLASSES") if isinstance(ckpt.obj.get("meta"), dict) else None
    out["class_names"] = [str(c) for c in classes] if classes and len(classes) == k else [str(i) for i in range(k)]
    out["pipeline"] = "authors (AlignResize 2048x512, size divisor 32, whole image)"
    return out


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
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"{p} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
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
