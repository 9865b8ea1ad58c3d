"""``track_video`` and ``save_masks`` on a short sequence of shifted crops of a photo, with EdgeTAM's random weights
at 256 px (the real model through the real video predictor: the masks are not meaningful, their bookkeeping is)."""

import numpy as np
import pytest
import torch
from PIL import Image

from repvit.sam.sam2 import EdgeTamVideoPredictor, build_edgetam
from repvit.sam.sam2.config import EdgeTamConfig
from repvit.sam.sam2.track import save_masks, track_video
from tests.sam.sam2._helpers import object_always_present

pytest.importorskip("scipy.ndimage")

H, W, N = 60, 80, 4  # the video's size and length


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory):
    data = pytest.importorskip("skimage.data", reason="scikit-image is in the dev extra")
    photo = data.astronaut()
    d = tmp_path_factory.mktemp("frames")
    for i in range(N):  # the camera pans right by 6 px a frame
        Image.fromarray(photo[100:100 + H, 150 + 6 * i:150 + 6 * i + W]).save(d / f"{i:05d}.jpg", quality=95)
    return d


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(3)  # a seed whose masks cover part of each frame
    model = build_edgetam(config=EdgeTamConfig(image_size=256, binarize_mask_from_pts_for_mem_enc=True))
    return EdgeTamVideoPredictor(object_always_present(model))


def _as_frames(masks):
    return [(i, m.copy()) for i, m in masks]


def test_track_video_from_a_middle_frame_covers_every_frame_in_order(predictor, frames_dir):
    got = _as_frames(track_video(predictor, frames_dir, points=[[40, 30]], frame_idx=2))
    # the prompted frame, the frames after it, then those before it, nearest first
    assert [i for i, _ in got] == [2, 3, 1, 0]
    assert all(m.dtype == bool and m.shape == (H, W) and 0 < m.sum() < H * W for _, m in got)
    # the same as driving the predictor by hand
    state = predictor.init_state(frames_dir)
    _, _, prompted = predictor.add_new_points_or_box(state, 2, 1, points=[[40, 30]], labels=[1])
    assert np.array_equal(got[0][1], prompted[0, 0].numpy() > 0)
    forward = {i: m[0, 0].numpy() > 0 for i, _, m in predictor.propagate_in_video(state, start_frame_idx=2)}
    backward = {i: m[0, 0].numpy() > 0 for i, _, m in predictor.propagate_in_video(state, 2, reverse=True)}
    for i, m in got[1:]:
        assert np.array_equal(m, forward[i] if i > 2 else backward[i])


def test_track_video_directions_and_errors(predictor, frames_dir):
    forward = [i for i, _ in track_video(predictor, frames_dir, box=[10, 10, 50, 40], frame_idx=1,
                                         direction="forward")]
    assert forward == [1, 2, 3]
    backward = [i for i, _ in track_video(predictor, frames_dir, points=[[5, 5]], labels=[0], frame_idx=1,
                                          direction="backward")]
    assert backward == [1, 0]
    with pytest.raises(ValueError, match="direction"):
        next(track_video(predictor, frames_dir, points=[[5, 5]], direction="sideways"))
    with pytest.raises(ValueError, match="points"):
        next(track_video(predictor, frames_dir))
    with pytest.raises(ValueError, match=r"frame_idx must be an int in \[0, 3\]"):
        next(track_video(predictor, frames_dir, points=[[5, 5]], frame_idx=N))


def test_save_masks_writes_one_png_per_frame_and_a_gif(predictor, frames_dir, tmp_path):
    masks = track_video(predictor, frames_dir, points=[[40, 30]], frame_idx=1)
    res = save_masks(masks, tmp_path, video=frames_dir, prompts={"frame_idx": 1, "points": [(40, 30, 1)]})
    files = sorted(p.name for p in (tmp_path / "masks").iterdir())
    assert files == [f"{i:05d}.png" for i in range(N)] and res["frames"] == list(range(N))
    for i, name in enumerate(files):
        png = np.asarray(Image.open(tmp_path / "masks" / name))
        assert png.shape == (H, W) and png.dtype == np.uint8 and set(np.unique(png)) <= {0, 255}
        assert res["mask_pixels"][i] == int((png == 255).sum())
    with Image.open(res["overlay"]) as gif:
        assert gif.format == "GIF" and gif.n_frames == N and gif.size == (W, H)


def test_save_masks_overlay_blends_the_mask(tmp_path, frames_dir):
    mask = np.zeros((H, W), bool)
    mask[10:30, 20:60] = True
    res = save_masks([(1, mask), (0, ~mask)], tmp_path, video=frames_dir, gif_max_side=40)
    assert res["frames"] == [0, 1] and res["mask_pixels"] == [int((~mask).sum()), int(mask.sum())]
    with Image.open(res["overlay"]) as gif:
        assert gif.n_frames == 2 and gif.size == (40, 30)  # shrunk to the longer side asked for
        gif.seek(1)
        shown = np.asarray(gif.convert("RGB").resize((W, H))).astype(int)
    original = np.asarray(Image.open(frames_dir / "00001.jpg")).astype(int)
    diff = np.abs(shown - original).sum(-1)
    assert diff[12:28, 22:58].mean() > 3 * diff[~mask].mean()  # tinted only under the mask
    assert save_masks([], tmp_path / "none", video=frames_dir)["overlay"] is None
