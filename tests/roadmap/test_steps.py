"""The roadmap steps: step 0 is MobileNetV3-L (timm), the last step is RepViT-M1.0, every step fuses exactly."""

from __future__ import annotations

import re

import pytest
import torch

import repvit
from repvit.bench.complexity import count_macs, count_params
from repvit.models import is_fused
from repvit.roadmap import STEPS, RoadmapNet, mobilenetv3_large
from tests.helpers import randomize_bn, rel_err

NAMES = [s.name for s in STEPS]


def test_steps_are_registered_in_order_with_descriptions():
    # ablation variants (roadmap_*__KEY_VALUE) join the registry when something builds them by name
    registered = [n for n in repvit.list_models("roadmap_*") if "ablation" not in repvit.get_model_entry(n).tags]
    assert sorted(registered) == sorted(NAMES)
    idx = [int(re.match(r"roadmap_(\d+)_", n).group(1)) for n in NAMES]
    assert idx == list(range(len(NAMES))) and len(NAMES) >= 9
    for s in STEPS:
        entry = repvit.get_model_entry(s.name)
        assert entry.config == s.config and "roadmap" in entry.tags
        assert len(s.description) > 40 and s.title
    # consecutive steps differ (every step changes something)
    assert all(a.config != b.config for a, b in zip(STEPS, STEPS[1:]))


def test_step0_params_and_macs_match_timm_mobilenetv3_large():
    timm = pytest.importorskip("timm")
    ref = timm.create_model("mobilenetv3_large_100", pretrained=False)
    ours = repvit.create_model(NAMES[0])
    p_ref, p_ours = count_params(ref), count_params(ours)
    m_ref, m_ours = count_macs(ref, 224), count_macs(ours, 224)
    assert abs(p_ours - p_ref) / p_ref <= 0.01, (p_ours, p_ref)
    assert abs(m_ours - m_ref) / m_ref <= 0.02, (m_ours, m_ref)


def _timm_to_ours(timm_sd: dict, ours_sd: dict) -> dict:
    """Map timm's MobileNetV3 state dict onto ours by order (both follow the network's execution order)."""
    assert len(timm_sd) == len(ours_sd)
    out = {}
    for (tk, tv), (ok, ov) in zip(timm_sd.items(), ours_sd.items()):
        assert tv.numel() == ov.numel(), (tk, ok, tuple(tv.shape), tuple(ov.shape))
        out[ok] = tv.reshape(ov.shape)
    return out


def test_design_space_mobilenetv3_large_reproduces_timm_outputs():
    """With MobileNetV3's own activations, the design space's MobileNetV3-L *is* timm's: same weights, same logits."""
    timm = pytest.importorskip("timm")
    ref = randomize_bn(timm.create_model("mobilenetv3_large_100", pretrained=False), seed=3).eval()
    ours = RoadmapNet(mobilenetv3_large(act=None)).eval()
    ours.load_state_dict(_timm_to_ours(ref.state_dict(), ours.state_dict()))
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)) < 1e-5


def test_last_step_is_repvit_m1_0():
    last = repvit.create_model(NAMES[-1], distillation=True)
    ref = randomize_bn(repvit.create_model("repvit_m1_0", distillation=True), seed=4)
    assert count_params(last) == count_params(ref)
    assert list(last.state_dict()) == list(ref.state_dict())
    last.load_state_dict(ref.state_dict(), strict=True)
    fl, fr = repvit.fuse_model(last), repvit.fuse_model(ref)
    assert count_params(fl) == count_params(fr)
    assert count_macs(fl, 224) == count_macs(fr, 224)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(last.eval()(x), ref.eval()(x))
        assert torch.equal(fl(x), fr(x))
    # the published figures of RepViT-M1.0 hold for the last step too
    pub = repvit.get_model_entry("repvit_m1_0").published
    assert abs(count_params(fl) - pub.fused_params) / pub.fused_params < 1e-3
    assert abs(count_macs(fl, 224) - pub.fused_macs) / pub.fused_macs < 1e-3


@pytest.mark.parametrize("name", NAMES)
def test_every_step_fuses_exactly_float64(name):
    model = randomize_bn(repvit.create_model(name, num_classes=10, distillation=True), seed=5).double().eval()
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        ref = model(x)
        fused = repvit.fuse_model(model)
        out = fused(x)
    assert is_fused(fused)
    assert rel_err(out, ref) < 1e-9


def _train_iters(model: torch.nn.Module, iters: int = 6) -> list[float]:
    x = torch.randn(8, 3, 32, 32)
    y = torch.arange(8) % 4
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    for _ in range(iters):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("name", NAMES)
def test_every_step_trains_a_few_iterations(name):
    """Overfitting one small batch must bring the loss down, with finite weights, for every step."""
    torch.set_num_threads(1)
    model = repvit.create_model(name, num_classes=4, drop_path_rate=0.05)
    losses = _train_iters(model)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert min(losses[-2:]) < losses[0], losses


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_every_step_fuses_exactly_at_full_resolution(name):
    model = randomize_bn(repvit.create_model(name, distillation=True), seed=6).double().eval()
    x = torch.randn(1, 3, 160, 224, dtype=torch.float64)
    with torch.no_grad():
        assert rel_err(repvit.fuse_model(model)(x), model(x)) < 1e-9
