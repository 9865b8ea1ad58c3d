"""The design space: serialization, validation, and the paper's ablation switches checked against RepViT itself."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import repvit
from repvit.bench.complexity import count_params
from repvit.models import RepViT, RepViTConfig
from repvit.models.layers import RepVGGDW
from repvit.roadmap import (
    STEPS,
    BlockSpec,
    RoadmapConfig,
    RoadmapNet,
    StageSpec,
    with_expansion,
    with_kernel,
    with_se,
    with_token_mixer,
)
from tests.helpers import randomize_bn, rel_err

LAST = STEPS[-1].config
M1_0 = repvit.get_model_entry("repvit_m1_0").config


@pytest.mark.parametrize("step", STEPS, ids=lambda s: s.name)
def test_config_round_trips_through_json(step):
    d = json.loads(json.dumps(step.config.to_dict()))
    assert RoadmapConfig.from_dict(d) == step.config


def test_roadmap_checkpoint_round_trip(tmp_path):
    model = randomize_bn(repvit.create_model(STEPS[3].name, num_classes=7)).eval()
    path = repvit.save_checkpoint(model, tmp_path / "step3.safetensors")
    again = repvit.create_model(STEPS[3].name, checkpoint=path).eval()
    by_file = repvit.create_model(checkpoint=path).eval()  # the name comes from the file
    fused_path = repvit.save_checkpoint(repvit.fuse_model(model), tmp_path / "step3_fused.safetensors")
    fused = repvit.create_model(checkpoint=fused_path, fused=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))
        assert torch.equal(by_file(x), model(x))
        assert rel_err(fused(x), model(x)) < 1e-4


def test_invalid_configs_are_refused():
    with pytest.raises(ValueError, match="input channels"):
        RoadmapConfig("mbv3", 16, (StageSpec((BlockSpec("metaformer", 24, 24),)),))
    with pytest.raises(ValueError, match="kernel_size"):
        BlockSpec("metaformer", 24, 24, kernel_size=4)
    with pytest.raises(ValueError, match="features_only"):
        repvit.create_model(STEPS[0].name, features_only=True)


def _same_as_repvit(cfg: RoadmapConfig, ref_cfg: RepViTConfig) -> None:
    """A roadmap network equals RepViT built from ``ref_cfg``: same state-dict layout, params and outputs."""
    ours = RoadmapNet(cfg, num_classes=10)
    ref = randomize_bn(RepViT(ref_cfg, num_classes=10), seed=7).eval()
    assert count_params(ours) == count_params(ref)
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours.eval()(x), ref(x))


@pytest.mark.parametrize(
    "switch,ref_change",
    [
        (lambda c: with_se(c, "all"), dict(se_pattern="all")),
        (lambda c: with_se(c, "none"), dict(se_pattern="none")),
        (lambda c: with_expansion(c, 4), dict(mlp_ratio=4.0)),
        (lambda c: with_kernel(c, 5), dict(kernel_size=5)),
    ],
    ids=["se_all", "se_none", "expansion4", "kernel5"],
)
def test_ablation_switches_match_repvit_built_the_same_way(switch, ref_change):
    _same_as_repvit(switch(LAST), dataclasses.replace(M1_0, **ref_change))


def test_switches_on_the_last_step_are_identities():
    assert with_se(LAST, "cross") == LAST
    assert with_expansion(LAST, 2) == LAST
    assert with_kernel(LAST, 3) == LAST
    assert with_token_mixer(LAST, True) == LAST


def test_plain_depthwise_token_mixer_ablation():
    """Without re-parameterization the token mixer is one DW conv + BN: fewer training params, the same deploy
    network shape (the multi-branch RepVGGDW folds into exactly one DW conv), and it still fuses exactly."""
    plain_cfg = with_token_mixer(LAST, False)
    plain, rep = RoadmapNet(plain_cfg, num_classes=10), RoadmapNet(LAST, num_classes=10)
    assert not any(isinstance(m, RepVGGDW) for m in plain.modules())
    assert count_params(plain) < count_params(rep)
    assert count_params(repvit.fuse_model(plain)) == count_params(repvit.fuse_model(rep))
    plain = randomize_bn(plain, seed=8).double().eval()
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        assert rel_err(repvit.fuse_model(plain)(x), plain(x)) < 1e-9


@pytest.mark.parametrize("step", STEPS[:5], ids=lambda s: s.name)
def test_ablations_on_earlier_steps_fuse_exactly(step):
    cfg = with_token_mixer(with_se(with_kernel(step.config, 5), "all"), False)
    model = randomize_bn(RoadmapNet(cfg, num_classes=5), seed=9).double().eval()
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        assert rel_err(repvit.fuse_model(model)(x), model(x)) < 1e-9
