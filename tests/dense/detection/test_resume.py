"""SIGKILL during the second epoch of ``repvit detect train``, then ``--resume auto``: the weights and optimiser
state equal an uninterrupted run's."""

import sys
from pathlib import Path

import pytest

pytest.importorskip("sklearn", reason="the digits scenes come from scikit-learn (pip install 'repvit-pytorch[dense]')")
pytest.importorskip("pycocotools", reason="COCO evaluation needs pycocotools (pip install 'repvit-pytorch[dense]')")

from tests.helpers import (
    kill_in_second_epoch_then_resume,  # noqa: E402
    max_abs_diff,  # noqa: E402
)

ROOT = Path(__file__).resolve().parents[3]
ARGS = ["--data", "digits", "--seed", "0", "--epochs", "2", "--batch-size", "2", "--img-size", "32", "--workers", "0",
        "--threads", "1", "--no-progress", "--set", "scene_size=32", "--set", "train_scenes=40",
        "--set", "val_scenes=200", "--set", "val_subset=8", "--set", "fpn_channels=16", "--set", "box_head_dim=32",
        "--set", "mask_head_channels=8", "--set", "mask_head_convs=1", "--set", "hflip=0.5",
        "--set", "plot=false", "--set", "tensorboard=false", "--set", "model_ema=true"]


def _cmd(out, *extra):
    return [sys.executable, "-m", "repvit", "detect", "train", "--output-dir", str(out), *ARGS, *extra]


@pytest.mark.slow  # three CPU trainings of 2 short epochs
def test_sigkill_in_second_epoch_then_resume_matches_uninterrupted(tmp_path):
    a, b = kill_in_second_epoch_then_resume(_cmd, tmp_path, sleep_s=1.0, timeout_s=600)
    assert a["task"] == b["task"] == "detect"
    assert a["epoch"] == b["epoch"] == 1 and a["step"] == b["step"] == 40
    assert max_abs_diff(a["model"], b["model"]) <= 1e-6
    assert max_abs_diff(a["ema"], b["ema"]) <= 1e-6
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    assert max(max_abs_diff(sa[k], sb[k]) for k in sa) <= 1e-6
