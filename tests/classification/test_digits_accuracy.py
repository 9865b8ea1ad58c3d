"""The acceptance run: `repvit train --data digits --output-dir D --seed 0` reaches >= 97% top-1 on the
held-out split (as `repvit eval --json` reports) within 5 minutes wall. Slow: run with `make test-all`."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("sklearn", reason="the digits set comes from scikit-learn (pip install 'repvit-pytorch[digits]')")

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_default_digits_run_reaches_97_percent_in_5_minutes(tmp_path):
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "repvit", "train", "--data", "digits", "--output-dir", str(tmp_path),
                        "--seed", "0", "--no-progress"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t0
    assert p.returncode == 0, p.stderr[-3000:]
    e = subprocess.run([sys.executable, "-m", "repvit", "eval", "--checkpoint", str(tmp_path / "best.pt"), "--data",
                        "digits", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert e.returncode == 0, e.stderr[-3000:]
    res = json.loads(e.stdout)
    assert res["images"] == 450
    assert res["top1"] >= 97.0, res
    assert wall <= 300, f"training took {wall:.0f} s"
