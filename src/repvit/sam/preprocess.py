"""SAM's image preprocessing, from ``segment_anything``: resize the longest side to ``img_size`` (its
``ResizeLongestSide``), normalize with ``Sam``'s pixel mean/std, pad bottom/right to a square.

:func:`preprocess_image` is what ``SamPredictor.set_image`` does to an RGB array (used by distillation and the
teacher-embedding cache); :class:`PreprocessingEncoder` does the same in-graph on a float image tensor (for the
ONNX export with preprocessing inside).
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from repvit.runtime import require

__all__ = ["sam_pixel_stats", "load_rgb", "preprocess_image", "PreprocessingEncoder"]



def sam_pixel_stats() -> tuple[list[float], list[float]]:
    """``Sam``'s default pixel mean and std (0..255 RGB), read from ``segment_anything.modeling.Sam``."""
    sam_cls = require("segment_anything", "SAM preprocessing").modeling.Sam
    params = inspect.signature(sam_cls.__init__).parameters
    return list(params["pixel_mean"].default), list(params["pixel_std"].default)


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """An image file as an ``(H, W, 3)`` uint8 RGB array."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(Path(path)) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError) as e:
        raise OSError(f"cannot read image {path}: {e}") from None


def preprocess_image(image: np.ndarray, img_size: int) -> torch.Tensor:
    """``(3, img_size, img_size)`` float tensor from an ``(H, W, 3)`` uint8 RGB array, as ``SamPredictor``:
    ``ResizeLongestSide(img_size).apply_image``, normalize with Sam's mean/std, zero-pad bottom and right."""
    require("segment_anything", "SAM preprocessing")
    from segment_anything.utils.transforms import ResizeLongestSide

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got shape {image.shape} dtype {image.dtype}.")
    x = torch.from_numpy(np.ascontiguousarray(ResizeLongestSide(img_size).apply_image(image)))
    x = x.permute(2, 0, 1).float()
    mean, std = sam_pixel_stats()
    x = (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    h, w = x.shape[-2:]
    return F.pad(x, (0, img_size - w, 0, img_size - h))


class PreprocessingEncoder(nn.Module):
    """An image encoder with SAM's preprocessing in front, for graphs that take raw pixels.

    Input: ``(1, 3, H, W)`` float RGB in 0..255, any H and W. The longest side is resized to ``img_size``
    (bilinear, ``align_corners=False``, the other side rounded as ``ResizeLongestSide``), normalized with Sam's
    mean/std and zero-padded to ``img_size`` square. Without anti-aliasing: downscaled images differ slightly from
    ``SamPredictor``'s PIL resize.
    """

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.img_size = int(encoder.img_size)
        mean, std = sam_pixel_stats()
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        size = torch._shape_as_tensor(image)[2:].to(torch.float32)  # traced as a Shape op, not a constant
        new = torch.floor(size * (self.img_size / size.max()) + 0.5).to(torch.int64)
        x = F.interpolate(image, size=(new[0], new[1]), mode="bilinear", align_corners=False)
        x = (x - self.pixel_mean) / self.pixel_std
        x = F.pad(x, (0, self.img_size - new[1], 0, self.img_size - new[0]))
        return self.encoder(x)
