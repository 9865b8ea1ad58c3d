"""``repvit train --compile``: one tiny epoch through torch.compile (inductor, CPU); plain checkpoints come out."""

import json
import math
import shutil

import pytest
import torch

pytest.importorskip("sklearn", reason="the digits set comes from scikit-learn (pip install 'repvit-pytorch[digits]')")

import repvit  # noqa: E402
from repvit.cli.main import main as cli  # noqa: E402
from tests.helpers import max_abs_diff  # noqa: E402

ARGS = ["--data", "digits", "--seed", "0", "--epochs", "1", "--batch-size", "32", "--workers", "0", "--threads", "1",
        "--no-progress", "--set", "train_subset=64", "--set", "val_subset=32", "--set", "warmup_epochs=0",
        "--set", "plot=false", "--set", "tensorboard=false"]


@pytest.mark.slow  # inductor compiles C++ kernels: about 2 min on 2 cores with a cold cache
@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None, reason="inductor needs a C++ compiler")
def test_compiled_training_writes_plain_checkpoints(tmp_path, monkeypatch):
    import torch._inductor.config as inductor_config

    monkeypatch.setattr(inductor_config, "compile_threads", 1)  # a shared machine: no pool of compiler processes
    assert cli(["train", "--output-dir", str(tmp_path / "c"), *ARGS, "--compile"]) == 0
    rec = json.loads((tmp_path / "c" / "metrics.jsonl").read_text().splitlines()[-1])
    assert math.isfinite(rec["train_loss"]) and rec["step"] == 2

    ck = torch.load(tmp_path / "c" / "last.pt", map_location="cpu", weights_only=True)
    for part in ("model", "ema"):
        assert not [k for k in ck[part] if "_orig_mod" in k], f"torch.compile's prefix leaked into {part}"
    plain = repvit.create_model("repvit_m0_6", num_classes=10)
    plain.load_state_dict(ck["model"])  # strict: every key of an uncompiled model, nothing else
    plain.load_state_dict(ck["ema"])
    rebuilt = repvit.create_model(checkpoint=tmp_path / "c" / "best.pt")
    assert max_abs_diff(rebuilt.state_dict(), ck["model"]) == 0

    # the compiled graph trains the same model as eager mode (same data and augmentation; float error only)
    assert cli(["train", "--output-dir", str(tmp_path / "e"), *ARGS]) == 0
    eager = torch.load(tmp_path / "e" / "last.pt", map_location="cpu", weights_only=True)
    ref = json.loads((tmp_path / "e" / "metrics.jsonl").read_text().splitlines()[-1])
    assert rec["train_loss"] == pytest.approx(ref["train_loss"], rel=1e-3)
    # each of the 2 AdamW steps moves a weight by about lr = 1e-3 whatever the gradient's size, so a near-zero gradient
    # whose sign flips with the kernels' summation order gives differences of a few 1e-3 (running stats: more)
    names = [n for n, _ in plain.named_parameters()]
    assert max_abs_diff({n: ck["model"][n] for n in names}, {n: eager["model"][n] for n in names}) <= 1e-2
