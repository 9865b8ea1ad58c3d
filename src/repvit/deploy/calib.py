"""Calibration (and evaluation) images for INT8: a folder of the user's images, or the built-in digits set."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

__all__ = ["IMAGE_EXTENSIONS", "load_image_folder", "load_calibration", "digits_tensors"]

_LOG = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")


def _eval_transform(img_size: tuple[int, int], mean, std, normalize: bool):
    from timm.data import create_transform

    t = create_transform(input_size=(3, *img_size), is_training=False, mean=mean, std=std, crop_pct=0.95,
                         interpolation="bicubic")
    if not normalize:  # drop the trailing Normalize: the graph normalizes itself
        from torchvision import transforms as T

        t = T.Compose([s for s in t.transforms if not isinstance(s, T.Normalize)])
    return t


def load_image_folder(
    folder: str | Path,
    img_size: tuple[int, int],
    mean,
    std,
    normalize: bool = True,
    limit: int = 256,
) -> torch.Tensor:
    """Up to ``limit`` images found (recursively) under ``folder``, preprocessed like timm's eval transform.

    Returns:
        A float tensor (N, 3, H, W).
    """
    from PIL import Image

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"calibration folder {folder} does not exist (pass a folder of images or 'digits').")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)[:limit]
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {folder}.")
    t = _eval_transform(img_size, mean, std, normalize)
    imgs = []
    for p in files:
        with Image.open(p) as im:
            imgs.append(t(im.convert("RGB")))
    _LOG.info("calibration: %d images from %s", len(imgs), folder)
    return torch.stack(imgs)


def digits_tensors(
    split: str = "train", img_size: tuple[int, int] = (32, 32), normalize: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """The built-in digits set (scikit-learn's 8x8 digits) as RGB images and labels.

    Uses :mod:`repvit.data` when it provides the split (so INT8 calibration sees exactly what training saw), else
    the same recipe: the 1797 images split 80/20 stratified with seed 0, intensity 0..16 scaled to 0..1, replicated
    to 3 channels, bilinearly resized to ``img_size`` and normalized with ImageNet mean/std.
    """
    try:
        from repvit.data import digits as _digits  # provided by the training code when present

        if hasattr(_digits, "digits_tensors"):
            return _digits.digits_tensors(split=split, img_size=img_size, normalize=normalize)
    except ImportError:
        pass
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as e:
        raise ImportError("the built-in digits set needs scikit-learn: pip install 'repvit[digits]'") from e
    from timm.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    d = load_digits()
    idx_train, idx_val = train_test_split(range(len(d.target)), test_size=0.2, random_state=0, stratify=d.target)
    idx = {"train": idx_train, "val": idx_val, "test": idx_val}[split]
    x = torch.tensor(d.images[idx], dtype=torch.float32).div(16.0).unsqueeze(1).repeat(1, 3, 1, 1)
    x = torch.nn.functional.interpolate(x, size=img_size, mode="bilinear", align_corners=False)
    if normalize:
        mean = torch.tensor(IMAGENET_DEFAULT_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_DEFAULT_STD).view(1, 3, 1, 1)
        x = (x - mean) / std
    return x, torch.tensor(d.target[idx], dtype=torch.long)


def load_calibration(
    source: str | Path,
    img_size: tuple[int, int],
    mean,
    std,
    normalize: bool = True,
    limit: int = 256,
    batch_size: int = 16,
) -> list:
    """Calibration batches (float32 numpy arrays) from a folder of images or ``"digits"`` (the built-in set)."""
    if str(source) == "digits":
        x, _ = digits_tensors("train", img_size=img_size, normalize=normalize)
        x = x[:limit]
    else:
        x = load_image_folder(source, img_size, mean, std, normalize=normalize, limit=limit)
    return [b.numpy() for b in x.split(batch_size)]
