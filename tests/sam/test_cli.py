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
    mask = np.asarray(Image.open(tmp_path / "astronaut_mask.png"))
    overlay = np.asarray(Image.open(tmp_path / "astronaut_overlay.png"))
    assert mask.shape == astronaut.shape[:2] and set(np.unique(mask)) <= {0, 255}
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
