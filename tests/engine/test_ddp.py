"""Real 2-process DDP (gloo, CPU) trainings launched with torch.distributed.run: both ranks end equal, and a run
interrupted inside an epoch resumes exactly."""

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("sklearn", reason="the digits set comes from scikit-learn (pip install 'repvit-pytorch[digits]')")

from tests.helpers import run_torchrun  # noqa: E402

HERE = Path(__file__).resolve().parent


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without torch.distributed")
def test_two_process_gloo_training_ends_with_equal_weights(tmp_path):
    p = run_torchrun(HERE / "_ddp_worker.py", str(tmp_path), timeout_s=300)
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
    from tests.helpers import state_hash

    m = repvit.create_model(checkpoint=tmp_path / "run" / "last.pt")
    assert state_hash(dict(m.named_parameters())) == r0["params"]


@pytest.mark.slow  # three 2-process runs with 2 loader workers each: about 40 s on 2 cores
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without torch.distributed")
def test_two_process_ctrl_c_mid_epoch_then_resume_matches_uninterrupted(tmp_path):
    from tests.helpers import max_abs_diff

    def launch(out, mode):
        p = run_torchrun(HERE / "_ddp_resume_worker.py", str(out), mode, timeout_s=300)
        assert p.returncode == 0, p.stderr[-3000:]

    launch(tmp_path / "ref", "full")
    launch(tmp_path / "int", "interrupt")
    ck = torch.load(tmp_path / "int" / "last.pt", weights_only=True)
    # each rank's trainer RNG (Mixup, drop-path) is saved, so each resumes its own stream
    assert ck["epoch"] == 0 and ck["resume_batch"] == 3 and len(ck["rng_ranks"]) == 2
    launch(tmp_path / "int", "resume")
    a = torch.load(tmp_path / "ref" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "int" / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 1 and a["step"] == b["step"] == 8
    assert max_abs_diff(a["model"], b["model"]) <= 1e-6
    assert max_abs_diff(a["ema"], b["ema"]) <= 1e-6
