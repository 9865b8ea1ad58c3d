"""``repvit sam predict`` and ``segment-all`` end to end on a real photo (scikit-image's astronaut)."""

import numpy as np
import pytest
from PIL import Image

from repvit.cli.main import main
from repvit.sam import save_repvit_sam


@pytest.fixture(scope="module")
def files(small_sam, astronaut, tmp_path_factory):
    d = tmp_path_factory.mktemp("sam_cli")
    Image.fromarray(astronaut).save(d / "astronaut.png")
    return d / "astronaut.png", save_repvit_sam(small_sam, d / "sam.safetensors")


def test_predict_writes_mask_and_overlay(files, small_sam, astronaut, tmp_path, capsys):
    from segment_anything import SamPredictor

    image, ckpt = files
    rc = main(["sam", "predict", str(image), "--checkpoint", str(ckpt), "--point", "250,150", "--point", "300,420,0",
               "--box", "100,30,420,500", "--output-dir", str(tmp_path)])
    assert rc == 0 and "predicted IoU" in capsys.readouterr().out
    with Image.open(tmp_path / "astronaut_mask.png") as im:  # a 1-bit PNG: a bool array
        assert im.mode == "1"
        mask = np.asarray(im)
    overlay = np.asarray(Image.open(tmp_path / "astronaut_overlay.png"))
    assert mask.shape == astronaut.shape[:2] and mask.dtype == bool
    assert overlay.shape == astronaut.shape and not np.array_equal(overlay, astronaut)
    # the same mask as segment_anything's predictor with the same prompts
    p = SamPredictor(small_sam)
    p.set_image(astronaut)
    ref, _, _ = p.predict(point_coords=np.array([[250.0, 150], [300, 420]]), point_labels=np.array([1, 0]),
                          box=np.array([100.0, 30, 420, 500]), multimask_output=False)
    assert np.array_equal(mask > 0, ref[0])


