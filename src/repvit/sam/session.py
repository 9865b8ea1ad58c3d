"""The SAM app's model-side logic, free of any UI: :class:`SamSession`, which embeds each image once (a small LRU
keyed by a hash of the pixels) so that every further click runs only SAM's prompt encoder and mask decoder.
``repvit sam app`` (:mod:`repvit.sam.app`) puts a Gradio page on it; the latency benchmark times clicks through it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from repvit.runtime import require, torch_threads

from .click import ClickDecoder, ImageContext
from .prompts import PromptError, validate_prompts

__all__ = ["EmbeddingLru", "ImageEmbedding", "SegmentResult", "SamSession", "check_prompts", "image_key"]


@dataclass
class ImageEmbedding:
    """What ``SamPredictor.set_image`` computes for one image: the embedding and the two sizes it needs, and the
    mask decoder's per-image part (:meth:`repvit.sam.click.ClickDecoder.prepare`; None: computed at the first
    click)."""

    key: str
    features: torch.Tensor
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    encode_ms: float
    context: ImageContext | None = None


@dataclass
class SegmentResult:
    """One prompted mask: ``mask`` (H, W) bool, its predicted IoU, and the time the decoder took."""

    mask: np.ndarray
    score: float
    decode_ms: float
    encode_ms: float | None = None  # None: the embedding came from the cache


def image_key(image: np.ndarray) -> str:
    """A hash of an image's pixels and shape (the embedding cache key)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((image.shape, str(image.dtype))).encode())
    h.update(np.ascontiguousarray(image).data)
    return h.hexdigest()


def check_prompts(image: np.ndarray, points: Sequence[tuple[float, float, int]] = (),
                  box: Sequence[float] | None = None) -> None:
    """Refuse a click with no prompt at all, or with prompts off ``image`` (:func:`~.prompts.validate_prompts`)."""
    if not points and box is None:
        raise PromptError("give at least one prompt: a point or a box.")
    validate_prompts(points, box, image.shape[:2])


