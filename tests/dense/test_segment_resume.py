"""SIGKILL during the second epoch of ``repvit segment train``, then ``--resume auto``: the weights, BN statistics
and optimiser state equal an uninterrupted run's."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("sklearn", reason="the digits scenes come from scikit-learn (pip install 'repvit-pytorch[dense]')")

from tests.train._tiny import max_abs_diff  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--data", "digits", "--seed", "0", "--epochs", "2", "--batch-size", "4", "--img-size", "32", "--workers", "0",
        "--threads", "1", "--no-progress", "--set", "train_scenes=64", "--set", "val_scenes=200",
        "--set", "eval_batch_size=100", "--set", "fpn_channels=16", "--set", "head_channels=16",
        "--set", "plot=false", "--set", "tensorboard=false", "--set", "model_ema=true", "--set", "drop_path=0.05"]


def _cmd(out, *extra):
    return [sys.executable, "-m", "repvit", "segment", "train", "--output-dir", str(out), *ARGS, *extra]


@pytest.mark.slow  # three CPU trainings of 2 short epochs: about 30-60 s on 2 busy cores
def test_sigkill_in_second_epoch_then_resume_matches_uninterrupted(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    ref = subprocess.Popen(_cmd(tmp_path / "ref"), env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    victim_dir = tmp_path / "victim"
    victim = subprocess.Popen(_cmd(victim_dir), env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    last = victim_dir / "last.pt"
    deadline = time.time() + 300
    while not last.exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert last.exists(), "the run never finished its first epoch"
    time.sleep(0.5)  # inside the second epoch (16 steps)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    assert torch.load(last, weights_only=True)["epoch"] == 0, "the kill did not land in the second epoch"

    resumed = subprocess.run(_cmd(victim_dir, "--resume", "auto"), env=env, cwd=ROOT, capture_output=True,
                             text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr
    _, err = ref.communicate(timeout=400)
    assert ref.returncode == 0, err[-3000:]

    a = torch.load(tmp_path / "ref" / "last.pt", weights_only=True)
    b = torch.load(last, weights_only=True)
    assert a["task"] == b["task"] == "segment"
    assert a["epoch"] == b["epoch"] == 1 and a["step"] == b["step"] == 32
    assert max_abs_diff(a["model"], b["model"]) <= 1e-6
    assert max_abs_diff(a["ema"], b["ema"]) <= 1e-6
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys() and max(max_abs_diff(sa[k], sb[k]) for k in sa) <= 1e-6
