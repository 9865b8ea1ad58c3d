"""Re-parameterization: exact, no BN left, dtype/device kept, idempotent, on features models too."""

import pytest
import torch
import torch.nn as nn

import repvit
from repvit.models import is_fused
from repvit.models.layers import FusableMixin
from tests.helpers import randomize_bn, rel_err

REPVIT = repvit.list_models("repvit_*")


# a square and a non-square input, small enough that every variant runs in the default suite (float64 convolutions
# are slow on CPU); the ImageNet size and a larger non-square one run with `make test-all`
SIZES = [(64, 64), (64, 96), pytest.param((224, 224), marks=pytest.mark.slow),
         pytest.param((160, 256), marks=pytest.mark.slow)]


@pytest.mark.parametrize("name", REPVIT)
@pytest.mark.parametrize("size", SIZES)
def test_fuse_exact_float64(name, size):
    model = randomize_bn(repvit.create_model(name, distillation=True), seed=1).double().eval()
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    with torch.no_grad():
        ref = model(x)
        fused = repvit.fuse_model(model)
        out = fused(x)
    assert fused.head.weight.dtype == torch.float64
    assert rel_err(out, ref) < 1e-9


@pytest.mark.parametrize("name", ["repvit_m0_6", "repvit_m1", "repvit_m1_1"])
def test_fuse_float32(name):
    model = randomize_bn(repvit.create_model(name, distillation=True), seed=2).eval()
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        assert rel_err(repvit.fuse_model(model)(x), model(x)) < 1e-4


def test_fused_structure_has_no_bn_no_branches_one_head():
    model = repvit.create_model("repvit_m0_9", distillation=True)
    fused = repvit.fuse_model(model)
    assert is_fused(fused)
    assert not any(isinstance(m, (nn.modules.batchnorm._BatchNorm, FusableMixin)) for m in fused.modules())
    assert isinstance(fused.head, nn.Linear) and fused.head.out_features == 1000
    # per block one depthwise conv as token mixer
    blk = fused.stages[2].blocks[0]
    assert isinstance(blk.token_mixer, nn.Conv2d) and blk.token_mixer.groups == blk.token_mixer.in_channels
    # the original is untouched unless inplace=True
    assert not is_fused(model)


def test_fuse_is_idempotent_and_method_equals_function():
    model = randomize_bn(repvit.create_model("repvit_m0_6")).eval()
    x = torch.randn(1, 3, 64, 64)
    f1 = repvit.fuse_model(model)
    f2 = repvit.fuse_model(f1)
    f3 = model.fuse()
    with torch.no_grad():
        assert torch.equal(f1(x), f2(x))
        assert torch.equal(f1(x), f3(x))
    assert [n for n, _ in f1.named_parameters()] == [n for n, _ in f2.named_parameters()]


def test_fuse_inplace():
    model = repvit.create_model("repvit_m0_6")
    out = repvit.fuse_model(model, inplace=True)
    assert out is model and is_fused(model)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_fuse_keeps_dtype(dtype):
    model = randomize_bn(repvit.create_model("repvit_m0_6", distillation=True)).to(dtype)
    fused = repvit.fuse_model(model)
    assert {p.dtype for p in fused.parameters()} == {dtype}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fuse_keeps_device():
    model = repvit.create_model("repvit_m0_6").cuda()
    fused = repvit.fuse_model(model)
    assert {p.device.type for p in fused.parameters()} == {"cuda"}


def test_fuse_keeps_meta_device_free_of_cpu_copies():
    # a device other than the default: fusing must build the new layers on the model's device
    model = repvit.create_model("repvit_m0_6").to("meta")
    fused = repvit.fuse_model(model)
    assert {p.device.type for p in fused.parameters()} == {"meta"}


def test_fuse_features_only_model():
    model = randomize_bn(repvit.create_model("repvit_m0_9", features_only=True), seed=3).double().eval()
    x = torch.randn(1, 3, 128, 128, dtype=torch.float64)
    fused = repvit.fuse_model(model)
    assert is_fused(fused)
    with torch.no_grad():
        for a, b in zip(fused(x), model(x)):
            assert rel_err(a, b) < 1e-9


def test_create_model_fused():
    model = repvit.create_model("repvit_m0_6", fused=True)
    assert is_fused(model) and not model.training


@pytest.mark.parametrize("legacy", [False, True])
def test_token_mixer_1x1_branch_as_affine_map_equals_the_grouped_convolution(legacy):
    """The training form's 1x1 depthwise branch runs as ``x * (w + 1) + b``: the same outputs, BN statistics and
    gradients as the grouped convolution it stands for (checked against ``F.conv2d`` with the module's weights)."""
    import copy

    import torch.nn.functional as F

    from repvit.models.layers import LegacyRepVGGDW, RepVGGDW

    torch.manual_seed(0)
    dim = 12
    mixer = (LegacyRepVGGDW if legacy else RepVGGDW)(dim).train()
    with torch.no_grad():
        for p in mixer.parameters():
            p.normal_(0.0, 0.5)
    ref = copy.deepcopy(mixer)

    def reference(m, x):
        if legacy:
            c1 = m.conv1.bn(F.conv2d(x, m.conv1.c.weight, None, groups=dim))
            return m.conv(x) + c1 + x
        return m.bn(m.conv(x) + F.conv2d(x, m.conv1.weight, m.conv1.bias, groups=dim) + x)

    x = torch.randn(3, dim, 9, 7).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    x_ref = x.detach().clone().requires_grad_(True)
    out, expected = mixer(x), reference(ref, x_ref)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert out.is_contiguous(memory_format=torch.channels_last)
    g = torch.randn_like(out)
    out.backward(g)
    expected.backward(g)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-5)
    for (name, p), p_ref in zip(mixer.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, p_ref.grad, rtol=1e-4, atol=1e-5, msg=name)
    for b, b_ref in zip(mixer.buffers(), ref.buffers()):
        torch.testing.assert_close(b, b_ref)