def _held_bytes(value: Any, seen: set[int]) -> int:
    """Bytes of the tensors and arrays ``value`` holds (through dataclasses, containers and plain objects' fields;
    models are shared, not held), each storage counted once."""
    if isinstance(value, torch.Tensor):
        storage = value.untyped_storage()
        if storage.data_ptr() in seen:
            return 0
        seen.add(storage.data_ptr())
        return storage.nbytes()
    if isinstance(value, nn.Module) or id(value) in seen:
        return 0
    if isinstance(value, np.ndarray):
        seen.add(id(value))
        return value.nbytes
    seen.add(id(value))
    if isinstance(value, dict):
        return sum(_held_bytes(v, seen) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(_held_bytes(v, seen) for v in value)
    fields = getattr(value, "__dict__", None)
    return sum(_held_bytes(v, seen) for v in fields.values()) if fields else 0


class EmbeddingLru:
    """A thread-safe LRU keyed by :func:`image_key` of at most ``size`` (at least 1) entries and, when ``max_bytes``
    is given, at most ``max_bytes`` bytes of tensors and arrays held by its entries (:attr:`nbytes`)."""

    def __init__(self, size: int, max_bytes: int | None = None):
        if max_bytes is not None and max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive (or None: no byte limit), got {max_bytes}")
        self.size = max(1, int(size))
        self.max_bytes = None if max_bytes is None else int(max_bytes)
        self._items: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._nbytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        """Bytes held by the entries now (never more than ``max_bytes``)."""
        return self._nbytes

    def get(self, key: str) -> Any | None:
        """The entry under ``key`` (now the most recently used), or None."""
        with self._lock:
            hit = self._items.get(key)
            if hit is None:
                return None
            self._items.move_to_end(key)
            return hit[0]

    def put(self, key: str, value: Any) -> None:
        """Store ``value`` as the most recently used entry, dropping the least recently used beyond ``size`` entries
        or ``max_bytes`` bytes.

        Raises:
            ValueError: ``value`` alone holds more than ``max_bytes``.
        """
        nbytes = _held_bytes(value, set())
        if self.max_bytes is not None and nbytes > self.max_bytes:
            raise ValueError(f"one image embedding holds {nbytes / 2**20:.1f} MB, more than the embedding cache's "
                             f"limit of {self.max_bytes / 2**20:.1f} MB: raise the limit (max_bytes; repvit sam app "
                             "--cache-mb MB)")
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._nbytes -= old[1]
            self._items[key] = (value, nbytes)
            self._nbytes += nbytes
            while len(self._items) > self.size or (self.max_bytes is not None and self._nbytes > self.max_bytes):
                _, (_, dropped) = self._items.popitem(last=False)
                self._nbytes -= dropped


class SamSession:
    """RepViT-SAM (any ``segment_anything`` ``Sam``) behind an embedding cache.

    ``embed`` runs the image encoder once per distinct image (an :class:`EmbeddingLru` of at most ``cache_size``
    embeddings and, when given, ``cache_bytes`` bytes; thread safe);
    ``segment`` runs only the prompt encoder and mask decoder on a cached embedding, with ``SamPredictor``'s
    coordinate transform and mask post-processing, so its masks equal ``SamPredictor.predict``'s. ``runtime``
    runs the image encoder and the decoder's per-click part in PyTorch (``"torch"``) or exported to ONNX Runtime
    (``"onnxruntime"``: both exported when the session is made, the encoder fused and checked against PyTorch, with
    PyTorch's thread count then; :func:`repvit.sam.export.encoder_onnx_session`,
    :meth:`repvit.sam.click.ClickDecoder.onnx_session`); ``"auto"``: ONNX Runtime when it and ``onnx`` are installed
    and the model is on the CPU (the faster there: ``benchmarks/sam_click.py``), else PyTorch. :attr:`runtime` holds
    the choice. The prompt encoder and the mask's up-sampling run in PyTorch either way.
    """

    def __init__(self, sam: nn.Module, cache_size: int = 4, cache_bytes: int | None = None, runtime: str = "torch"):
        if runtime not in ("auto", "torch", "onnxruntime"):
            raise ValueError(f"unknown runtime {runtime!r}: use 'auto', 'torch' or 'onnxruntime'.")
        on_cpu = next(sam.parameters()).device.type == "cpu"
        if runtime == "auto":
            installed = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))
            runtime = "onnxruntime" if on_cpu and installed else "torch"
        elif runtime == "onnxruntime" and not on_cpu:
            raise ValueError(f"runtime 'onnxruntime' runs on the CPU, and the model is on "
                             f"{next(sam.parameters()).device}: move it to the CPU, or use runtime 'torch' or 'auto'.")
        self.sa = require("segment_anything", "the RepViT-SAM app")
        self.sam = sam.eval()
        self.clicks = ClickDecoder(self.sam)
        self.runtime = runtime
        self._onnx: dict[tuple[int, int], Any] = {}
        self._onnx_lock = threading.Lock()
        self._cache = EmbeddingLru(cache_size, cache_bytes)
        self.cache_size = self._cache.size
        self._encoder = None
        if self.runtime == "onnxruntime":  # exported now, not at a request (about 6 s for EdgeSAM at 1024 px)
            from .export import encoder_onnx_session

            self._encoder = encoder_onnx_session(self.sam, threads=torch.get_num_threads())
            self.onnx_session(tuple(self.sam.prompt_encoder.image_embedding_size))

    @property
    def device(self) -> torch.device:
        return next(self.sam.parameters()).device

    def cached(self, key: str) -> ImageEmbedding | None:
        return self._cache.get(key)

    def embed(self, image: np.ndarray, key: str | None = None) -> tuple[ImageEmbedding, bool]:
        """The embedding of ``image`` ((H, W, 3) uint8 RGB) and whether it was computed now (False: cached)."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise PromptError(f"expected an (H, W, 3) uint8 RGB image, got shape {image.shape} dtype {image.dtype}.")
        key = key or image_key(image)
        emb = self.cached(key)
        if emb is not None:
            return emb, False
        predictor = self.sa.SamPredictor(self.sam)
        t0 = time.perf_counter()
        if self._encoder is None:
            predictor.set_image(image)
            features, input_size = predictor.features, predictor.input_size
        else:  # SamPredictor.set_image's steps, with the encoder in ONNX Runtime
            if self.sam.image_format != "RGB":
                image = image[..., ::-1]
            with torch.inference_mode():
                x = torch.as_tensor(predictor.transform.apply_image(image)).permute(2, 0, 1).contiguous()[None]
                input_size = tuple(x.shape[-2:])
                x = self.sam.preprocess(x.to(self.device))
                features = torch.from_numpy(self._encoder.run(None, {"image": x.float().cpu().numpy()})[0])
                features = features.to(self.device)
        context = self.clicks.prepare(features)
        ms = (time.perf_counter() - t0) * 1e3
        emb = ImageEmbedding(key, features, tuple(image.shape[:2]), tuple(input_size), ms, context)
        self._cache.put(key, emb)
        return emb, True

    def predictor_for(self, emb: ImageEmbedding) -> Any:
        """A fresh ``SamPredictor`` set to a cached embedding (no encoder run; the model is not touched)."""
        p = self.sa.SamPredictor(self.sam)
        p.features, p.original_size, p.input_size, p.is_image_set = (
            emb.features, emb.original_size, emb.input_size, True)
        return p

    @torch.inference_mode()
    def decode(self, emb: ImageEmbedding, points: Sequence[tuple[float, float, int]] = (),
               box: Sequence[float] | None = None, multimask: bool | None = None) -> tuple[np.ndarray, float]:
        """The mask (H, W bool) and predicted IoU for prompts on a cached embedding.

        As ``SamPredictor.predict`` (its transforms, ``prompt_encoder``, ``mask_decoder``, ``postprocess_masks``)
        followed by the argmax of the IoUs, with the decoder's per-image part done once per image and only the
        chosen candidate decoded and up-sampled (:class:`repvit.sam.click.ClickDecoder`). ``multimask`` defaults to
        SAM's advice: three candidates for a single point alone (the best-scoring kept), one mask otherwise.
        """
        if not points and box is None:
            raise PromptError("give at least one prompt: a point or a box.")
        validate_prompts(points, box, emb.original_size)
        if multimask is None:
            multimask = len(points) == 1 and box is None
        sam, dev = self.sam, emb.features.device
        if emb.context is None:
            emb.context = self.clicks.prepare(emb.features)
        onnx = self.onnx_session(emb.context.grid) if self.runtime == "onnxruntime" else None
        # Before ONNX Runtime's run, PyTorch's prompt encoder runs on one thread: an OpenMP parallel region leaves its
        # workers spinning for milliseconds, and a spinning worker takes a core from ONNX Runtime's threads (a decode
        # right after the prompt encoder on 2 threads took 1.3x as long on 2 cores). The up-sampling after the run
        # keeps PyTorch's threads (a 12 MP photo's mask: 42-45 ms on 2 threads, 67 ms on 1).
        with torch_threads(1 if onnx is not None else None):
            tr = self.predictor_for(emb).transform
            pts = None
            if points:
                coords = tr.apply_coords(np.array([[p[0], p[1]] for p in points], np.float32), emb.original_size)
                pts = (torch.as_tensor(coords, dtype=torch.float, device=dev)[None],
                       torch.as_tensor([[p[2] for p in points]], dtype=torch.int, device=dev))
            boxes = None
            if box is not None:
                boxes = torch.as_tensor(tr.apply_boxes(np.asarray(box, np.float32)[None], emb.original_size),
                                        dtype=torch.float, device=dev)
            sparse, _ = sam.prompt_encoder(points=pts, boxes=boxes, masks=None)
        if onnx is not None:
            low, score, _ = self.clicks.decode_onnx(onnx, emb.context, sparse, multimask, emb.input_size)
        else:
            low, score, _ = self.clicks.decode(emb.context, sparse, multimask, emb.input_size)
        return self.clicks.upscale(low, emb.input_size, emb.original_size, sam.mask_threshold), score

    def onnx_session(self, grid: tuple[int, int]) -> Any:
        """The ONNX Runtime session of the per-click graph for image tokens on ``grid`` (made once per grid, with
        PyTorch's thread count then; :meth:`repvit.sam.click.ClickDecoder.onnx_session`)."""
        with self._onnx_lock:
            if grid not in self._onnx:
                self._onnx[grid] = self.clicks.onnx_session(grid, threads=torch.get_num_threads())
            return self._onnx[grid]

    def segment(self, image: np.ndarray, points: Sequence[tuple[float, float, int]] = (),
                box: Sequence[float] | None = None, multimask: bool | None = None,
                key: str | None = None) -> SegmentResult:
        """Embed (or reuse the cached embedding) and decode; times both."""
        check_prompts(image, points, box)
        emb, fresh = self.embed(image, key)
        t0 = time.perf_counter()
        mask, score = self.decode(emb, points, box, multimask)
        return SegmentResult(mask, score, (time.perf_counter() - t0) * 1e3, emb.encode_ms if fresh else None)

    def segment_all(self, image: np.ndarray, *, points_per_side: int = 16, points_per_batch: int = 64,
                    pred_iou_thresh: float = 0.88, stability_score_thresh: float = 0.95,
                    key: str | None = None) -> tuple[list[dict[str, Any]], float | None, float]:
        """``SamAutomaticMaskGenerator``'s masks (largest first) on the cached embedding; returns the masks, the
        encode time (None when cached) and the generator's time in ms."""
        emb, fresh = self.embed(image, key)
        gen = self.sa.SamAutomaticMaskGenerator(self.sam, points_per_side=points_per_side,
                                                points_per_batch=points_per_batch, pred_iou_thresh=pred_iou_thresh,
                                                stability_score_thresh=stability_score_thresh)
        gen.predictor = _CachedPredictor(self, emb)  # one crop (crop_n_layers=0): the whole image, already embedded
        t0 = time.perf_counter()
        masks = sorted(gen.generate(image), key=lambda m: m["area"], reverse=True)
        return masks, emb.encode_ms if fresh else None, (time.perf_counter() - t0) * 1e3

    def click_ms(self, image: np.ndarray, point: tuple[float, float, int] | None = None, repeats: int = 10,
                 warmup: int = 2) -> dict[str, float]:
        """Server time of one click after the first encode: decoder + overlay (median of ``repeats``, ms)."""
        from .predict import mask_overlay

        point = point or (image.shape[1] / 2, image.shape[0] / 2, 1)
        emb, _ = self.embed(image)
        dec, ovl = [], []
        for i in range(warmup + repeats):
            t0 = time.perf_counter()
            mask, _ = self.decode(emb, [point])
            t1 = time.perf_counter()
            mask_overlay(image, mask, [point])
            t2 = time.perf_counter()
            if i >= warmup:
                dec.append((t1 - t0) * 1e3)
                ovl.append((t2 - t1) * 1e3)
        tot = [a + b for a, b in zip(dec, ovl)]
        return {"encode_ms": emb.encode_ms, "decode_ms": float(np.median(dec)), "overlay_ms": float(np.median(ovl)),
                "click_ms": float(np.median(tot)), "repeats": repeats}


class _CachedPredictor:
    """A stand-in for the automatic mask generator's ``SamPredictor`` whose ``set_image`` restores a cached
    embedding instead of running the encoder (only for the image it was made for)."""

    def __init__(self, session: SamSession, emb: ImageEmbedding):
        self._p = session.predictor_for(emb)
        self._session, self._key = session, emb.key

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        if image_key(image) != self._key:  # a crop: embed it (not the case with crop_n_layers=0)
            emb, _ = self._session.embed(image)
            self._p = self._session.predictor_for(emb)

    def reset_image(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._p, name)
