"""SIGKILL during the second epoch of ``repvit detect train``, then ``--resume auto``: the weights and optimiser
state equal an uninterrupted run's."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("sklearn", reason="the digits scenes come from scikit-learn (pip install 'repvit-pytorch[dense]')")
pytest.importorskip("pycocotools", reason="COCO evaluation needs pycocotools (pip install 'repvit-pytorch[dense]')")

from tests.train._tiny import max_abs_diff  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--data", "digits", "--seed", "0", "--epochs", "2", "--batch-size", "2", "--img-size", "32", "--workers", "0",
        "--threads", "1", "--no-progress", "--set", "scene_size=32", "--set", "train_scenes=40",
        "--set", "val_scenes=200", "--set", "val_subset=8", "--set", "fpn_channels=16", "--set", "box_head_dim=32",
        "--set", "mask_head_channels=8", "--set", "mask_head_convs=1", "--set", "hflip=0.5",
        "--set", "plot=false", "--set", "tensorboard=false", "--set", "model_ema=true"]


def _cmd(out, *extra):
    return [sys.executable, "-m", "repvit", "detect", "train", "--output-dir", str(out), *ARGS, *extra]


@pytest.mark.slow  # three CPU trainings of 2 short epochs
def test_sigkill_in_second_epoch_then_resume_matches_uninterrupted(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    ref = subprocess.Popen(_cmd(tmp_path / "ref"), env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    victim_dir = tmp_path / "victim"
    victim = subprocess.Popen(_cmd(victim_dir), env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    last = victim_dir / "last.pt"
    deadline = time.time() + 400
    while not last.exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert last.exists(), "the run never finished its first epoch"
    time.sleep(1.0)  # inside the second epoch (20 steps)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    assert torch.load(last, weights_only=True)["epoch"] == 0, "the kill did not land in the second epoch"

    resumed = subprocess.run(_cmd(victim_dir, "--resume", "auto"), env=env, cwd=ROOT, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr
    _, err = ref.communicate(timeout=600)
    assert ref.returncode == 0, err[-3000:]

    a = torch.load(tmp_path / "ref" / "last.pt", weights_only=True)
    b = torch.load(last, weights_only=True)
    assert a["task"] == b["task"] == "detect"
    assert a["epoch"] == b["epoch"] == 1 and a["step"] == b["step"] == 40
    assert max_abs_diff(a["model"], b["model"]) <= 1e-6
    assert max_abs_diff(a["ema"], b["ema"]) <= 1e-6
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    assert max(max_abs_diff(sa[k], sb[k]) for k in sa) <= 1e-6
