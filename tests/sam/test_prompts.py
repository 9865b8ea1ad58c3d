"""Prompt validation: points off the image and boxes with their corners out of order are refused, in the library
(``validate_prompts``, ``predict_masks``) and by ``repvit sam predict`` (exit code 1, one clear line)."""

import numpy as np
import pytest
from PIL import Image

from repvit.cli.main import main
from repvit.sam import save_repvit_sam
from repvit.sam.predict import predict_masks
from repvit.sam.prompts import validate_prompts

H, W = 48, 64


@pytest.mark.parametrize("points, box", [
    ([(0, 0, 1), (W, H, 0), (31.5, 20)], None),  # corners and a fractional point are on the image
    ([], (0, 0, W, H)),
    ([(3, 4)], (1, 2, 3, 4)),
])
def test_valid_prompts_pass(points, box):
    validate_prompts(points, box, (H, W))


@pytest.mark.parametrize("points, box, match", [
    ([(9999, 5)], None, "point 1 .* outside the image .*64 x 48"),
    ([(5, 5), (-1, 5)], None, "point 2 .* outside"),
    ([(5, H + 0.5)], None, "outside"),
    ([(5, 5, 2)], None, "label"),
    ([(float("nan"), 5)], None, "finite"),
    ([], (10, 5, 10, 20), "X0 < X1"),
    ([], (10, 20, 30, 5), "Y0 < Y1"),
    ([], (30, 5, 10, 20), "X0 < X1"),
    ([], (10, 5, 70, 20), "outside the image"),
    ([], (-3, 5, 10, 20), "outside the image"),
])
def test_invalid_prompts_are_refused(points, box, match):
    with pytest.raises(ValueError, match=match):
        validate_prompts(points, box, (H, W))


def test_without_image_size_only_the_box_order_is_checked():
    validate_prompts([(9999, 5)], (0, 0, 9999, 9999))
    with pytest.raises(ValueError, match="X0 < X1"):
        validate_prompts([], (5, 0, 5, 9))


def test_predict_masks_refuses_before_running(small_sam):
    image = np.zeros((H, W, 3), np.uint8)
    with pytest.raises(ValueError, match="outside the image"):
        predict_masks(small_sam, image, [(9999.0, 5.0, 1)])


@pytest.fixture(scope="module")
def cli_files(small_sam, tmp_path_factory):
    d = tmp_path_factory.mktemp("sam_prompts")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)).save(d / "small.png")
    return d / "small.png", save_repvit_sam(small_sam, d / "sam.safetensors")


@pytest.mark.parametrize("prompt, message", [
    (["--point", "9999,5"], "point 1 (9999, 5) lies outside the image (the image is 64 x 48 px"),
    (["--point", "5,5", "--point", "5,-2"], "point 2 (5, -2) lies outside the image"),
    (["--box", "40,5,20,30"], "needs X0 < X1 and Y0 < Y1"),
    (["--box", "10,30,20,30"], "needs X0 < X1 and Y0 < Y1"),
    (["--box", "10,5,90,30"], "reaches outside the image"),
])
def test_cli_refuses_bad_prompts(cli_files, prompt, message, tmp_path, capsys):
    image, ckpt = cli_files
    rc = main(["sam", "predict", str(image), "--checkpoint", str(ckpt), *prompt, "--output-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 1 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()  # nothing written


def test_cli_accepts_prompt_on_the_border(cli_files, tmp_path, capsys):
    image, ckpt = cli_files
    rc = main(["sam", "predict", str(image), "--checkpoint", str(ckpt), "--point", f"{W},{H}", "--box",
               f"0,0,{W},{H}", "--output-dir", str(tmp_path)])
    assert rc == 0 and (tmp_path / "small_mask.png").exists()
