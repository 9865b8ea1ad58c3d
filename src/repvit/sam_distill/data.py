"""SAM distillation's data: the held-out split and the datasets both phases train on, each pairing a preprocessed
image with the teacher's cached embedding (:class:`~repvit.sam_distill.embed_cache.EmbeddingCache`)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from repvit.sam.preprocess import load_rgb, preprocess_image

from .embed_cache import EmbeddingCache
from .mask_annotations import MaskAnnotations, low_res_prompt_masks

__all__ = ["EmbeddingPairs", "PromptPairs", "split_indices", "collate_embedding_pairs", "collate_prompt_pairs",
           "prompt_masks_to"]


class EmbeddingPairs(Dataset):
    """``(preprocessed image, teacher embedding)`` for the images ``indices`` of ``cache``."""

    def __init__(self, cache: EmbeddingCache, indices: list[int]):
        self.cache, self.indices = cache, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.indices[i]
        image = preprocess_image(load_rgb(self.cache.image_root / self.cache.files[idx]), self.cache.spec.img_size)
        return image, self.cache[idx]


def collate_embedding_pairs(batch: list) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.stack([b[0] for b in batch]), torch.stack([b[1] for b in batch])


def split_indices(n: int, val_fraction: float) -> tuple[list[int], list[int]]:
    """A fixed (seed 0, independent of the run's seed) train / held-out split of ``n`` images."""
    if n < 2:
        raise ValueError(f"distillation needs at least 2 images (one held out), found {n}.")
    perm = np.random.default_rng(0).permutation(n)
    k = min(max(1, round(n * val_fraction)), n - 1)
    return sorted(perm[k:].tolist()), sorted(perm[:k].tolist())


class PromptPairs(Dataset):
    """``(preprocessed image, teacher embedding, (h, w) of the resized image, index, prompt masks)`` for ``indices``
    of ``cache``; prompt masks are the image's annotated ``(masks, boxes)``
    (:func:`~repvit.sam_distill.mask_annotations.low_res_prompt_masks`) when ``annotations`` is given, else None."""

    def __init__(self, cache: EmbeddingCache, indices: list[int], annotations: MaskAnnotations | None = None):
        self.cache, self.indices, self.annotations = cache, list(indices), annotations

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        from segment_anything.utils.transforms import ResizeLongestSide

        idx = self.indices[i]
        path = self.cache.image_root / self.cache.files[idx]
        rgb = load_rgb(path)
        size = self.cache.spec.img_size
        hw = ResizeLongestSide.get_preprocess_shape(rgb.shape[0], rgb.shape[1], size)
        masks = None
        if self.annotations is not None:
            masks = low_res_prompt_masks(self.annotations.masks(self.cache.files[idx]), rgb.shape[:2], size, path)
        return preprocess_image(rgb, size), self.cache[idx], torch.tensor(hw), idx, masks


def collate_prompt_pairs(batch: list):
    masks = [b[4] for b in batch]
    return (torch.stack([b[0] for b in batch]), torch.stack([b[1] for b in batch]), torch.stack([b[2] for b in batch]),
            torch.tensor([b[3] for b in batch]), None if masks[0] is None else masks)


def prompt_masks_to(masks: list[tuple[torch.Tensor, torch.Tensor]] | None,
                    device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    """A :class:`PromptPairs` batch's prompt masks (per image ``(masks, boxes)``, or None) on ``device``."""
    return None if masks is None else [(m.to(device), b.to(device)) for m, b in masks]
