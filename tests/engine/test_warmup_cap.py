"""A warm-up longer than a quarter of the run is capped, and the run says so: a 24-step run with a 30-step
warm-up otherwise never reaches its learning rate."""

from __future__ import annotations

import logging
import math

import pytest
import torch

from repvit.classification.config import TrainConfig
from repvit.engine.optim import build_scheduler, warmup_steps
from tests.classification._tiny import tiny


def _lrs(cfg: TrainConfig, steps_per_epoch: int, total: int) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = build_scheduler(opt, cfg, steps_per_epoch, total)
    out = []
    for i in range(total):
        sched.step_update(num_updates=i)
        out.append(opt.param_groups[0]["lr"])
    return out


def test_capped_warmup_reaches_the_peak_and_is_logged(caplog):
    cfg = TrainConfig(lr=1e-2, warmup_steps=30, warmup_lr=1e-5, min_lr=0.0, sched="cosine")
    with caplog.at_level(logging.WARNING, logger="repvit.engine"):
        assert warmup_steps(cfg, steps_per_epoch=3, total_steps=24) == 6
        lrs = _lrs(cfg, 3, 24)
    msg = caplog.text
    assert "warm-up capped" in msg and "30 warm-up steps" in msg and "24 steps" in msg and "using 6" in msg
    # an independent reading of the schedule: linear from warmup_lr over 6 steps, then cosine over the remaining steps
    for i in range(6):
        assert lrs[i] == pytest.approx(1e-5 + i * (1e-2 - 1e-5) / 6)
    assert lrs[6] == pytest.approx(0.5 * 1e-2 * (1 + math.cos(math.pi * 6 / 24)))
    assert max(lrs) > 0.8 * 1e-2


def test_short_warmups_are_kept_and_the_fraction_is_checked(caplog):
    with caplog.at_level(logging.WARNING, logger="repvit.engine"):
        assert warmup_steps(TrainConfig(warmup_steps=6), 3, 24) == 6
        assert warmup_steps(TrainConfig(warmup_epochs=2, warmup_steps=None), 10, 100) == 20
        assert warmup_steps(TrainConfig(warmup_steps=30, warmup_max_fraction=1.0), 3, 100) == 30
    assert "capped" not in caplog.text
    with pytest.raises(ValueError, match="warmup_max_fraction"):
        warmup_steps(TrainConfig(warmup_max_fraction=1.5), 3, 24)


def test_a_24_step_run_with_a_30_step_warmup_logs_the_cap(tmp_path, caplog):
    pytest.importorskip("sklearn", reason="the digits set needs scikit-learn (pip install 'repvit-pytorch[digits]')")
    from repvit.classification import train

    with caplog.at_level(logging.WARNING, logger="repvit.engine"):
        res = train(tiny(tmp_path, iters=24, warmup_steps=30, batch_size=8, train_subset=64, val_subset=16,
                         model_ema=False))
    assert res["steps"] == 24
    capped = [r.getMessage() for r in caplog.records if "warm-up capped" in r.getMessage()]
    assert len(capped) == 1 and "30 warm-up steps" in capped[0] and "run of 24 steps; using 6" in capped[0]
