"""EdgeTAM behind the app's image-session interface (that of :class:`repvit.sam.session.SamSession`): each photo is
embedded once by :class:`~repvit.sam.sam2.image_predictor.EdgeTamImagePredictor` (a small LRU keyed by a hash of
the pixels), and every click decodes on the cached embedding."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from repvit.sam.prompts import PromptError
from repvit.sam.session import EmbeddingLru, ImageEmbedding, SegmentResult, check_prompts, image_key

from .image_predictor import EdgeTamImagePredictor
from .model import EdgeTAM

__all__ = ["EdgeTamSession"]


class EdgeTamSession:
    """Clicks on photos with EdgeTAM's image predictor; ``embed`` once per distinct image, ``segment`` per click.

    EdgeTAM has no automatic mask generator here, so :attr:`supports_everything` is False and
    :meth:`segment_all` raises :class:`~repvit.sam.prompts.PromptError`.
    """

    supports_everything = False

    def __init__(self, model: EdgeTAM, cache_size: int = 4, cache_bytes: int | None = None):
        self.model = model.eval()
        self._cache = EmbeddingLru(cache_size, cache_bytes)  # (ImageEmbedding, EdgeTamImagePredictor) per image
        self.cache_size = self._cache.size

    @property
    def device(self) -> torch.device:
        return self.model.device

    def embed(self, image: np.ndarray, key: str | None = None) -> tuple[ImageEmbedding, bool]:
        """The embedding of ``image`` ((H, W, 3) uint8 RGB) and whether it was computed now (False: cached)."""
        emb, _, fresh = self._embed(image, key)
        return emb, fresh

    def _embed(self, image: np.ndarray, key: str | None) -> tuple[ImageEmbedding, EdgeTamImagePredictor, bool]:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise PromptError(f"expected an (H, W, 3) uint8 RGB image, got shape {image.shape} dtype {image.dtype}.")
        key = key or image_key(image)
        hit = self._cache.get(key)
        if hit is not None:
            return hit[0], hit[1], False
        predictor = EdgeTamImagePredictor(self.model)
        t0 = time.perf_counter()
        predictor.set_image(image)
        ms = (time.perf_counter() - t0) * 1e3
        size = (image.shape[0], image.shape[1])
        emb = ImageEmbedding(key, predictor.get_image_embedding(), size, (self.model.image_size,) * 2, ms)
        self._cache.put(key, (emb, predictor))
        return emb, predictor, True

    def segment(self, image: np.ndarray, points: Sequence[tuple[float, float, int]] = (),
                box: Sequence[float] | None = None, multimask: bool | None = None,
                key: str | None = None) -> SegmentResult:
        """Embed (or reuse the cached embedding) and decode; a single point alone keeps the best of three masks."""
        check_prompts(image, points, box)
        emb, predictor, fresh = self._embed(image, key)
        if multimask is None:
            multimask = len(points) == 1 and box is None
        t0 = time.perf_counter()
        masks, scores, _ = predictor.predict(
            point_coords=np.array([[p[0], p[1]] for p in points], np.float32) if points else None,
            point_labels=np.array([p[2] for p in points], np.int32) if points else None,
            box=None if box is None else np.asarray(box, np.float32), multimask_output=multimask)
        best = int(np.argmax(scores))
        return SegmentResult(masks[best], float(scores[best]), (time.perf_counter() - t0) * 1e3,
                             emb.encode_ms if fresh else None)

    def segment_all(self, image: np.ndarray, **kwargs: Any) -> Any:
        raise PromptError("the everything mode needs a RepViT-SAM / EdgeSAM model; EdgeTAM takes points and boxes.")
