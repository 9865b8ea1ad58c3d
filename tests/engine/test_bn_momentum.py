"""``bn_momentum``: every BatchNorm of the trained model gets it (a short run from scratch evaluates with running
statistics that follow its weights), frozen BatchNorms have none to change, and a bad value is refused."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torchvision.ops import FrozenBatchNorm2d

from repvit.engine.run import set_bn_momentum
from tests.classification._tiny import tiny


def test_every_batchnorm_gets_the_momentum_and_the_running_mean_follows_it():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), FrozenBatchNorm2d(4), nn.Flatten(), nn.BatchNorm1d(64))
    set_bn_momentum(model, 0.5)
    assert model[1].momentum == 0.5 and model[4].momentum == 0.5
    x = torch.randn(8, 3, 4, 4)
    model.train()(x)
    batch_mean = model[0](x).mean(dim=(0, 2, 3)).detach()
    torch.testing.assert_close(model[1].running_mean, 0.5 * batch_mean)  # (1 - m) * 0 + m * mean
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="bn_momentum"):
            set_bn_momentum(model, bad)


def test_a_run_trains_with_the_configured_momentum(tmp_path):
    pytest.importorskip("sklearn", reason="the digits set needs scikit-learn (pip install 'repvit-pytorch[digits]')")
    from repvit.classification import train

    res = train(tiny(tmp_path, iters=2, batch_size=8, train_subset=16, val_subset=16, model_ema=False,
                     bn_momentum=0.5))
    bns = [m for m in res["model"].modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert bns and all(m.momentum == 0.5 for m in bns)
