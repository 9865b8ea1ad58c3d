"""SIGKILL during the second epoch, then ``--resume auto``: the weights equal an uninterrupted run's (CPU)."""

import sys
from pathlib import Path

import pytest

pytest.importorskip("sklearn", reason="the digits set comes from scikit-learn (pip install 'repvit-pytorch[digits]')")

from tests.helpers import (
    kill_in_second_epoch_then_resume,  # noqa: E402
    max_abs_diff,  # noqa: E402
)

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--data", "digits", "--seed", "0", "--epochs", "2", "--batch-size", "16", "--workers", "0", "--threads", "1",
        "--no-progress", "--set", "train_subset=192", "--set", "val_subset=64", "--set", "warmup_epochs=1",
        "--set", "plot=false", "--set", "tensorboard=false", "--set", "reprob=0.25", "--set", "drop_path=0.05"]


def _cmd(out, *extra):
    return [sys.executable, "-m", "repvit", "train", "--output-dir", str(out), *ARGS, *extra]


def test_sigkill_in_second_epoch_then_resume_matches_uninterrupted(tmp_path):
    a, b = kill_in_second_epoch_then_resume(_cmd, tmp_path, sleep_s=0.2, timeout_s=300)
    assert a["epoch"] == b["epoch"] == 1 and a["step"] == b["step"]
    assert max_abs_diff(a["model"], b["model"]) <= 1e-6
    assert max_abs_diff(a["ema"], b["ema"]) <= 1e-6
    # the optimiser moments too, so training could go on identically
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    assert max(max_abs_diff(sa[k], sb[k]) for k in sa) <= 1e-6
