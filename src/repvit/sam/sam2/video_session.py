"""The app's video side without any UI: :class:`VideoSession` checks an uploaded video against the configured
limits, shows its frames, checks a click, tracks the clicked object through the video with EdgeTAM's video
predictor and writes the results into a fresh folder: one 0/255 PNG mask per frame (``masks/00000.png``, ...),
the masks as a zip, and an animated GIF of the frames with the mask drawn on them.

``repvit sam app`` (:mod:`repvit.sam.app`) puts a Gradio tab on it. Videos are decoded with PyAV
(``pip install 'repvit-pytorch[video]'``); frame ``i`` is the ``i``-th decoded frame, as in
:class:`~repvit.sam.sam2.frames.VideoFile`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from repvit.runtime import require
from repvit.sam.predict import mask_overlay, save_png
from repvit.sam.prompts import validate_prompts

from .frames import FRAME_SUFFIXES, open_video_frames
from .video_predictor import EdgeTamVideoPredictor

__all__ = ["VideoError", "VideoInfo", "TrackResult", "VideoSession", "DEFAULT_MAX_FRAMES", "DEFAULT_MAX_MB"]

DEFAULT_MAX_FRAMES = 150
DEFAULT_MAX_MB = 100.0
OBJ_ID = 1


class VideoError(ValueError):
    """A video the session refuses (not a video, over a limit, a frame out of range); the message says why and what
    to do."""


@dataclass(frozen=True)
class VideoInfo:
    """An accepted video: its path, number of frames, size in pixels and frame rate (None when unknown)."""

    path: Path
    num_frames: int
    width: int
    height: int
    fps: float | None


@dataclass(frozen=True)
class TrackResult:
    """One tracked object: the folder of per-frame masks, their zip, the overlay GIF, each frame's mask area in
    pixels, and the tracking time (encoding, memory and decoding of every frame)."""

    frame_idx: int
    points: tuple[tuple[float, float, int], ...]
    mask_dir: Path
    masks_zip: Path
    overlay: Path
    areas: tuple[int, ...]
    track_ms: float

    @property
    def num_frames(self) -> int:
        return len(self.areas)


def _decoded_frames(path: Path) -> Iterator[np.ndarray]:
    """The video's frames in decoding order as ``(H, W, 3)`` uint8 RGB arrays."""
    av = require("av", "video files", extra="video")
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="rgb24")
    except av.error.FFmpegError as e:
        raise VideoError(f"cannot decode {path.name}: {e}") from e


