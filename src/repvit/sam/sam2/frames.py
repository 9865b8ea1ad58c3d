"""Video frames for EdgeTAM's video predictor: a folder of JPEG/PNG frames or a video file, read lazily.

Each frame is preprocessed as SAM 2's loader does: converted to RGB, resized to ``image_size`` x ``image_size``
ignoring the aspect ratio (PIL's bicubic filter), scaled to [0, 1] and normalized with ImageNet's mean and std.
Frames are read when asked for and kept in a small least-recently-used cache, so a long video is never held in
memory at once. Video files are decoded with PyAV (``pip install 'repvit-pytorch[video]'``).
"""

from __future__ import annotations

import importlib
import re
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from PIL import Image

__all__ = [
    "FRAME_SUFFIXES",
    "VideoFrames",
    "FrameFolder",
    "VideoFile",
    "open_video_frames",
    "preprocess_frame",
    "resize_frame",
    "normalize_frame",
]

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# uint8 -> float32 through float64 (x / 255.0), the values SAM 2's loader produces
_UNIT_SCALE = (np.arange(256, dtype=np.float64) / 255.0).astype(np.float32)
_MEAN = torch.tensor(IMAGENET_MEAN, dtype=torch.float32)[:, None, None]
_STD = torch.tensor(IMAGENET_STD, dtype=torch.float32)[:, None, None]


def resize_frame(image: Image.Image, image_size: int) -> np.ndarray:
    """A frame resized as SAM 2's loader does: RGB, ``image_size`` squared (bicubic), uint8 ``(S, S, 3)``."""
    return np.asarray(image.convert("RGB").resize((image_size, image_size), Image.Resampling.BICUBIC))


def normalize_frame(resized: np.ndarray) -> torch.Tensor:
    """A resized uint8 ``(S, S, 3)`` frame as the model's input: float32 ``(3, S, S)``, ImageNet-normalized."""
    img = torch.from_numpy(_UNIT_SCALE[resized]).permute(2, 0, 1)
    return (img - _MEAN) / _STD


def preprocess_frame(image: Image.Image, image_size: int) -> torch.Tensor:
    """A frame as the model's input: RGB, ``image_size`` squared, ImageNet-normalized, float32 ``(3, S, S)``."""
    return normalize_frame(resize_frame(image, image_size))


class VideoFrames(Sequence):
    """Preprocessed frames of one video, read on demand with a small cache.

    ``frames[i]`` is frame ``i`` as a float32 ``(3, image_size, image_size)`` tensor; ``height`` and ``width`` are
    the video's own size (the size masks are returned at). The cache holds the last ``cache_size`` frames read,
    resized but kept as uint8 (``3 * image_size**2`` bytes each).
    """

    def __init__(self, num_frames: int, height: int, width: int, image_size: int, cache_size: int) -> None:
        if cache_size < 1:
            raise ValueError(f"cache_size must be at least 1, got {cache_size}")
        self.num_frames, self.height, self.width = num_frames, height, width
        self.image_size, self.cache_size = image_size, cache_size
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return self.num_frames

    def __getitem__(self, index: int) -> torch.Tensor:  # type: ignore[override]
        if not isinstance(index, int | np.integer):
            raise TypeError(f"frames are indexed by an int, got {type(index).__name__}")
        index = int(index) + (self.num_frames if index < 0 else 0)
        if not 0 <= index < self.num_frames:
            raise IndexError(f"frame index {index} is out of range for a video of {self.num_frames} frames")
        resized = self._cache.get(index)
        if resized is None:
            resized = self._remember(index, resize_frame(self.read_frame(index), self.image_size))
        self._cache.move_to_end(index)
        return normalize_frame(resized)

    def _remember(self, index: int, resized: np.ndarray) -> np.ndarray:
        self._cache[index] = resized
        self._cache.move_to_end(index)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return resized

    def read_frame(self, index: int) -> Image.Image:
        raise NotImplementedError


def _frame_number(path: Path) -> int:
    digits = re.findall(r"\d+", path.stem)
    if not digits:
        raise ValueError(f"frame file {path} has no number in its name; name frames like 00000.jpg, 00001.jpg, ...")
    return int(digits[-1])


def _frame_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"cannot read frame {path}: {e}") from e


class FrameFolder(VideoFrames):
    """A folder of JPEG/PNG frames, ordered by the number in each file name (``00000.jpg``, ``00001.jpg``, ...)."""

    def __init__(self, folder: str | Path, image_size: int = 1024, cache_size: int = 32) -> None:
        folder = Path(folder)
        files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES]
        if not files:
            raise ValueError(f"no JPEG or PNG frames found in {folder}")
        numbered = sorted((_frame_number(p), p.name, p) for p in files)
        for (n0, _, p0), (n1, _, p1) in zip(numbered, numbered[1:]):
            if n0 == n1:
                raise ValueError(f"frames {p0.name} and {p1.name} in {folder} have the same number {n0}")
        self.paths = [p for _, _, p in numbered]
        width, height = _frame_size(self.paths[0])
        for path in self.paths[1:]:
            w, h = _frame_size(path)
            if (w, h) != (width, height):
                raise ValueError(
                    f"frame {path} is {w}x{h} but the video's first frame {self.paths[0].name} is "
                    f"{width}x{height}; all frames must have one size"
                )
        super().__init__(len(self.paths), height, width, image_size, cache_size)

    def read_frame(self, index: int) -> Image.Image:
        path = self.paths[index]
        try:
            with Image.open(path) as img:
                img.load()
                return img.copy()
        except (OSError, SyntaxError, ValueError) as e:
            raise ValueError(f"cannot read frame {path}: {e}") from e


