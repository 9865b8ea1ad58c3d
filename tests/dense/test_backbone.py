"""The dense backbone against timm's RepViT (taps, checkpoints), exact fusing, frozen BN, the torchvision FPN."""

from __future__ import annotations

import pytest
import timm
import torch
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from repvit.dense import DenseBackbone, RepViTFPN, load_backbone_checkpoint
from repvit.io import CheckpointError
from repvit.models.checkpoint import CheckpointMismatchError
from tests.helpers import randomize_bn, rel_err
from tests.models.test_timm_parity import _timm_to_authors


@pytest.fixture(scope="module")
def timm_ref(tmp_path_factory):
    torch.manual_seed(0)
    ref = randomize_bn(timm.create_model("repvit_m0_9", pretrained=False), seed=3).eval()
    path = tmp_path_factory.mktemp("ck") / "timm_m0_9.pth"
    torch.save(ref.state_dict(), path)
    return ref, path


def _timm_taps(ref, x, taps):
    """The reference maps from timm's model: stage outputs, or forward hooks on stages[s+1].downsample.pre_block."""
    if taps == "stage":
        return ref.forward_intermediates(x, intermediates_only=True)
    got = {}
    hooks = [ref.stages[s + 1].downsample.pre_block.register_forward_hook(
        lambda m, i, o, s=s: got.__setitem__(s, o)) for s in range(3)]
    try:
        last = ref.forward_features(x)
    finally:
        for h in hooks:
            h.remove()
    return [got[0], got[1], got[2], last]


@pytest.mark.parametrize("taps", ["stage", "segment"])
def test_taps_match_timm(timm_ref, taps):
    ref, path = timm_ref
    bb = DenseBackbone("repvit_m0_9", taps=taps, checkpoint=path).eval()
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        out, want = bb(x), _timm_taps(ref, x, taps)
    assert list(out) == ["0", "1", "2", "3"]
    assert bb.strides == [4, 8, 16, 32] and bb.out_channels_list == [48, 96, 192, 384]
    for k, w in zip(out.values(), want):
        assert k.shape == w.shape and rel_err(k, w) < 1e-5  # float32 rounding only (maps reach ~100)
    if taps == "segment":  # one block later than the stage outputs, at the same width and stride
        stage = _timm_taps(ref, x, "stage")
        assert not torch.allclose(out["0"], stage[0])


def test_out_indices_subset(timm_ref):
    ref, path = timm_ref
    bb = DenseBackbone("repvit_m0_9", taps="segment", out_indices=(1, 2), checkpoint=path).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out, want = bb(x), _timm_taps(ref, x, "segment")
    assert list(out) == ["1", "2"] and bb.strides == [8, 16]
    assert rel_err(out["2"], want[2]) < 1e-5


@pytest.mark.parametrize("taps", ["stage", "segment"])
def test_fuse_exact_float64(taps):
    bb = randomize_bn(DenseBackbone("repvit_m0_6", taps=taps), seed=1).double().eval()
    fused = bb.fuse()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    x = torch.randn(2, 3, 64, 96, dtype=torch.float64)
    with torch.no_grad():
        a, b = bb(x), fused(x)
    for k in a:
        assert rel_err(b[k], a[k]) < 1e-9
    neck = RepViTFPN(bb, 32).double().eval()
    with torch.no_grad():
        n1, n2 = neck(x), neck.fuse()(x)
    assert all(rel_err(n2[k], n1[k]) < 1e-9 for k in n1)


def test_frozen_bn_keeps_statistics_and_trains_affine():
    bb = DenseBackbone("repvit_m0_6", frozen_bn=True).train()
    bn = bb.stem.conv1.bn
    before = bn.running_mean.clone()
    sum(v.mean() for v in bb(torch.randn(2, 3, 64, 64)).values()).backward()
    assert bb.training and not bn.training
    assert torch.equal(bn.running_mean, before) and bn.weight.grad is not None
    live = DenseBackbone("repvit_m0_6", frozen_bn=False).train()
    live(torch.randn(2, 3, 64, 64))
    assert live.stem.conv1.bn.training and not torch.equal(live.stem.conv1.bn.running_mean, before)


def test_authors_downstream_file_loads(timm_ref, tmp_path):
    ref, _ = timm_ref
    sd = {f"backbone.{k}": v for k, v in _timm_to_authors(ref.state_dict()).items() if not k.startswith("head.")}
    sd = {k: v for k, v in sd.items() if not k.startswith("backbone.classifier.")}
    sd["decode_head.conv_seg.weight"] = torch.zeros(150, 128, 1, 1)
    sd["neck.lateral_convs.0.conv.weight"] = torch.zeros(256, 48, 1, 1)
    path = tmp_path / "fpn_repvit_m0_9_ade20k.pth"
    torch.save({"meta": {"CLASSES": ("wall", "building"), "mmseg_version": "0.30.0"}, "state_dict": sd}, path)
    bb = DenseBackbone("repvit_m0_9", taps="segment").eval()
    res = load_backbone_checkpoint(bb, path)
    assert res.source_format == "authors_downstream"
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(bb(x).values(), _timm_taps(ref, x, "segment")):
            assert rel_err(a, b) < 1e-5


def test_classifier_checkpoint_and_mismatch_errors(timm_ref, tmp_path):
    ref, path = timm_ref
    bb = DenseBackbone("repvit_m0_9")
    assert load_backbone_checkpoint(bb, path).source_format == "timm"
    with pytest.raises(CheckpointMismatchError, match="timm_m0_9.pth") as e:
        load_backbone_checkpoint(DenseBackbone("repvit_m1_1"), path)
    assert "shape mismatches" in str(e.value)
    bad = tmp_path / "not_repvit.pth"
    torch.save({"state_dict": {"backbone.layer1.weight": torch.zeros(3)}}, bad)
    with pytest.raises(CheckpointError, match="not_repvit.pth"):
        load_backbone_checkpoint(bb, bad)
    with pytest.raises(CheckpointError, match="missing.pth"):
        load_backbone_checkpoint(bb, tmp_path / "missing.pth")


def test_fpn_is_torchvisions_and_scripting():
    bb = DenseBackbone("repvit_m0_6", taps="segment").eval()
    neck = RepViTFPN(bb, 64, extra_blocks=LastLevelMaxPool()).eval()
    assert isinstance(neck.fpn, FeaturePyramidNetwork) and neck.out_channels == 64
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = neck(x)
        assert list(out) == ["0", "1", "2", "3", "pool"]
        assert [v.shape[-1] for v in out.values()] == [16, 8, 4, 2, 1]
        assert all(v.shape[1] == 64 for v in out.values())
        scripted = torch.jit.script(bb)
        for a, b in zip(scripted(x).values(), bb(x).values()):
            assert torch.equal(a, b)


def test_bad_arguments():
    with pytest.raises(ValueError, match="taps"):
        DenseBackbone("repvit_m0_6", taps="middle")
    with pytest.raises(ValueError, match="out_indices"):
        DenseBackbone("repvit_m0_6", out_indices=(4,))
