"""The app's video side without any UI: :class:`VideoSession` checks an uploaded video against the configured
limits, shows its frames, checks a click, tracks the clicked object through the video with EdgeTAM's video
predictor (:mod:`repvit.sam.sam2.track`, as ``repvit sam track`` does) and writes the results into a fresh folder:
one 0/255 PNG mask per frame (``masks/00000.png``, ...), the masks as a zip, and an animated GIF of the frames with
the mask drawn on them.

``repvit sam app`` (:mod:`repvit.sam.app`) puts a Gradio tab on it. Videos are decoded with PyAV
(``pip install 'repvit-pytorch[video]'``); frame ``i`` is the ``i``-th decoded frame, as in
:class:`~repvit.sam.sam2.frames.VideoFile`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import weakref
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import torch

from repvit.runtime import require
from repvit.sam.prompts import validate_prompts

from .frames import FRAME_SUFFIXES, open_video_frames
from .track import save_masks, track_video
from .video_predictor import EdgeTamVideoPredictor

__all__ = ["VideoError", "VideoInfo", "TrackResult", "VideoSession", "DEFAULT_MAX_FRAMES", "DEFAULT_MAX_MB"]

DEFAULT_MAX_FRAMES = 150
DEFAULT_MAX_MB = 100.0


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
        work_dir: where each tracking run gets its folder (default: a new temporary folder, removed with the session
            or at exit).
        keep: how many finished runs' folders to keep; older ones are deleted (never a run in progress, so
            concurrent ``track`` calls are safe).
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
        if work_dir:
            self.work_dir = Path(work_dir)
            self.work_dir.mkdir(parents=True, exist_ok=True)
        else:  # a folder of its own, removed when the session goes or at exit
            self.work_dir = Path(tempfile.mkdtemp(prefix="repvit_video_"))
            weakref.finalize(self, shutil.rmtree, self.work_dir, ignore_errors=True)
        self.keep, self.overlay_side, self.limit_hint = max(1, keep), overlay_side, limit_hint
        self._runs_lock = threading.Lock()
        self._running: set[Path] = set()

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
        """A new run folder (marked running), after deleting the oldest finished runs beyond ``keep - 1``; under a
        lock, so that concurrent runs neither delete each other's folder nor stat one being deleted."""
        with self._runs_lock:
            runs = sorted((d for d in self.work_dir.iterdir() if d.is_dir() and d not in self._running),
                          key=lambda d: d.stat().st_mtime)
            for old in runs[:max(0, len(runs) - self.keep + 1)]:
                shutil.rmtree(old, ignore_errors=True)
            run = Path(tempfile.mkdtemp(prefix="track_", dir=self.work_dir))
            self._running.add(run)
            return run

    def track(self, path: str | os.PathLike | VideoInfo, frame_idx: int,
              points: Sequence[tuple[float, float, int]]) -> TrackResult:
        """Check the video and the click, track the object from ``frame_idx`` forwards, then backwards
        (:func:`~repvit.sam.sam2.track.track_video`), and write ``masks/NNNNN.png`` (0/255), ``overlay.gif``
        (:func:`~repvit.sam.sam2.track.save_masks`) and ``masks.zip`` into a new folder under ``work_dir``."""
        info = path if isinstance(path, VideoInfo) else self.open(path)
        self.check_click(info, frame_idx, points)
        points = tuple((float(x), float(y), int(lab)) for x, y, lab in points)
        run = self._new_run_dir()
        try:
            frames = open_video_frames(info.path, image_size=self.predictor.image_size, cache_size=8)
            t0 = time.perf_counter()
            with torch.inference_mode():
                masks = track_video(self.predictor, frames, points=[p[:2] for p in points],
                                    labels=[p[2] for p in points], frame_idx=frame_idx)
                saved = save_masks(masks, run, video=frames, prompts={"frame_idx": frame_idx, "points": points},
                                   gif_max_side=self.overlay_side, gif_fps=info.fps or 10.0)
            ms = (time.perf_counter() - t0) * 1e3
            if saved["frames"] != list(range(info.num_frames)):
                raise VideoError(f"tracking returned frames {saved['frames']} for a video of {info.num_frames} "
                                 "frames")
            mask_dir = Path(saved["masks_dir"])
            masks_zip = self._zip(mask_dir, run / "masks.zip")
        finally:
            with self._runs_lock:
                self._running.discard(run)
        return TrackResult(frame_idx, points, mask_dir, masks_zip, Path(saved["overlay"]),
                           tuple(saved["mask_pixels"]), ms)

    @staticmethod
    def _zip(mask_dir: Path, out: Path) -> Path:
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as z:  # PNGs are compressed already
            for f in sorted(mask_dir.glob("*.png")):
                z.write(f, f"masks/{f.name}")
        return out
