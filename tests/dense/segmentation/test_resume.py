"""SIGKILL during the second epoch of ``repvit segment train``, then ``--resume auto``: the weights, BN statistics
and optimiser state equal an uninterrupted run's."""

import sys
from pathlib import Path

import pytest

pytest.importorskip("sklearn", reason="the digits scenes come from scikit-learn (pip install 'repvit-pytorch[dense]')")

from tests.helpers import (
    kill_in_second_epoch_then_resume,  # noqa: E402
    max_abs_diff,  # noqa: E402
)

ROOT = Path(__file__).resolve().parents[3]
ARGS = ["--data", "digits", "--seed", "0", "--epochs", "2", "--batch-size", "4", "--img-size", "32", "--workers", "0",
        "--threads", "1", "--no-progress", "--set", "train_scenes=64", "--set", "val_scenes=200",
        "--set", "eval_batch_size=100", "--set", "fpn_channels=16", "--set", "head_channels=16",
        "--set", "plot=false", "--set", "tensorboard=false", "--set", "model_ema=true", "--set", "drop_path=0.05"]


def _cmd(out, *extra):
    return [sys.executable, "-m", "repvit", "segment", "train", "--output-dir", str(out), *ARGS, *extra]


@pytest.mark.slow  # three CPU trainings of 2 short epochs: about 30-60 s on 2 busy cores
def test_sigkill_in_second_epoch_then_resume_matches_uninterrupted(tmp_path):
    a, b = kill_in_second_epoch_then_resume(_cmd, tmp_path, sleep_s=0.5, timeout_s=400)
    assert a["task"] == b["task"] == "segment"
    assert a["epoch"] == b["epoch"] == 1 and a["step"] == b["step"] == 32
    assert max_abs_diff(a["model"], b["model"]) <= 1e-6
    assert max_abs_diff(a["ema"], b["ema"]) <= 1e-6
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys() and max(max_abs_diff(sa[k], sb[k]) for k in sa) <= 1e-6
