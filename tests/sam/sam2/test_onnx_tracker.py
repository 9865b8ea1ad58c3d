"""The ONNX-Runtime-only tracker against the PyTorch video predictor on the same (perturbed random) weights: the
same masks on every frame of a 6-frame video of shifted scikit-image photo crops, and its NumPy helpers against
their PyTorch counterparts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from repvit.sam.sam2.export import export_edgetam_onnx
from repvit.sam.sam2.onnx_tracker import OnnxEdgeTamTracker, resize_bilinear, round_to_bfloat16, select_mask
from repvit.sam.sam2.video_predictor import EdgeTamVideoPredictor
from tests.helpers import cpu_threads
from tests.sam.sam2._helpers import sample_image, small_edgetam

pytest.importorskip("onnxruntime", reason="the ONNX tracker needs onnxruntime: pip install 'repvit-pytorch[onnx]'")

NUM_FRAMES = 6
CLICK = [[200.0, 150.0]]


def write_video(folder, num_frames: int = NUM_FRAMES):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(num_frames):
        Image.fromarray(sample_image(i)).save(folder / f"{i:05d}.png")
    return folder


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.set_num_threads(cpu_threads())
    model = small_edgetam()
    onnx_dir = tmp_path_factory.mktemp("edgetam_onnx")
    export_edgetam_onnx(model, onnx_dir, check=False)  # parity is test_export's
    video = write_video(tmp_path_factory.mktemp("video"))
    return model, OnnxEdgeTamTracker(onnx_dir), video


def track_both(torch_predictor, onnx_tracker, video, steps):
    """Run the same calls on both predictors; returns per step the (torch, onnx) masks by frame."""
    states = (torch_predictor.init_state(video), onnx_tracker.init_state(video))
    results = []
    for method, kwargs in steps:
        pair = []
        for predictor, state in zip((torch_predictor, onnx_tracker), states):
            if method == "click":
                frame_idx, _, masks = predictor.add_new_points_or_box(state, obj_id=1, **kwargs)
                out = {frame_idx: masks}
            else:
                out = {f: masks for f, _, masks in predictor.propagate_in_video(state, **kwargs)}
            pair.append({f: np.asarray(m)[0, 0] for f, m in out.items()})
        results.append(pair)
    return results


def assert_same_masks(results, min_fg: float = 0.01):
    for ref, got in results:
        assert sorted(ref) == sorted(got)
        for f in ref:
            fg = np.mean(ref[f] > 0)
            assert min_fg < fg < 0.9, f"frame {f}: the PyTorch mask is trivial ({fg:.3f} foreground)"
            assert mask_iou(got[f], ref[f]) >= 0.99, f"frame {f}"


def test_onnx_tracker_reproduces_pytorch_predictor(setup):
    model, tracker, video = setup
    steps = [("click", {"frame_idx": 0, "points": CLICK, "labels": [1]}), ("propagate", {})]
    results = track_both(EdgeTamVideoPredictor(model, fill_hole_area=8), tracker, video, steps)
    assert sorted(results[1][0]) == list(range(NUM_FRAMES))
    assert_same_masks(results)
    ref, got = results[1]
    # the logits too, not only the masks: memories are rounded to bfloat16 (steps of 2^-8 relative), so float
    # rounding noise flips a few memory values by one step; the logits still agree within 1%
    assert np.abs(got[5] - ref[5]).max() <= 1e-2 * np.abs(ref[5]).max()


def test_onnx_tracker_correction_and_reverse(setup):
    """A correction click on a tracked frame, propagation from it, then reverse propagation from the end."""
    model, tracker, video = setup
    steps = [
        ("click", {"frame_idx": 0, "points": CLICK, "labels": [1]}),
        ("propagate", {"max_frame_num_to_track": 3}),
        ("click", {"frame_idx": 3, "points": [[260.0, 40.0]], "labels": [0], "clear_old_points": False}),
        ("propagate", {"start_frame_idx": 3}),
        ("propagate", {"start_frame_idx": NUM_FRAMES - 1, "reverse": True}),
    ]
    results = track_both(EdgeTamVideoPredictor(model, fill_hole_area=8), tracker, video, steps)
    assert sorted(results[4][0]) == list(range(NUM_FRAMES))
    assert_same_masks(results)


def test_bank_overflow_and_missing_export_are_clear_errors(setup, tmp_path):
    _, tracker, _ = setup
    with pytest.raises(FileNotFoundError, match="export_edgetam_onnx"):
        OnnxEdgeTamTracker(tmp_path)
    state = tracker.init_state([sample_image(0)] * 2)
    out = {"maskmem_features": np.zeros((512, 64), np.float32), "obj_ptr": np.zeros((1, 256), np.float32)}
    with pytest.raises(ValueError, match="num_memory_slots"):
        tracker._bank_arrays(state, [(0, out)] * 8, [])
    with pytest.raises(ValueError, match="at least one memory"):
        tracker._bank_arrays(state, [], [out["obj_ptr"]])
    with pytest.raises(ValueError, match="frame_idx"):
        tracker.add_new_points_or_box(state, 2, 1, points=CLICK, labels=[1])


@pytest.mark.parametrize("size", [(300, 400), (37, 53), (1024, 1024)])
def test_resize_bilinear_is_torch_interpolate(size):
    x = torch.randn(1, 1, 256, 256) * 10
    ref = F.interpolate(x, size=size, mode="bilinear", align_corners=False).numpy()
    assert np.abs(resize_bilinear(x.numpy(), size) - ref).max() <= 1e-5 * np.abs(ref).max()


def test_round_to_bfloat16_is_torch_bfloat16():
    x = torch.randn(10000) * torch.logspace(-8, 8, 10000)
    x[:4] = torch.tensor([1.00390625, 1.01171875, -1.00390625, 0.0])  # ties to even
    assert np.array_equal(round_to_bfloat16(x.numpy()), x.to(torch.bfloat16).float().numpy())


def test_hole_filling_is_the_pytorch_predictors():
    from repvit.sam.sam2.onnx_tracker import _fill_holes
    from repvit.sam.sam2.postprocess import fill_holes_in_mask_scores

    g = torch.Generator().manual_seed(0)
    logits = F.avg_pool2d(torch.randn(1, 1, 64, 64, generator=g), 3, 1, 1) + 0.1
    ref = fill_holes_in_mask_scores(logits, 8).numpy()
    got = _fill_holes(logits.numpy(), 8)
    assert np.array_equal(got, ref) and not np.array_equal(got, logits.numpy())


def test_select_mask_is_the_decoders_choice(setup):
    model, tracker, _ = setup
    dec = model.sam_mask_decoder
    settings = tracker.manifest["mask_decoder"]
    g = torch.Generator().manual_seed(0)
    ptr = torch.randn(1, 4, 256, generator=g).numpy()
    for scale in (0.01, 100.0):  # unstable and stable token-0 masks
        masks, iou = torch.randn(1, 4, 32, 32, generator=g) * scale, torch.rand(1, 4, generator=g)
        ref_mask, ref_iou = dec._dynamic_multimask_via_stability(masks, iou)
        mask, got_iou, got_ptr = select_mask(masks.numpy(), iou.numpy(), np.ones((1, 1)), ptr, False, settings)
        assert np.array_equal(mask, ref_mask.numpy()) and np.array_equal(got_iou, ref_iou.numpy())
        assert np.array_equal(got_ptr, ptr[:, 0])
    mask, _, got_ptr = select_mask(masks.numpy(), iou.numpy(), -np.ones((1, 1)), ptr, True, settings)
    best = 1 + int(iou[0, 1:].argmax())
    assert np.all(mask == settings["no_obj_score"]) and np.array_equal(got_ptr, ptr[:, best])


@pytest.mark.slow
def test_onnx_tracker_reproduces_pytorch_predictor_at_1024(tmp_path):
    """The published model's size: 1024 px frames, 64x64 embeddings, 4096-token memory maps."""
    torch.set_num_threads(cpu_threads())
    model = small_edgetam(1024)
    export_edgetam_onnx(model, tmp_path / "onnx", check=False)
    video = write_video(tmp_path / "video")
    steps = [("click", {"frame_idx": 0, "points": CLICK, "labels": [1]}), ("propagate", {})]
    results = track_both(EdgeTamVideoPredictor(model, fill_hole_area=8), OnnxEdgeTamTracker(tmp_path / "onnx"),
                         video, steps)
    assert sorted(results[1][0]) == list(range(NUM_FRAMES))
    assert_same_masks(results)
