"""The app's video session (:mod:`repvit.sam.sam2.video_session`): limits and clear errors for what users upload,
the click check, and a real EdgeTAM track (random weights saved with ``save_edgetam`` and loaded from the file, 256 px
input to keep it quick) through a tiny MP4 written with PyAV from shifted crops of a scikit-image photo.

``write_video`` and ``small_video_predictor`` are in tests/sam/sam2/_helpers.py.
"""

import zipfile

import numpy as np
import pytest
from PIL import Image

from repvit.sam.prompts import PromptError
from tests.sam.sam2._helpers import VIDEO_H, VIDEO_N, VIDEO_W, small_video_predictor, write_video

pytest.importorskip("av", reason="video files need PyAV: pip install 'repvit-pytorch[video]'")
pytest.importorskip("scipy.ndimage")

W, H, N = VIDEO_W, VIDEO_H, VIDEO_N  # the test video's size and length


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4")


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    from repvit.sam.sam2.video_session import VideoSession

    d = tmp_path_factory.mktemp("video_session")
    return VideoSession(small_video_predictor(d), max_frames=N, work_dir=d / "runs", keep=2,
                        limit_hint="pass --max-video-frames N")


def test_open_reads_the_frame_count_size_and_frames(session, video):
    info = session.open(video)
    assert (info.num_frames, info.width, info.height) == (N, W, H) and info.fps == pytest.approx(10)
    frame = session.frame(info, 2)
    assert frame.shape == (H, W, 3) and frame.dtype == np.uint8
    from skimage import data

    expected = data.astronaut()[40:40 + H, 162:162 + W].astype(float)
    assert np.abs(frame.astype(float) - expected).mean() < 8  # the third crop, through lossy H.264


def test_refuses_what_is_not_a_video(session, tmp_path):
    from repvit.sam.sam2.video_session import VideoError

    text = tmp_path / "notes.mp4"
    text.write_text("this is a text file, not a video\n" * 20)
    with pytest.raises(VideoError, match="notes.mp4 is not a video file"):
        session.open(text)
    photo = tmp_path / "photo.png"
    Image.new("RGB", (32, 32)).save(photo)
    with pytest.raises(VideoError, match="single image"):
        session.open(photo)
    with pytest.raises(VideoError, match="does not exist"):
        session.open(tmp_path / "missing.mp4")


def test_refuses_a_video_over_the_limits(session, tmp_path):
    from repvit.sam.sam2.video_session import VideoError, VideoSession

    long = write_video(tmp_path / "long.mp4", n=N + 1)
    with pytest.raises(VideoError, match=rf"more than {N} frames, the limit .*or pass --max-video-frames N\."):
        session.open(long)
    tiny = VideoSession(session.predictor, max_frames=N + 1, max_mb=1e-4, work_dir=tmp_path / "w")
    with pytest.raises(VideoError, match=r"MB, over the limit of 0.0001 MB.*max_frames / max_mb"):
        tiny.open(long)
    assert VideoSession(session.predictor, max_frames=N + 1, work_dir=tmp_path / "w").open(long).num_frames == N + 1


def test_refuses_a_click_outside_the_frame_or_a_frame_out_of_range(session, video):
    from repvit.sam.sam2.video_session import VideoError

    info = session.open(video)
    with pytest.raises(PromptError, match=f"outside the image.*{W} x {H}"):
        session.check_click(info, 0, [(W + 5, 10, 1)])
    with pytest.raises(VideoError, match=f"frame {N} is out of range.*0 to {N - 1}"):
        session.track(info, N, [(10, 10, 1)])
    with pytest.raises(VideoError, match="click on the object"):
        session.check_click(info, 0, [])


def test_track_writes_one_mask_per_frame_a_zip_and_an_overlay(session, video):
    runs = []
    for frame_idx in (2, 0):  # from a middle frame (forward, then backward), then from the first
        res = session.track(video, frame_idx, [(80.0, 60.0, 1)])
        runs.append(res)
        assert res.num_frames == N and res.frame_idx == frame_idx and res.track_ms > 0
        pngs = sorted(p.name for p in res.mask_dir.iterdir())
        assert pngs == [f"{i:05d}.png" for i in range(N)]
        for i, name in enumerate(pngs):
            m = np.asarray(Image.open(res.mask_dir / name))
            assert m.shape == (H, W) and set(np.unique(m)) <= {0, 255} and (m > 0).sum() == res.areas[i]
        with zipfile.ZipFile(res.masks_zip) as z:
            assert sorted(z.namelist()) == [f"masks/{n}" for n in pngs]
            assert z.read(f"masks/{pngs[1]}") == (res.mask_dir / pngs[1]).read_bytes()
        gif = Image.open(res.overlay)
        assert gif.format == "GIF" and gif.n_frames == N and gif.size == (W, H)
        first = np.asarray(gif.convert("RGB"))
        assert not np.array_equal(first, session.frame(session.open(video), 0))  # something is drawn on it
    assert all(0 < a for a in runs[0].areas) and any(a < W * H for a in runs[0].areas)  # masks that say something
    assert runs[0].mask_dir.parent != runs[1].mask_dir.parent  # a folder per run
    session.track(video, 0, [(80.0, 60.0, 1)])
    assert not runs[0].mask_dir.exists() and runs[1].mask_dir.exists()  # keep=2: the oldest run is deleted


def test_track_equals_the_video_predictor_on_the_clicked_frame(session, video):
    res = session.track(video, 1, [(80.0, 60.0, 1), (20.0, 100.0, 0)])
    pred = session.predictor
    state = pred.init_state(str(video))
    _, _, logits = pred.add_new_points_or_box(state, 1, 1, points=[[80, 60], [20, 100]], labels=[1, 0])
    expected = (logits[0, 0] > 0).numpy()
    assert 0 < expected.sum() < W * H
    assert np.array_equal(np.asarray(Image.open(res.mask_dir / "00001.png")) > 0, expected)


def test_a_run_in_progress_is_never_deleted_by_another(session, video, tmp_path):
    """keep=1 and two tracks at once: the second run's clean-up must leave the first's folder alone."""
    import threading

    from repvit.sam.sam2.video_session import VideoSession

    one = VideoSession(session.predictor, max_frames=N, work_dir=tmp_path / "runs", keep=1)
    started, go = threading.Event(), threading.Event()
    real = one._zip

    def held_zip(mask_dir, out):  # the first run waits before zipping until the second has started
        if not started.is_set():
            started.set()
            assert go.wait(60)
        return real(mask_dir, out)

    one._zip = held_zip
    results = {}
    first = threading.Thread(target=lambda: results.setdefault("first", one.track(video, 0, [(80.0, 60.0, 1)])))
    first.start()
    assert started.wait(120)
    results["second"] = one.track(video, 1, [(80.0, 60.0, 1)])
    go.set()
    first.join(120)
    assert set(results) == {"first", "second"}  # the first run finished (its folder was not deleted under it)
    assert results["second"].masks_zip.is_file() and results["first"].masks_zip.is_file()
    one.track(video, 2, [(80.0, 60.0, 1)])  # both finished: keep=1 deletes them now
    assert not results["first"].mask_dir.exists() and not results["second"].mask_dir.exists()


def test_own_work_folder_is_removed_with_the_session(session):
    import gc

    from repvit.sam.sam2.video_session import VideoSession

    own = VideoSession(session.predictor, max_frames=N)
    folder = own.work_dir
    assert folder.is_dir() and folder.name.startswith("repvit_video_")
    del own
    gc.collect()
    assert not folder.exists()
    given = session.work_dir  # a folder the caller named stays
    assert given.is_dir()
