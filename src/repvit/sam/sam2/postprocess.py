"""SAM 2's mask clean-up on the CPU: small holes filled, small sprinkles removed, by connected components.

SAM 2 labels components with a CUDA kernel (8-connectivity, the component's area at each pixel, 0 on the
background); here SciPy's ``ndimage.label`` does the same on any device's tensors
(``pip install 'repvit-pytorch[video]'``). A "hole" is any connected region of background (score <= threshold)
of at most ``max_area`` pixels, touching the border or not, exactly as in SAM 2.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import numpy as np
import torch

__all__ = ["connected_components", "fill_holes_in_mask_scores", "postprocess_mask_logits"]

_EIGHT_NEIGHBOURS = np.ones((3, 3), dtype=bool)


def _require_ndimage() -> ModuleType:
    try:
        return importlib.import_module("scipy.ndimage")
    except ImportError as e:
        raise ImportError(
            "SciPy is needed to fill holes in EdgeTAM's masks but is not installed: "
            "pip install 'repvit-pytorch[video]' (or build the predictor with fill_hole_area=0)"
        ) from e


def connected_components(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """8-connected components of binary masks ``(N, 1, H, W)``.

    Returns:
        ``(labels, areas)``, int32 tensors shaped like ``mask`` on its device: each foreground pixel's component
        label (from 1) and that component's area in pixels; both are 0 on the background.
    """
    if mask.dim() != 4 or mask.shape[1] != 1:
        raise ValueError(f"masks must be shaped (N, 1, H, W), got {tuple(mask.shape)}")
    ndimage = _require_ndimage()
    masks = mask.detach().to("cpu", torch.bool).numpy()
    labels = np.zeros(masks.shape, dtype=np.int32)
    areas = np.zeros(masks.shape, dtype=np.int32)
    for i in range(masks.shape[0]):
        labels[i, 0], _ = ndimage.label(masks[i, 0], structure=_EIGHT_NEIGHBOURS)
        counts = np.bincount(labels[i, 0].ravel()).astype(np.int32)
        counts[0] = 0
        areas[i, 0] = counts[labels[i, 0]]
    return torch.from_numpy(labels).to(mask.device), torch.from_numpy(areas).to(mask.device)


def fill_holes_in_mask_scores(mask: torch.Tensor, max_area: int) -> torch.Tensor:
    """Fill the holes of mask logits ``(N, 1, H, W)``: background regions of at most ``max_area`` pixels get 0.1.

    This is SAM 2's video post-processing (``fill_hole_area``), applied to the low-resolution mask logits before
    they are stored or resized to the video; the small positive score turns the hole into foreground.
    """
    if max_area <= 0:
        raise ValueError(f"max_area must be positive, got {max_area}")
    labels, areas = connected_components(mask <= 0)
    is_hole = (labels > 0) & (areas <= max_area)
    return torch.where(is_hole, torch.tensor(0.1, dtype=mask.dtype, device=mask.device), mask)


def postprocess_mask_logits(
    masks: torch.Tensor, *, threshold: float = 0.0, max_hole_area: int = 0, max_sprinkle_area: int = 0
) -> torch.Tensor:
    """SAM 2's image-predictor clean-up of mask logits ``(B, M, H, W)``, each mask on its own.

    Background regions (score <= ``threshold``) of at most ``max_hole_area`` pixels become ``threshold + 10``;
    then foreground regions of at most ``max_sprinkle_area`` pixels become ``threshold - 10``. An area of 0 turns
    a step off.
    """
    masks = masks.float()
    flat = masks.flatten(0, 1).unsqueeze(1)
    if max_hole_area > 0:
        labels, areas = connected_components(flat <= threshold)
        is_hole = ((labels > 0) & (areas <= max_hole_area)).reshape_as(masks)
        masks = torch.where(is_hole, threshold + 10.0, masks)
    if max_sprinkle_area > 0:
        labels, areas = connected_components(flat > threshold)
        is_sprinkle = ((labels > 0) & (areas <= max_sprinkle_area)).reshape_as(masks)
        masks = torch.where(is_sprinkle, threshold - 10.0, masks)
    return masks
