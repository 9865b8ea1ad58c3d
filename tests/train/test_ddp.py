"""A real 2-process DDP (gloo, CPU) training launched with torch.distributed.run: both ranks end equal."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("sklearn", reason="the digits set comes from scikit-learn (pip install 'repvit[digits]')")

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without torch.distributed")
def test_two_process_gloo_training_ends_with_equal_weights(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "tests" / "train" / "_ddp_worker.py"), str(tmp_path)]
    p = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["world"] == r1["world"] == 2
    assert r0["params"] == r1["params"]
    # distributed evaluation: both ranks report the same all-reduced top-1 over the whole held-out subset
    assert r0["top1"] == r1["top1"]
    # only rank 0 wrote: one checkpoint, one metrics file with one line per epoch
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ck["epoch"] == 1
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 2
    # the checkpoint's weights are rank 0's final weights
    import repvit
    from tests.train._tiny import state_hash

    m = repvit.create_model(checkpoint=tmp_path / "run" / "last.pt")
    assert state_hash(dict(m.named_parameters())) == r0["params"]