def _require_av() -> ModuleType:
    try:
        return importlib.import_module("av")
    except ImportError as e:
        raise ImportError(
            "PyAV is needed to read video files but is not installed: pip install 'repvit-pytorch[video]' "
            "(or pass a folder of JPEG/PNG frames)"
        ) from e


class VideoFile(VideoFrames):
    """A video file (MP4, AVI, MOV, WebM, ...) decoded with PyAV, one frame at a time.

    Opening the file decodes it once to count the frames and note each frame's timestamp. Reading frames in order
    continues one decoder; reading backwards or far ahead seeks to the keyframe before the frame and decodes
    forward, caching the frames just before it, so tracking backwards does not decode a group of pictures anew for
    every frame. Call :meth:`close` (or use ``with``) to release the file early.
    """

    #: how far ahead of the decoder a frame may be and still be reached by decoding on instead of seeking
    read_ahead = 64

    def __init__(self, path: str | Path, image_size: int = 1024, cache_size: int = 32) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"video file {self.path} does not exist")
        self._av = _require_av()
        self._container, self._decoder, self._position = None, None, -1
        pts, size = self._scan()
        self._pts_to_index = {p: i for i, p in enumerate(pts)}
        self._seekable = None not in pts and len(self._pts_to_index) == len(pts)
        self._pts = pts
        super().__init__(len(pts), size[1], size[0], image_size, cache_size)

    def _scan(self) -> tuple[list[int | None], tuple[int, int]]:
        pts, size = [], (0, 0)
        with self._open() as container:
            try:
                for frame in container.decode(video=0):
                    size = size if pts else (frame.width, frame.height)
                    pts.append(frame.pts)
            except self._av.error.FFmpegError as e:
                raise ValueError(f"cannot decode frame {len(pts)} of {self.path}: {e}") from e
        if not pts:
            raise ValueError(f"{self.path} has a video stream but no frame could be decoded from it")
        return pts, size

    def _open(self):
        try:
            container = self._av.open(str(self.path))
        except self._av.error.FFmpegError as e:
            raise ValueError(f"{self.path} is not a video file PyAV can read: {e}") from e
        if not container.streams.video:
            container.close()
            raise ValueError(f"{self.path} has no video stream")
        return container

    def _restart(self, index: int, seek: bool = True) -> None:
        """Put the decoder before frame ``index``: at the keyframe before it, or at the file's start."""
        if self._container is None or not (seek and self._seekable and index > 0):
            self.close()
            self._container = self._open()
        if seek and self._seekable and index > 0:
            stream = self._container.streams.video[0]
            self._container.seek(self._pts[index], stream=stream, backward=True, any_frame=False)
        self._decoder = self._container.decode(video=0)
        self._position = -1

    def read_frame(self, index: int) -> Image.Image:
        if self._decoder is None or not self._position < index <= self._position + self.read_ahead:
            self._restart(index)
        image = self._decode_until(index)
        if image is None:  # the seek landed past the frame: decode from the start instead
            self._restart(index, seek=False)
            image = self._decode_until(index)
        if image is None:
            self.close()
            raise ValueError(f"frame {index} of {self.path} could not be decoded (the file changed after opening?)")
        return image

    def _decode_until(self, index: int) -> Image.Image | None:
        try:
            for frame in self._decoder:
                self._position = self._pts_to_index[frame.pts] if self._seekable else self._position + 1
                if self._position == index:
                    return frame.to_image()
                if self._position > index:
                    return None
                if index - self._position < self.cache_size:
                    self._remember(self._position, resize_frame(frame.to_image(), self.image_size))
        except (self._av.error.FFmpegError, KeyError) as e:
            self.close()
            raise ValueError(f"cannot decode frame {index} of {self.path}: {e}") from e
        return None

    def close(self) -> None:
        """Close the decoder; frames read later reopen the file."""
        if self._container is not None:
            self._container.close()
        self._container, self._decoder, self._position = None, None, -1

    def __enter__(self) -> VideoFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_video_frames(video: str | Path, image_size: int = 1024, cache_size: int | None = None) -> VideoFrames:
    """Open a folder of JPEG/PNG frames or a video file as lazily read, preprocessed frames.

    Args:
        video: a folder of frames named by their number, or a video file PyAV can decode.
        image_size: the model's input size; every frame is resized to ``image_size`` x ``image_size``.
        cache_size: how many resized frames to keep in memory (``3 * image_size**2`` bytes each; 32 if not given).
    """
    path = Path(video)
    if path.is_dir():
        return FrameFolder(path, image_size, cache_size or 32)
    if not path.exists():
        raise FileNotFoundError(f"{path} is neither a folder of frames nor a video file: it does not exist")
    if path.suffix.lower() in FRAME_SUFFIXES:
        raise ValueError(f"{path} is a single image; pass the folder that holds the video's frames")
    return VideoFile(path, image_size, cache_size or 32)
