"""timm's model contract for every registered model, modelled on timm's own ``tests/test_models.py``.

Forward/backward, channels-last, ONNX and the fused TorchScript check for every model are in ``test_contract.py``;
this file adds what a timm or torchvision user calls: ``pretrained_cfg`` / ``default_cfg`` (checked against timm's
own RepViT cfgs), ``forward_features`` / ``forward_head``, ``reset_classifier``, ``features_only`` with a
``timm.models.FeatureInfo`` (checked against timm's own ``features_only`` RepViT), ``forward_intermediates``,
TorchScript of unfused models, and torch.fx through torchvision's ``create_feature_extractor``.

TorchScript runs in a fresh process (see ``test_contract.py``). Every check on every model is slow on 2 cores, so the
default suite runs a representative subset (:data:`DEFAULT_SUBSET`: a current and a legacy RepViT, a MobileNetV3-
and a RepViT-headed roadmap step; every form of m0_6); ``make test-all`` runs every model in every form.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
import torch.nn as nn
from timm.models import FeatureInfo
from torchvision.models.feature_extraction import create_feature_extractor

import repvit
from repvit.models import get_model_entry
from repvit.models.pretrained import set_data_config
from tests.helpers import randomize_bn, rel_err

ALL = repvit.list_models()
FEATURES = [n for n in ALL if get_model_entry(n).supports_features]
TIMM_NAMES = [n for n in ALL if n in timm.list_models("repvit_*")]
SIZE, BATCH = 64, 2
# the models every check runs on in the default suite (a current and a legacy RepViT, a MobileNetV3-headed and a
# RepViT-headed roadmap step); the rest of the registry runs with `make test-all`
DEFAULT_SUBSET = ("repvit_m0_6", "repvit_m1", "roadmap_0_mobilenetv3_l_gelu", "roadmap_5_simple_classifier")


def _registry(names):
    keep = (*DEFAULT_SUBSET, "repvit_m0_9")  # m0_9: timm has it (m0_6 is not in timm)
    return [pytest.param(n, marks=() if n in keep else pytest.mark.slow) for n in names]


# scripted in the default suite: every form of one model, and the other kinds of block, head and token mixer
SCRIPT_SUBSET = [("repvit_m0_6", "unfused", True), ("repvit_m0_6", "unfused", False), ("repvit_m0_6", "fused", True),
                 ("repvit_m0_6", "features", False), ("repvit_m1", "unfused", True),
                 ("roadmap_0_mobilenetv3_l_gelu", "unfused", True), ("roadmap_0_mobilenetv3_l_gelu", "fused", True),
                 ("roadmap_2_expansion2_wider", "unfused", False)]


def _model(name: str, **kw) -> nn.Module:
    return randomize_bn(repvit.create_model(name, **kw))


def _x(batch: int = BATCH, size: int = SIZE) -> torch.Tensor:
    return torch.randn(batch, 3, size, size)


# ------------------------------------------------------------------------------------------ pretrained_cfg
def _check_names(model: nn.Module) -> None:
    cfg = model.pretrained_cfg
    conv = model.get_submodule(cfg["first_conv"])
    assert isinstance(conv, nn.Conv2d) and conv.in_channels == model.in_chans
    classifier = cfg["classifier"]
    names = [classifier] if isinstance(classifier, str) else list(classifier)
    assert len(names) == (2 if model.distillation and not repvit.models.is_fused(model) else 1)
    for n in names:
        layer = model.get_submodule(n)
        assert isinstance(layer, nn.Linear) and layer.out_features == model.num_classes, n


def _check_paper_cfg(model: nn.Module, name: str) -> None:
    cfg = model.pretrained_cfg
    assert model.default_cfg is cfg
    assert cfg["architecture"] == name and cfg["num_classes"] == model.num_classes
    # the paper's evaluation transform
    assert cfg["input_size"] == (3, 224, 224) and cfg["interpolation"] == "bicubic"
    assert cfg["crop_pct"] == 0.875 and cfg["crop_mode"] == "center"
    assert cfg["mean"] == timm.data.IMAGENET_DEFAULT_MEAN and cfg["std"] == timm.data.IMAGENET_DEFAULT_STD
    assert cfg["pool_size"] == (7, 7)
    if name in TIMM_NAMES:  # timm's own cfg for the same model (its models carry the distillation head)
        theirs = timm.models.get_pretrained_cfg(name).to_dict()
        for key in ("input_size", "interpolation", "mean", "std", "pool_size", "first_conv", "classifier"):
            assert tuple(cfg[key]) == tuple(theirs[key]), key
        # timm evaluates at crop 0.95; the paper (and the authors' main.py) at 0.875: ours is the paper's
        assert theirs["crop_pct"] == 0.95


@pytest.mark.parametrize("name", _registry(ALL))
def test_cfg_features_head_and_reset_classifier(name):
    model = _model(name, num_classes=10, distillation=True).eval()
    _check_paper_cfg(model, name)
    _check_names(model)
    _check_names(repvit.fuse_model(model))  # fused layers have other names
    x = _x()
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (BATCH, model.num_features, SIZE // 32, SIZE // 32)
        assert model.forward_head(feats, pre_logits=True).shape == (BATCH, model.head_hidden_size)
        assert torch.equal(model.forward_head(feats), model(x)) and model(x).shape == (BATCH, 10)
        # pool_size follows the input size, and matches what forward_features gives there
        set_data_config(model, img_size=SIZE)
        assert tuple(feats.shape[-2:]) == model.pretrained_cfg["pool_size"]

        model.reset_classifier(0)
        pooled = model(x)
        assert pooled.shape == (BATCH, model.num_features)
        assert rel_err(pooled, feats.mean((2, 3))) < 1e-6 and model.pretrained_cfg["classifier"] is None
        model.reset_classifier(0, "")
        assert torch.equal(model(x), feats)  # no pooling and no head: (N, C, H, W)
        assert torch.equal(model.forward_head(feats), feats)
        with pytest.raises(ValueError, match="num_classes=0"):
            model.reset_classifier(5, "")
        with pytest.raises(ValueError, match="global_pool"):
            model.reset_classifier(5, "max")

    # timm's signature, back to a pooled head; the new head takes the model's mode (eval: batch 1 works)
    model.reset_classifier(7, "avg", distillation=False)
    assert not model.head.training and model.pretrained_cfg["num_classes"] == 7
    with torch.no_grad():
        assert model(_x(1)).shape == (1, 7)
    _check_names(model)
    model.train()
    model.reset_classifier(3, distillation=True)
    assert model.head.training and isinstance(model(_x()), tuple)
    _check_names(model)


@pytest.mark.parametrize("name", ["repvit_m0_6", "roadmap_0_mobilenetv3_l_gelu"])
@pytest.mark.parametrize("fused", [False, True], ids=["unfused", "fused"])
def test_data_config_resolves_and_survives_a_checkpoint(name, fused, tmp_path):
    model = _model(name, num_classes=10, distillation=True).eval()
    set_data_config(model, img_size=32, mean=0.5, std=(0.25, 0.5, 0.75), interpolation="bilinear", crop_pct=1.0)
    if fused:
        model = repvit.fuse_model(model)
    expected = dict(input_size=(3, 32, 32), interpolation="bilinear", mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 0.75),
                    crop_pct=1.0, crop_mode="center")
    assert timm.data.resolve_model_data_config(model) == expected
    repvit.save_checkpoint(model, tmp_path / "m.safetensors")
    back = repvit.create_model(checkpoint=tmp_path / "m.safetensors", fused=fused)
    assert timm.data.resolve_model_data_config(back) == expected
    assert back.pretrained_cfg["pool_size"] == (1, 1) and back.pretrained_cfg["architecture"] == name
    _check_names(back)
    # timm's transforms built from it give the size we saved
    tf = timm.data.create_transform(**timm.data.resolve_model_data_config(back))
    from PIL import Image

    assert tf(Image.new("RGB", (50, 40))).shape == (3, 32, 32)


# ----------------------------------------------------------------------------------- features_only
def test_reset_classifier_keeps_device_and_dtype():
    model = repvit.create_model("repvit_m0_6", num_classes=5).double().eval()
    model.reset_classifier(7)
    assert all(p.dtype == torch.float64 for p in model.head.parameters())
    with torch.no_grad():
        assert model(_x(1).double()).dtype == torch.float64


@pytest.mark.parametrize("name", _registry(FEATURES))
def test_features_only_feature_info_and_intermediates(name):
    full = _model(name, num_classes=10).eval()
    x = torch.randn(1, 3, 96, 128)
    for out_indices in [(0, 1, 2, 3), (1, 3)]:
        feat = repvit.create_model(name, features_only=True, out_indices=out_indices).eval()
        feat.load_state_dict(full.state_dict(), strict=False)
        info = feat.feature_info
        assert isinstance(info, FeatureInfo) and info.out_indices == out_indices
        with torch.no_grad():
            outs = feat(x)
            ref = full.forward_intermediates(x, indices=list(out_indices), intermediates_only=True)
        assert info.channels() == [o.shape[1] for o in outs]
        assert info.reduction() == [x.shape[2] // o.shape[2] for o in outs] == [x.shape[3] // o.shape[3] for o in outs]
        assert all(isinstance(full.get_submodule(m), nn.Module) for m in info.module_name())
        assert len(outs) == len(ref) and all(torch.equal(a, b) for a, b in zip(outs, ref))
        if name in TIMM_NAMES:  # timm's own features_only RepViT describes the same features
            theirs = timm.create_model(name, features_only=True, out_indices=out_indices).feature_info
            assert (info.channels(), info.reduction()) == (theirs.channels(), theirs.reduction())


def test_eager_input_errors_stay_clear():
    for model in (repvit.create_model("roadmap_0_mobilenetv3_l_gelu"), repvit.create_model("m0_6", features_only=True)):
        with pytest.raises(ValueError, match="in_chans=1"):
            model(torch.randn(1, 1, 64, 64))
        with pytest.raises(ValueError, match="at least 32x32"):
            model(torch.randn(1, 3, 16, 64))
        with pytest.raises(ValueError, match="4-D"):
            model(torch.randn(3, 64, 64))


# --------------------------------------------------------------------------------------------------- torch.fx
def _fx_nodes(model: nn.Module) -> dict[str, str]:
    if isinstance(model, repvit.models.RepViTFeatures):
        return {f"stages.{i}": f"s{i}" for i in model.out_indices}
    last = len(model.stages) - 1
    return {"stages.1": "s1", f"stages.{last}": "last", "head": "logits"}


def _fx_cases(names):
    cases = []
    for n in names:
        cases += [(n, "unfused", True), (n, "unfused", False), (n, "fused", True)]
        if n in FEATURES:
            cases.append((n, "features", False))
    return cases


def _fx_params():
    """Every form of m0_6 and the subset unfused with distillation by default; the rest with ``make test-all``."""
    slow = pytest.mark.slow
    return [pytest.param(*c, marks=() if c[0] == "repvit_m0_6" or c[0] in DEFAULT_SUBSET and c[1:] == ("unfused", True)
                         else slow) for c in _fx_cases(ALL)]


def _build_case(name, form, dist):
    if form == "features":
        return randomize_bn(repvit.create_model(name, features_only=True, out_indices=(1, 3)))
    model = _model(name, num_classes=10, distillation=dist)
    return repvit.fuse_model(model) if form == "fused" else model


@pytest.mark.parametrize("name,form,dist", _fx_params())
def test_fx_feature_extractor_forward_backward(name, form, dist):
    model = _build_case(name, form, dist)
    nodes = _fx_nodes(model)
    train_nodes = dict(nodes)
    if "head" in nodes:  # train mode with distillation returns both heads' logits: take each Linear
        names = model.pretrained_cfg["classifier"]
        del train_nodes["head"]
        train_nodes.update({n: f"logits{i}" for i, n in enumerate([names] if isinstance(names, str) else names)})
    # traces the train- and the eval-mode graph
    ext = create_feature_extractor(model, train_return_nodes=train_nodes, eval_return_nodes=nodes)
    x = _x()
    if form != "fused":  # train mode: gradients reach the input and every parameter
        ext.train()
        out = ext(x.requires_grad_())
        assert set(out) == set(train_nodes.values())
        loss = sum(t.float().sum() for v in out.values() for t in (v if isinstance(v, (list, tuple)) else [v]))
        loss.backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
        no_grad = [n for n, p in ext.named_parameters() if p.grad is None]
        assert not no_grad, no_grad[:5]
        x = x.detach()
    ext.eval()
    model.eval()
    with torch.no_grad():
        out = ext(x)
        if form == "features":
            ref = model(x)
            assert all(torch.equal(out[f"s{i}"], r) for i, r in zip(model.out_indices, ref))
        else:
            assert torch.equal(out["logits"], model(x))
            assert torch.equal(out["last"], model.stages(model.stem(x)))


# -------------------------------------------------------------------------------- TorchScript (fresh process)
_WORKER = """
import json, sys, torch, repvit
from torchvision.models.feature_extraction import create_feature_extractor
from tests.helpers import randomize_bn, rel_err
from tests.models.test_timm_contract import _build_case, _fx_nodes
torch.set_num_threads(1)
res = {}
for case in json.loads(sys.argv[1]):
    name, form, dist = case
    torch.manual_seed(0)
    model = _build_case(name, form, dist).eval()
    x = torch.randn(2, 3, 64, 64)
    key = "|".join(map(str, case))
    try:
        scripted = torch.jit.script(model)
        fx = torch.jit.script(create_feature_extractor(model, _fx_nodes(model)))
        with torch.no_grad():
            ref, out, fx_out = model(x), scripted(x), fx(x)
        if form == "features":
            errs = [rel_err(a, b) for a, b in zip(out, ref)] + [rel_err(fx_out[f"s{i}"], r)
                                                                for i, r in zip(model.out_indices, ref)]
        else:
            errs = [rel_err(out, ref), rel_err(fx_out["logits"], ref)]
        res[key] = max(errs)
    except Exception as e:
        res[key] = f"{type(e).__name__}: {str(e)[:300]}"
print(json.dumps(res))
"""


def _script_cases(cases):
    proc = subprocess.run([sys.executable, "-c", _WORKER, json.dumps(cases)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2], timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(res) == len(cases)
    bad = {k: v for k, v in res.items() if isinstance(v, str) or v > 1e-5}
    assert not bad, bad


def test_script_and_fx_script_subset():
    _script_cases([list(c) for c in SCRIPT_SUBSET])


@pytest.mark.slow
def test_script_and_fx_script_whole_registry():
    _script_cases([list(c) for c in _fx_cases(ALL) if c not in SCRIPT_SUBSET])