def test_segment_all_writes_coloured_overlay(files, astronaut, tmp_path, capsys):
    image, ckpt = files
    rc = main(["sam", "segment-all", str(image), "--checkpoint", str(ckpt), "--points-per-side", "4",
               "--pred-iou-thresh", "0", "--stability-score-thresh", "0", "--output-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0 and int(out.split()[0]) > 0  # "N masks; overlay: ..."
    overlay = np.asarray(Image.open(tmp_path / "astronaut_masks.png"))
    assert overlay.shape == astronaut.shape and not np.array_equal(overlay, astronaut)


def test_cli_errors(files, tmp_path, capsys):
    image, ckpt = files
    assert main(["sam", "predict", str(image), "--checkpoint", str(ckpt), "--output-dir", str(tmp_path)]) == 1
    assert "at least one prompt" in capsys.readouterr().err
    assert main(["sam", "predict", str(image), "--checkpoint", str(ckpt), "--point", "1,2,7",
                 "--output-dir", str(tmp_path)]) == 1
    assert "LABEL 1" in capsys.readouterr().err
    assert main(["sam", "predict", str(image), "--checkpoint", str(tmp_path / "none.pt"), "--point", "1,2",
                 "--output-dir", str(tmp_path)]) == 1
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the no-CUDA message")
def test_predict_on_cuda_without_a_gpu_is_a_clear_error(files, tmp_path, capsys):
    image, ckpt = files
    rc = main(["sam", "predict", str(image), "--checkpoint", str(ckpt), "--point", "250,150", "--device", "cuda",
               "--output-dir", str(tmp_path)])
    assert rc != 0 and "--device cpu" in capsys.readouterr().err


# -- EdgeTAM: repvit sam track / predict with an edgetam.pt (random weights, the authors' layout) -----------------

FRAMES, FH, FW = 3, 96, 128  # a short video of crops of the astronaut, panning right


@pytest.fixture(scope="module")
def edgetam_files(astronaut, tmp_path_factory):
    import torch

    from repvit.sam.sam2 import build_edgetam, save_edgetam
    from tests.sam.sam2._helpers import object_always_present

    pytest.importorskip("scipy.ndimage")
    d = tmp_path_factory.mktemp("edgetam_cli")
    frames = d / "frames"
    frames.mkdir()
    for i in range(FRAMES):
        Image.fromarray(astronaut[60:60 + FH, 180 + 8 * i:180 + 8 * i + FW]).save(frames / f"{i:05d}.jpg", quality=95)
    torch.manual_seed(0)
    return frames, save_edgetam(object_always_present(build_edgetam()), d / "edgetam.pt")


@pytest.mark.slow  # ~25 s: EdgeTAM at the published 1024 px
def test_track_writes_a_mask_per_frame_and_an_overlay(edgetam_files, tmp_path, capsys):
    import json

    from repvit.sam.sam2 import build_edgetam_video_predictor
    from repvit.sam.sam2.track import track_video

    frames, ckpt = edgetam_files
    rc = main(["sam", "track", str(frames), "--checkpoint", str(ckpt), "--point", "60,40", "--point", "10,80,0",
               "--frame", "1", "--output-dir", str(tmp_path), "--json"])
    res = json.loads(capsys.readouterr().out)
    assert rc == 0 and res["num_frames"] == FRAMES and res["frames"] == [0, 1, 2] and res["backend"] == "torch"
    pngs = [np.asarray(Image.open(tmp_path / "masks" / f"{i:05d}.png")) for i in range(FRAMES)]
    assert all(p.shape == (FH, FW) and set(np.unique(p)) <= {0, 255} and 0 < p.sum() for p in pngs)
    with Image.open(tmp_path / "overlay.gif") as gif:
        assert gif.n_frames == FRAMES and gif.size == (FW, FH)
    # the masks of the library's tracker (unfused: the CLI's fused trunk is equal within float rounding)
    ref = dict(track_video(build_edgetam_video_predictor(ckpt), frames, points=[[60, 40], [10, 80]], labels=[1, 0],
                           frame_idx=1))
    for i, p in enumerate(pngs):
        assert np.mean((p > 0) != ref[i]) < 1e-3
    rc = main(["sam", "track", str(frames), "--checkpoint", str(ckpt), "--box", "20,10,100,90", "--direction",
               "forward", "--frame", "2", "--no-fused", "--output-dir", str(tmp_path / "box")])
    assert rc == 0 and capsys.readouterr().out.startswith("1 frame tracked (torch")
    assert [p.name for p in (tmp_path / "box" / "masks").iterdir()] == ["00002.png"]


def test_track_errors_are_one_line(edgetam_files, tmp_path, capsys):
    frames, ckpt = edgetam_files
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("not a video")
    cases = [
        ([str(not_a_video), "--point", "1,1"], "not a video file"),
        ([str(tmp_path / "missing"), "--point", "1,1"], "does not exist"),
        ([str(frames / "00000.jpg"), "--point", "1,1"], "single image"),
        ([str(frames), "--point", f"{FW + 5},10"], "lies outside the image"),
        ([str(frames), "--box", f"10,10,20,{FH + 1}"], "reaches outside the image"),
        ([str(frames), "--point", "5,5", "--frame", "3"], "--frame 3 is outside the video: it has 3 frames"),
        ([str(frames)], "at least one prompt"),
    ]
    for argv, message in cases:
        assert main(["sam", "track", *argv, "--checkpoint", str(ckpt), "--output-dir", str(tmp_path)]) == 1
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert main(["sam", "track", str(frames), "--checkpoint", "edgetam_large", "--point", "5,5",
                 "--output-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "neither an existing file nor a published weights name" in err and err.count("\n") == 1
    assert not (tmp_path / "masks").exists()


def test_predict_with_edgetam_matches_its_image_predictor(edgetam_files, astronaut, tmp_path, capsys):
    from repvit.sam.sam2 import EdgeTamImagePredictor, build_edgetam

    frames, ckpt = edgetam_files
    image = frames / "00000.jpg"
    rc = main(["sam", "predict", str(image), "--checkpoint", str(ckpt), "--point", "60,40", "--output-dir",
               str(tmp_path)])
    assert rc == 0 and "predicted IoU" in capsys.readouterr().out
    mask = np.asarray(Image.open(tmp_path / "00000_mask.png"))
    assert mask.shape == (FH, FW) and mask.any() and (tmp_path / "00000_overlay.png").is_file()
    p = EdgeTamImagePredictor(build_edgetam(ckpt))
    p.set_image(np.array(Image.open(image)))
    masks, scores, _ = p.predict(point_coords=np.array([[60.0, 40.0]]), point_labels=np.array([1]))
    assert np.array_equal(mask > 0, masks[int(np.argmax(scores))])
    assert main(["sam", "predict", str(image), "--checkpoint", str(ckpt), "--variant", "m0_9", "--point", "60,40",
                 "--output-dir", str(tmp_path)]) == 1
    assert "--variant is for SAM (v1) checkpoints" in capsys.readouterr().err


@pytest.fixture(scope="module")
def edgetam_onnx(edgetam_files, tmp_path_factory):
    """EdgeTAM at 256 px (random weights, objects always present) and its ONNX graphs."""
    import torch

    from repvit.sam.sam2 import EdgeTamVideoPredictor, build_edgetam
    from repvit.sam.sam2.config import EdgeTamConfig
    from repvit.sam.sam2.export import export_edgetam_onnx
    from tests.sam.sam2._helpers import object_always_present

    pytest.importorskip("onnxruntime")
    torch.manual_seed(3)
    model = object_always_present(build_edgetam(config=EdgeTamConfig(image_size=256,
                                                                     binarize_mask_from_pts_for_mem_enc=True)))
    d = tmp_path_factory.mktemp("edgetam_onnx")
    export_edgetam_onnx(model, d, check=False)
    return EdgeTamVideoPredictor(model), d


def test_track_on_onnxruntime_matches_torch(edgetam_files, edgetam_onnx, tmp_path, capsys):
    from repvit.sam.sam2.track import track_video

    frames, _ = edgetam_files
    predictor, onnx_dir = edgetam_onnx
    rc = main(["sam", "track", str(frames), "--backend", "onnxruntime", "--onnx-dir", str(onnx_dir), "--point",
               "60,40", "--frame", "1", "--output-dir", str(tmp_path)])
    assert rc == 0 and "tracked (onnxruntime" in capsys.readouterr().out
    ref = dict(track_video(predictor, frames, points=[[60, 40]], frame_idx=1))
    for i in range(FRAMES):
        got = np.asarray(Image.open(tmp_path / "masks" / f"{i:05d}.png")) > 0
        assert ref[i].any() and (got & ref[i]).sum() / (got | ref[i]).sum() >= 0.99  # mask IoU, as issue 25 asks
    assert main(["sam", "track", str(frames), "--onnx-dir", str(onnx_dir), "--point", "1,1",
                 "--output-dir", str(tmp_path)]) == 1
    assert "--onnx-dir is for --backend onnxruntime" in capsys.readouterr().err


@pytest.mark.slow
def test_track_on_onnxruntime_exports_on_the_fly(edgetam_files, tmp_path, capsys):
    """Without --onnx-dir the checkpoint is exported (1024 px) into a temporary folder, then tracked there."""
    import json

    frames, ckpt = edgetam_files
    rc = main(["sam", "track", str(frames), "--checkpoint", str(ckpt), "--backend", "onnxruntime", "--point", "60,40",
               "--direction", "forward", "--frame", "2", "--output-dir", str(tmp_path), "--json"])
    res = json.loads(capsys.readouterr().out)
    assert rc == 0 and res["backend"] == "onnxruntime" and res["frames"] == [2] and res["mask_pixels"][0] > 0