class VideoSession:
    """EdgeTAM's video predictor behind upload limits, for one click-and-track request at a time per video.

    Args:
        predictor: an :class:`~repvit.sam.sam2.video_predictor.EdgeTamVideoPredictor`.
        max_frames: the longest video accepted, in frames (tracking costs about one image encoding per frame).
        max_mb: the largest file accepted, in MB.
        work_dir: where each tracking run gets its folder (default: a new temporary folder).
        keep: how many runs' folders to keep; older ones are deleted.
        overlay_side: the overlay GIF's longer side in pixels at most (the masks keep the video's size).
        limit_hint: how a user raises the limits, said in the errors about them (e.g. the app's flags).
    """

    def __init__(self, predictor: EdgeTamVideoPredictor, *, max_frames: int = DEFAULT_MAX_FRAMES,
                 max_mb: float = DEFAULT_MAX_MB, work_dir: str | os.PathLike | None = None, keep: int = 8,
                 overlay_side: int = 480, limit_hint: str = "") -> None:
        if max_frames < 1 or max_mb <= 0:
            raise ValueError(f"max_frames must be >= 1 and max_mb > 0, got {max_frames} and {max_mb}")
        self.predictor = predictor
        self.max_frames, self.max_mb = int(max_frames), float(max_mb)
        self.work_dir = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="repvit_video_"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.keep, self.overlay_side, self.limit_hint = max(1, keep), overlay_side, limit_hint

    def _limit_error(self, what: str) -> VideoError:
        how = self.limit_hint or "raise the limit (VideoSession's max_frames / max_mb)"
        return VideoError(f"{what}; trim the video (e.g. ffmpeg -i IN -frames:v {self.max_frames} OUT.mp4) or {how}.")

    def open(self, path: str | os.PathLike) -> VideoInfo:
        """Check that ``path`` is a video within the limits (size first, then frames, counted without decoding).

        Raises:
            VideoError: not a video file, a single image, over ``max_mb`` or over ``max_frames``.
        """
        path = Path(path)
        if not path.is_file():
            raise VideoError(f"{path} does not exist or is not a file")
        if path.suffix.lower() in FRAME_SUFFIXES:
            raise VideoError(f"{path.name} is a single image, not a video: segment it in the image tab")
        mb = path.stat().st_size / 2**20
        if mb > self.max_mb:
            raise self._limit_error(f"{path.name} is {mb:.1f} MB, over the limit of {self.max_mb:g} MB (max_mb)")
        av = require("av", "video files", extra="video")
        try:
            with av.open(str(path)) as container:
                if not container.streams.video:
                    raise VideoError(f"{path.name} has no video stream (an audio file?): upload a video")
                stream = container.streams.video[0]
                n = self._count_frames(container, path.name)
                fps = float(stream.average_rate) if stream.average_rate else None
                width, height = stream.codec_context.width, stream.codec_context.height
        except av.error.FFmpegError as e:
            raise VideoError(f"{path.name} is not a video file that can be read (MP4, WebM, MOV, AVI, GIF, ...): "
                             f"{e}") from None
        if n == 0 or not width or not height:
            raise VideoError(f"{path.name} has a video stream but no frames")
        return VideoInfo(path, n, width, height, fps)

    def _count_frames(self, container, name: str) -> int:
        """The number of video packets (one per frame), stopping once over ``max_frames``."""
        n = 0
        for packet in container.demux(video=0):
            if packet.size:
                n += 1
                if n > self.max_frames:
                    raise self._limit_error(f"{name} has more than {self.max_frames} frames, the limit (max_frames)")
        return n

    def frame(self, info: VideoInfo, index: int) -> np.ndarray:
        """Frame ``index`` of the video, ``(H, W, 3)`` uint8 RGB."""
        self.check_frame(info, index)
        found = next(islice(_decoded_frames(info.path), int(index), None), None)
        if found is None:
            raise VideoError(f"frame {index} of {info.path.name} could not be decoded")
        return found

    @staticmethod
    def check_frame(info: VideoInfo, index: int) -> int:
        if not isinstance(index, int | np.integer) or not 0 <= index < info.num_frames:
            raise VideoError(f"frame {index!r} is out of range: the video has frames 0 to {info.num_frames - 1}")
        return int(index)

    def check_click(self, info: VideoInfo, frame_idx: int, points: Sequence[tuple[float, float, int]]) -> None:
        """A frame in range and points inside it (:class:`~repvit.sam.prompts.PromptError` otherwise)."""
        self.check_frame(info, frame_idx)
        if not points:
            raise VideoError("click on the object to track first (at least one point)")
        validate_prompts(points, None, (info.height, info.width))

    def _new_run_dir(self) -> Path:
        runs = sorted((d for d in self.work_dir.iterdir() if d.is_dir()), key=lambda d: d.stat().st_mtime)
        for old in runs[:max(0, len(runs) - self.keep + 1)]:
            shutil.rmtree(old, ignore_errors=True)
        return Path(tempfile.mkdtemp(prefix="track_", dir=self.work_dir))

    @torch.inference_mode()
    def masks(self, info: VideoInfo, frame_idx: int,
              points: Sequence[tuple[float, float, int]]) -> Iterator[tuple[int, np.ndarray]]:
        """Track the object clicked on ``frame_idx``: ``(frame, mask)`` from the clicked frame to the end, then
        backwards to the first frame; masks are ``(H, W)`` bool at the video's size."""
        pred = self.predictor
        state = pred.init_state(open_video_frames(info.path, image_size=pred.image_size, cache_size=8))
        xy = np.array([[x, y] for x, y, _ in points], np.float32)
        pred.add_new_points_or_box(state, frame_idx, OBJ_ID, points=xy, labels=np.array([p[2] for p in points]))
        for idx, _, logits in pred.propagate_in_video(state, start_frame_idx=frame_idx):
            yield idx, (logits[0, 0] > 0).cpu().numpy()
        if frame_idx > 0:
            for idx, _, logits in pred.propagate_in_video(state, start_frame_idx=frame_idx, reverse=True):
                if idx != frame_idx:
                    yield idx, (logits[0, 0] > 0).cpu().numpy()

    def track(self, path: str | os.PathLike | VideoInfo, frame_idx: int,
              points: Sequence[tuple[float, float, int]]) -> TrackResult:
        """Check the video and the click, track, and write ``masks/NNNNN.png`` (0/255), ``masks.zip`` and
        ``overlay.gif`` into a new folder under ``work_dir``."""
        info = path if isinstance(path, VideoInfo) else self.open(path)
        self.check_click(info, frame_idx, points)
        points = tuple((float(x), float(y), int(lab)) for x, y, lab in points)
        run = self._new_run_dir()
        mask_dir = run / "masks"
        mask_dir.mkdir()
        areas: dict[int, int] = {}
        t0 = time.perf_counter()
        for idx, mask in self.masks(info, frame_idx, points):
            save_png(mask, mask_dir / f"{idx:05d}.png")
            areas[idx] = int(mask.sum())
        ms = (time.perf_counter() - t0) * 1e3
        if sorted(areas) != list(range(info.num_frames)):
            raise VideoError(f"tracking returned frames {sorted(areas)} for a video of {info.num_frames} frames")
        zipped = self._zip(mask_dir, run / "masks.zip")
        overlay = self._overlay_gif(info, mask_dir, frame_idx, points, run / "overlay.gif")
        return TrackResult(frame_idx, points, mask_dir, zipped, overlay, tuple(areas[i] for i in sorted(areas)), ms)

    @staticmethod
    def _zip(mask_dir: Path, out: Path) -> Path:
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as z:  # PNGs are compressed already
            for f in sorted(mask_dir.glob("*.png")):
                z.write(f, f"masks/{f.name}")
        return out

    def _overlay_gif(self, info: VideoInfo, mask_dir: Path, frame_idx: int,
                     points: Sequence[tuple[float, float, int]], out: Path) -> Path:
        """Every frame with its mask drawn on it (the clicks on the clicked frame), at most ``overlay_side`` px."""
        scale = min(1.0, self.overlay_side / max(info.width, info.height))
        size = (max(1, round(info.width * scale)), max(1, round(info.height * scale)))
        frames = []
        for idx, rgb in enumerate(islice(_decoded_frames(info.path), info.num_frames)):
            mask = np.asarray(Image.open(mask_dir / f"{idx:05d}.png")) > 0
            drawn = mask_overlay(rgb, mask, points if idx == frame_idx else ())
            frames.append(Image.fromarray(drawn).resize(size, Image.Resampling.BILINEAR))
        duration = round(1000 / info.fps) if info.fps else 100
        frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=max(20, duration), loop=0)
        return out
