"""Calibration (and evaluation) images for INT8: a folder of the user's images, or the built-in digits set."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from repvit.data import IMAGE_EXTENSIONS, is_digits

__all__ = ["load_image_folder", "load_calibration", "digits_tensors"]

_LOG = logging.getLogger(__name__)


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
    split: str = "train", img_size: int = 32, normalize: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """The built-in digits split (:func:`repvit.data.load_digits_split`) as 3-channel images and labels.

    With ``normalize=False`` the images are in 0..1 (for graphs with normalization baked in, mean/std 0.5).
    """
    from repvit.data import load_digits_split

    x, y = load_digits_split(split, img_size=int(img_size), in_chans=3)
    if not normalize:
        from repvit.data.digits import DIGITS_MEAN, DIGITS_STD

        x = x * DIGITS_STD + DIGITS_MEAN
    return x, y


def load_calibration(
    source: str | Path,
    img_size: tuple[int, int],
    mean,
    std,
    normalize: bool = True,
    limit: int = 256,
    batch_size: int = 16,
) -> list:
    """Calibration batches (float32 numpy arrays) from a folder of images or ``"digits"`` (the built-in set).

    ``mean``/``std`` apply to folder images; the digits set uses its own normalization (mean/std 0.5).
    """
    if is_digits(source):
        if img_size[0] != img_size[1]:
            raise ValueError("the digits set is square: use a square --img-size with --calib digits.")
        x, _ = digits_tensors("train", img_size=img_size[0], normalize=normalize)
        x = x[:limit]
    else:
        x = load_image_folder(source, img_size, mean, std, normalize=normalize, limit=limit)
    return [b.numpy() for b in x.split(batch_size)]
