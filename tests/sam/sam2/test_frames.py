"""Frames for EdgeTAM's video predictor: folders of JPEG/PNG frames and video files, read lazily."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from repvit.sam.sam2.frames import FrameFolder, VideoFile, open_video_frames, preprocess_frame

SIZE = 32


def _frame(i: int, h: int = 24, w: int = 40) -> np.ndarray:
    """A frame whose content says its index: a bright square that moves right by 4 px per frame."""
    img = np.full((h, w, 3), 20, np.uint8)
    img[4:12, 2 + 4 * i : 10 + 4 * i] = (250, 200, 150)
    return img


def _write_folder(folder: Path, names: list[str], h: int = 24, w: int = 40) -> Path:
    folder.mkdir(exist_ok=True)
    for i, name in enumerate(names):
        Image.fromarray(_frame(i, h, w)).save(folder / name)
    return folder


def test_preprocess_matches_sam2_loader():
    """Resize ignoring aspect (PIL bicubic), /255 in float64, then ImageNet mean/std in float32."""
    img = Image.fromarray(_frame(1))
    got = preprocess_frame(img, SIZE)
    arr = np.array(img.convert("RGB").resize((SIZE, SIZE))) / 255.0  # the authors' steps, written out
    want = torch.from_numpy(arr).permute(2, 0, 1).float()
    want -= torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    want /= torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    assert got.dtype == torch.float32 and got.shape == (3, SIZE, SIZE)
    assert torch.equal(got, want)


def test_folder_orders_frames_by_number_and_records_size(tmp_path):
    names = ["0.png", "2.png", "10.png", "1.jpg"]  # written in this order: frame content i for names[i]
    folder = _write_folder(tmp_path / "v", names)
    (folder / "notes.txt").write_text("not a frame")
    frames = open_video_frames(folder, image_size=SIZE)
    assert isinstance(frames, FrameFolder)
    assert [p.name for p in frames.paths] == ["0.png", "1.jpg", "2.png", "10.png"]
    assert (len(frames), frames.height, frames.width) == (4, 24, 40)
    assert torch.equal(frames[2], preprocess_frame(Image.open(folder / "2.png"), SIZE))
    assert torch.equal(frames[-1], frames[3])


def test_folder_names_with_prefix(tmp_path):
    folder = _write_folder(tmp_path / "v", ["frame_0009.jpg", "frame_0010.jpg", "frame_0002.jpg"])
    assert [p.name for p in FrameFolder(folder, SIZE).paths] == ["frame_0002.jpg", "frame_0009.jpg", "frame_0010.jpg"]


def test_folder_cache_is_bounded(tmp_path):
    folder = _write_folder(tmp_path / "v", [f"{i:05d}.png" for i in range(6)])
    frames = FrameFolder(folder, SIZE, cache_size=2)
    for i in range(6):
        frames[i]
    assert sorted(frames._cache) == [4, 5]
    (folder / "00001.png").unlink()  # a cached frame is not read again, an evicted one is
    frames[5]
    with pytest.raises(ValueError, match="00001.png"):
        frames[1]


@pytest.mark.parametrize(
    "setup, match",
    [
        (lambda d: None, "no JPEG or PNG frames"),
        (lambda d: (d / "00000.jpg").write_bytes(b"not a jpeg"), "cannot read frame .*00000.jpg"),
        (lambda d: _write_folder(d, ["a.png"]), "no number"),
        (lambda d: _write_folder(d, ["1.png", "1.jpg"]), "same number 1"),
        (lambda d: (_write_folder(d, ["0.png"]), Image.fromarray(_frame(0, 10, 10)).save(d / "1.png")), "one size"),
    ],
)
def test_folder_errors(tmp_path, setup, match):
    folder = tmp_path / "v"
    folder.mkdir()
    setup(folder)
    with pytest.raises(ValueError, match=match):
        open_video_frames(folder, image_size=SIZE)


def test_open_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_video_frames(tmp_path / "missing.mp4")
    Image.fromarray(_frame(0)).save(tmp_path / "one.png")
    with pytest.raises(ValueError, match="single image"):
        open_video_frames(tmp_path / "one.png")


def test_index_errors(tmp_path):
    frames = FrameFolder(_write_folder(tmp_path / "v", ["0.png", "1.png"]), SIZE)
    with pytest.raises(IndexError, match="out of range"):
        frames[2]
    with pytest.raises(TypeError):
        frames["0"]


# --- video files (PyAV) ---


def _write_mp4(path: Path, n: int, h: int = 24, w: int = 40, gop: int = 4) -> list[np.ndarray]:
    """A tiny lossless-ish H.264 (or MPEG-4) video; returns the frames as decoded sequentially."""
    av = pytest.importorskip("av")
    with av.open(str(path), "w") as out:
        codecs = [c for c in ("libx264", "mpeg4") if c in av.codecs_available]
        stream = out.add_stream(codecs[0], rate=10)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.gop_size = gop
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(_frame(i % 8, h, w), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    with av.open(str(path)) as inp:
        return [np.asarray(f.to_image()) for f in inp.decode(video=0)]


def test_video_file_random_access_matches_sequential_decode(tmp_path):
    decoded = _write_mp4(tmp_path / "v.mp4", 13)
    frames = open_video_frames(tmp_path / "v.mp4", image_size=SIZE, cache_size=3)
    assert isinstance(frames, VideoFile)
    assert (len(frames), frames.height, frames.width) == (13, 24, 40)
    want = [preprocess_frame(Image.fromarray(a), SIZE) for a in decoded]
    order = list(range(13)) + list(range(12, -1, -1)) + [7, 0, 11, 3]  # forward, reverse, jumps
    for i in order:
        assert torch.equal(frames[i], want[i]), i
    assert len(frames._cache) <= 3
    frames.close()
    assert torch.equal(frames[5], want[5])  # reopens after close


def test_video_file_reads_the_first_frame_after_the_last(tmp_path):
    """Frame 0 after the decoder reached the end of the file (e.g. an overlay drawn after tracking both ways)."""
    decoded = _write_mp4(tmp_path / "v.mp4", 6)
    frames = open_video_frames(tmp_path / "v.mp4", image_size=SIZE, cache_size=1)
    for i in [*range(6), 0, 5, 0]:
        assert np.array_equal(np.asarray(frames.read_frame(i)), decoded[i]), i


def test_video_file_errors(tmp_path):
    pytest.importorskip("av")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video at all" * 10)
    with pytest.raises(ValueError, match="not a video file"):
        open_video_frames(bad)


def test_video_file_without_pyav_names_the_extra(tmp_path, monkeypatch):
    import repvit.sam.sam2.frames as frames_module

    def missing(name):
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr(frames_module.importlib, "import_module", missing)
    (tmp_path / "v.mp4").write_bytes(b"x")
    with pytest.raises(ImportError, match=r"repvit-pytorch\[video\]"):
        open_video_frames(tmp_path / "v.mp4")
