"""A real 2-process gloo DDP detection training (torch.distributed.run): both ranks end with identical weights and
report the same COCO AP over the whole held-out subset."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("sklearn", reason="the digits scenes come from scikit-learn (pip install 'repvit-pytorch[dense]')")
pytest.importorskip("pycocotools", reason="COCO evaluation needs pycocotools (pip install 'repvit-pytorch[dense]')")

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow  # two processes, two short epochs and two evaluations
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without torch.distributed")
def test_two_process_gloo_detection_ends_with_identical_weights(tmp_path):
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))  # the tests' and the caller's
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(Path(__file__).with_name("_ddp_worker.py")), str(tmp_path)]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        pytest.fail(f"the DDP run hung for 600 s and was killed; stderr:\n{err[-3000:]}")
    assert proc.returncode == 0, err[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    assert r0["params"] == r1["params"]
    # results are gathered before COCOeval: both ranks report the AP of all 20 images, each counted once
    assert r0["eval"] == r1["eval"] and r0["eval"]["images"] == 20
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ck["task"] == "detect" and ck["epoch"] == 1 and ck["step"] == 8  # 16 scenes / (2 x 2) per epoch
    from tests.helpers import state_hash

    params = {k: v for k, v in ck["model"].items() if not any(s in k for s in ("running_", "num_batches"))}
    assert state_hash(params) == r0["params"]
