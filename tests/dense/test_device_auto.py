"""``--device auto`` on the dense commands: ``segment eval`` and ``detect eval``/``predict`` accept it (CUDA when
there is one, else the CPU) and give what ``--device cpu`` gives on a CPU machine; nonsense is refused by argparse."""

from __future__ import annotations

import json

import pytest
import torch

from repvit.cli.main import main
from tests.helpers import run_cli

pytest.importorskip("sklearn", reason="the digits scenes come from scikit-learn (pip install 'repvit-pytorch[dense]')")

COMMON = ["--data", "digits", "--seed", "0", "--iters", "2", "--batch-size", "2", "--workers", "0", "--threads", "1",
          "--no-progress", "--set", "plot=false", "--set", "tensorboard=false", "--set", "fpn_channels=16",
          "--set", "train_scenes=8"]


def test_segment_eval_device_auto(tmp_path, capsys):
    out = tmp_path / "seg"
    run_cli(capsys, "segment", "train", "--output-dir", out, "--img-size", 32, *COMMON, "--set", "head_channels=16",
            "--set", "val_scenes=200", "--set", "eval_batch_size=50")
    runs = {d: json.loads(run_cli(capsys, "segment", "eval", "--checkpoint", out / "best.pt", "--data", "digits",
                                  "--device", d, "--json")) for d in ("auto", "cpu")}
    assert runs["auto"]["images"] == 200
    if not torch.cuda.is_available():
        assert runs["auto"] == runs["cpu"]
    with pytest.raises(SystemExit) as e:
        main(["segment", "eval", "--checkpoint", str(out / "best.pt"), "--device", "gpu"])
    assert e.value.code == 2 and "invalid device 'gpu'" in capsys.readouterr().err


def test_detect_predict_and_eval_device_auto(tmp_path, capsys):
    pytest.importorskip("pycocotools", reason="COCO evaluation needs pycocotools (pip install 'repvit-pytorch[dense]')")
    out = tmp_path / "det"
    run_cli(capsys, "detect", "train", "--output-dir", out, "--img-size", 32, *COMMON, "--set", "scene_size=32",
            "--set", "val_scenes=200", "--set", "val_subset=4", "--set", "box_head_dim=32",
            "--set", "mask_head_channels=8", "--set", "mask_head_convs=1")
    from PIL import Image

    from repvit.dense.scenes import DigitScenes

    img = DigitScenes("val", size=32)[0][0]
    Image.fromarray(img.permute(1, 2, 0).numpy()).save(tmp_path / "scene.png")
    preds = {}
    for d in ("auto", "cpu"):
        res = json.loads(run_cli(capsys, "detect", "predict", tmp_path / "scene.png", "--checkpoint", out / "best.pt",
                                 "--output-dir", tmp_path / d, "--score-threshold", "0.0", "--device", d, "--json"))
        assert (tmp_path / d / "scene.png").exists() and res["images"][0]["image"].endswith("scene.png")
        preds[d] = json.loads((tmp_path / d / "predictions.json").read_text())
    ev = json.loads(run_cli(capsys, "detect", "eval", "--checkpoint", out / "best.pt", "--device", "auto",
                            "--set", "val_subset=4", "--json"))
    assert ev["images"] == 4
    if not torch.cuda.is_available():
        assert preds["auto"] == preds["cpu"]
