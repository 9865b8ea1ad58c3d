"""Track one object through a video from a click or a box, and write its masks: ``repvit sam track``'s library.

:func:`track_video` drives a video predictor (:class:`~repvit.sam.sam2.EdgeTamVideoPredictor`, or the ONNX Runtime
tracker, which has the same API) the way SAM 2's notebooks do: prompt one frame, propagate forward to the end,
then backward to the first frame when the prompt was not on frame 0. It yields one binary mask per frame as the
frames are tracked. :func:`save_masks` writes each mask as a PNG as it arrives and then an overlay GIF, reading the
video's frames back one at a time, so no full-resolution frame is held longer than it is needed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from repvit.io import atomic_write

from .frames import VideoFrames, open_video_frames

__all__ = ["DIRECTIONS", "track_video", "save_masks"]

#: which way :func:`track_video` propagates from the prompted frame
DIRECTIONS = ("both", "forward", "backward")


def _object_mask(masks: Any, obj_ids: list[Any], obj_id: Any) -> np.ndarray:
    """The object's binary mask ``(H, W)`` from a predictor's logits ``(objects, 1, H, W)`` (tensor or array)."""
    logits = masks[obj_ids.index(obj_id), 0]
    logits = logits.detach().cpu().numpy() if hasattr(logits, "detach") else np.asarray(logits)
    return logits > 0.0


def _prompt(points: Any, labels: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
    if points is None:
        if labels is not None:
            raise ValueError("labels were given without points")
        return None, None
    pts = np.asarray(points, dtype=np.float32).reshape(-1, 2)
    lbl = np.ones(len(pts), dtype=np.int32) if labels is None else np.asarray(labels, dtype=np.int32).reshape(-1)
    return pts, lbl


def track_video(
    predictor: Any,
    video: str | os.PathLike | VideoFrames | Any,
    *,
    points: Any = None,
    labels: Any = None,
    box: Any = None,
    frame_idx: int = 0,
    obj_id: Any = 1,
    direction: str = "both",
) -> Iterator[tuple[int, np.ndarray]]:
    """Track one object from prompts on one frame, yielding ``(frame_idx, mask)`` for every tracked frame.

    Args:
        predictor: a video predictor with SAM 2's API (``init_state``, ``add_new_points_or_box``,
            ``propagate_in_video``): :func:`~repvit.sam.sam2.build_edgetam_video_predictor`'s, or the ONNX Runtime
            tracker.
        video: a folder of JPEG/PNG frames, a video file, or what the predictor's ``init_state`` takes
            (e.g. :class:`~repvit.sam.sam2.frames.VideoFrames`), or a state it returned (tracked afresh).
        points: ``(N, 2)`` clicks, x, y in the video's pixels.
        labels: ``(N,)`` 1 for a click on the object, 0 for one beside it (default: all 1).
        box: ``(x0, y0, x1, y1)`` around the object, in the video's pixels.
        frame_idx: the frame the prompts are on.
        obj_id: the object's id in the predictor's state.
        direction: ``both`` (forward to the end, then backward to frame 0), ``forward`` or ``backward``.

    Yields:
        ``(frame_idx, mask)``, ``mask`` a bool ``(H, W)`` array at the video's size: the prompted frame first, then
        the frames after it in order, then the frames before it from the nearest back to frame 0.

    Raises:
        ValueError: no prompt, a bad direction, or a frame index outside the video (from the predictor).
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    points, labels = _prompt(points, labels)
    if points is None and box is None:
        raise ValueError("give the object's points (with labels) or its box, or both")
    state = video if hasattr(video, "objects") else predictor.init_state(video)
    predictor.reset_state(state)
    _, obj_ids, masks = predictor.add_new_points_or_box(state, frame_idx, obj_id, points=points, labels=labels,
                                                        box=box)
    yield int(frame_idx), _object_mask(masks, list(obj_ids), obj_id)
    passes = {"both": (False, True), "forward": (False,), "backward": (True,)}[direction]
    for reverse in passes:
        for idx, obj_ids, masks in predictor.propagate_in_video(state, start_frame_idx=frame_idx, reverse=reverse):
            if idx != frame_idx:  # the prompted frame was yielded from the prompt
                yield int(idx), _object_mask(masks, list(obj_ids), obj_id)


