"""SIGKILL during the second epoch, then ``--resume auto``: the weights equal an uninterrupted run's (CPU)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("sklearn", reason="the digits set comes from scikit-learn (pip install 'repvit-pytorch[digits]')")

from tests.train._tiny import max_abs_diff  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--data", "digits", "--seed", "0", "--epochs", "2", "--batch-size", "16", "--workers", "0", "--threads", "1",
        "--no-progress", "--set", "train_subset=192", "--set", "val_subset=64", "--set", "warmup_epochs=1",
        "--set", "plot=false", "--set", "tensorboard=false", "--set", "reprob=0.25", "--set", "drop_path=0.05"]


def _cmd(out, *extra):
    return [sys.executable, "-m", "repvit", "train", "--output-dir", str(out), *ARGS, *extra]


def _epoch_of(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])


def test_sigkill_in_second_epoch_then_resume_matches_uninterrupted(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    ref = subprocess.Popen(_cmd(tmp_path / "ref"), env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    victim_dir = tmp_path / "victim"
    victim = subprocess.Popen(_cmd(victim_dir), env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    last = victim_dir / "last.pt"
    deadline = time.time() + 240
    while not last.exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert last.exists(), "the run never finished its first epoch"
    time.sleep(0.2)  # inside the second epoch (12 steps)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    assert _epoch_of(last) == 0, "the kill did not land in the second epoch; make the epoch longer"

    resumed = subprocess.run(_cmd(victim_dir, "--resume", "auto"), env=env, cwd=ROOT, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr
    _, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err[-3000:]

    a = torch.load(tmp_path / "ref" / "last.pt", weights_only=True)
    b = torch.load(last, weights_only=True)
    assert a["epoch"] == b["epoch"] == 1 and a["step"] == b["step"]
    assert max_abs_diff(a["model"], b["model"]) <= 1e-6
    assert max_abs_diff(a["ema"], b["ema"]) <= 1e-6
    # the optimiser moments too, so training could go on identically
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    assert max(max_abs_diff(sa[k], sb[k]) for k in sa) <= 1e-6