def _write_png(array: np.ndarray, path: Path) -> Path:
    from PIL import Image

    return atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))


def _overlay_frames(frames: VideoFrames, masks_dir: Path, indices: list[int], prompts: dict[str, Any],
                    max_side: int) -> Iterator[Any]:
    """Each tracked frame with its mask blended in, shrunk to ``max_side`` and reduced to 256 colours."""
    from PIL import Image

    from repvit.sam.predict import mask_overlay

    scale = min(1.0, max_side / max(frames.width, frames.height))
    size = (max(1, round(frames.width * scale)), max(1, round(frames.height * scale)))
    for idx in indices:
        image = np.asarray(frames._read(idx).convert("RGB"))  # the decoded frame at the video's size
        with Image.open(masks_dir / f"{idx:05d}.png") as m:
            mask = np.asarray(m) > 127
        on_prompt = idx == prompts.get("frame_idx")
        pic = mask_overlay(image, mask, prompts.get("points", ()) if on_prompt else (),
                           prompts.get("box") if on_prompt else None)
        yield Image.fromarray(pic).resize(size, Image.Resampling.BILINEAR).quantize(256)


def save_masks(
    masks: Iterable[tuple[int, np.ndarray]],
    out_dir: str | os.PathLike,
    *,
    video: str | os.PathLike | VideoFrames | None = None,
    prompts: dict[str, Any] | None = None,
    gif_max_side: int = 480,
    gif_fps: float = 10.0,
) -> dict[str, Any]:
    """Write ``out_dir/masks/00000.png``, ``00001.png``, ... (0/255, the frame's size) as the masks arrive, then
    ``out_dir/overlay.gif`` when ``video`` is given.

    Args:
        masks: ``(frame_idx, mask)`` pairs in any order, e.g. from :func:`track_video`.
        out_dir: the output folder (created if missing).
        video: the video's frames (a folder, a file or :class:`VideoFrames`), read again one at a time for the
            overlay; None writes no overlay.
        prompts: ``{"frame_idx": i, "points": [(x, y, label), ...], "box": (x0, y0, x1, y1)}`` to draw on the
            prompted frame of the overlay.
        gif_max_side: the overlay's longer side in pixels (frames larger than this are shrunk; the GIF keeps
            every tracked frame, 1 byte per pixel, until it is written).
        gif_fps: the overlay's frame rate.

    Returns:
        ``{"masks_dir", "num_frames", "frames" (the indices written, in order), "mask_pixels" (per frame),
        "overlay" (the GIF's path or None)}``.
    """
    out = Path(out_dir)
    masks_dir = out / "masks"
    pixels: dict[int, int] = {}
    for idx, mask in masks:
        mask = np.asarray(mask, dtype=bool)
        _write_png(mask.astype(np.uint8) * 255, masks_dir / f"{idx:05d}.png")
        pixels[int(idx)] = int(mask.sum())
    indices = sorted(pixels)
    result: dict[str, Any] = {"masks_dir": str(masks_dir), "num_frames": len(indices), "frames": indices,
                              "mask_pixels": [pixels[i] for i in indices], "overlay": None}
    if video is not None and indices:
        frames = video if isinstance(video, VideoFrames) else open_video_frames(video)
        gif = list(_overlay_frames(frames, masks_dir, indices, prompts or {}, gif_max_side))
        duration = max(20, round(1000 / gif_fps))
        path = atomic_write(out / "overlay.gif", lambda tmp: gif[0].save(
            tmp, format="GIF", save_all=True, append_images=gif[1:], duration=duration, loop=0))
        result["overlay"] = str(path)
    return result
