"""The one-call conv/Linear + activation of eager CPU inference (repvit.models.onednn): the same numbers as the two
ops, taken only where nothing but speed can change, and never seen by tracers or exporters."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import repvit
from repvit.models import onednn
from repvit.models.fuse import fuse_model
from repvit.models.onednn import conv_act, conv_add, linear_act, mlp

needs_onednn = pytest.mark.skipif(not onednn._HAS_POINTWISE, reason="this torch has no oneDNN pointwise ops")


@pytest.fixture(autouse=True)
def _small_maps_fuse(monkeypatch, request):
    """The tests' small maps take the one call too, except where a test checks the size limit."""
    if "size_limit" not in request.node.name:
        monkeypatch.setattr(onednn, "MIN_POSITIONS", 0)


def _ops_run(fn) -> set[str]:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return {e.name for e in prof.events()}


@needs_onednn
@pytest.mark.parametrize("act", [nn.GELU(), nn.GELU(approximate="tanh"), nn.ReLU()])
@pytest.mark.parametrize("conv", [nn.Conv2d(8, 16, 1), nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False),
                                  nn.Conv2d(8, 8, 3, padding=1, groups=8)])
def test_conv_act_equals_the_two_ops_and_runs_as_one_call(conv, act):
    x = torch.randn(2, 8, 17, 19)
    with torch.inference_mode():
        for inp in (x, x.contiguous(memory_format=torch.channels_last)):
            ref = act(conv(inp))
            out = conv_act(conv, act, inp)
            torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
        ops = _ops_run(lambda: conv_act(conv, act, x))
    assert "mkldnn::_convolution_pointwise" in ops
    assert "aten::gelu" not in ops and "aten::relu" not in ops


@needs_onednn
def test_conv_add_equals_the_two_ops_and_runs_as_one_call():
    conv = nn.Conv2d(16, 8, 1)
    x = torch.randn(2, 16, 11, 13).contiguous(memory_format=torch.channels_last)
    other = torch.randn(2, 8, 11, 13).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        torch.testing.assert_close(conv_add(conv, x, other), other + conv(x), rtol=1e-5, atol=1e-5)
        ops = _ops_run(lambda: conv_add(conv, x, other))
        assert "mkldnn::_convolution_pointwise" in ops and "aten::add" not in ops
        broadcast = torch.randn(1, 8, 1, 1)  # not the output's shape: the two ops
        torch.testing.assert_close(conv_add(conv, x, broadcast), broadcast + conv(x))


@needs_onednn
def test_linear_act_equals_the_two_ops_and_runs_as_one_call():
    lin = nn.Linear(32, 64)
    x = torch.randn(3, 50, 32)
    with torch.no_grad():
        torch.testing.assert_close(linear_act(lin, "gelu", x), F.gelu(lin(x)), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(linear_act(lin, "relu", x), F.relu(lin(x)), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(linear_act(lin, nn.GELU(), x.permute(1, 0, 2)), F.gelu(lin(x.permute(1, 0, 2))),
                                   rtol=1e-5, atol=1e-5)
        ops = _ops_run(lambda: linear_act(lin, "relu", x))
    assert "mkldnn::_linear_pointwise" in ops and "aten::relu" not in ops


def test_the_two_ops_run_where_a_gradient_is_wanted_and_gradients_are_right():
    conv, act = nn.Conv2d(4, 8, 1), nn.GELU()
    x = torch.randn(1, 4, 9, 9, requires_grad=True)
    out = conv_act(conv, act, x)
    out.sum().backward()
    x2 = x.detach().clone().requires_grad_(True)
    act(conv(x2)).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)
    ops = _ops_run(lambda: conv_act(conv, act, x))
    assert "mkldnn::_convolution_pointwise" not in ops


def test_autocast_runs_the_two_ops_in_its_dtype():
    conv, act = nn.Conv2d(8, 16, 1), nn.GELU()
    x = torch.randn(1, 8, 9, 9)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv_act(conv, act, x)
        ref = act(conv(x))
    assert out.dtype == ref.dtype == torch.bfloat16
    torch.testing.assert_close(out, ref)


def test_flop_counter_sees_the_two_ops():
    from torch.utils.flop_counter import FlopCounterMode

    conv, act = nn.Conv2d(8, 16, 1), nn.GELU()
    x = torch.randn(1, 8, 9, 9)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        conv_act(conv, act, x)
    assert counter.get_total_flops() == 2 * 8 * 16 * 9 * 9


def test_other_activations_and_dtypes_run_the_two_ops():
    conv = nn.Conv2d(4, 8, 1)
    x = torch.randn(1, 4, 9, 9)
    with torch.inference_mode():
        for act, inp, layer in ((nn.Hardswish(), x, conv), (nn.GELU(), x.double(), nn.Conv2d(4, 8, 1).double())):
            ops = _ops_run(lambda act=act, inp=inp, layer=layer: conv_act(layer, act, inp))
            assert "mkldnn::_convolution_pointwise" not in ops
            torch.testing.assert_close(conv_act(layer, act, inp), act(layer(inp)))


@needs_onednn
def test_fused_repvit_uses_one_call_eagerly_and_exports_the_plain_ops(tmp_path):
    model = fuse_model(repvit.create_model("repvit_m0_6", num_classes=10).eval())
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        eager = model(x)
        ops = _ops_run(lambda: model(x))
    assert "mkldnn::_convolution_pointwise" in ops and "aten::gelu" not in ops
    with torch.no_grad():
        traced = torch.jit.trace(model, x)
        assert "aten::gelu" in str(traced.inlined_graph)
        torch.testing.assert_close(traced(x), eager, rtol=1e-4, atol=1e-5)
    scripted = torch.jit.script(model)
    assert "aten::gelu" in str(scripted.inlined_graph)
    exported = torch.export.export(model, (x,))
    targets = {str(n.target) for n in exported.graph.nodes if n.op == "call_function"}
    assert any("gelu" in t for t in targets) and not any("pointwise" in t for t in targets)


@needs_onednn
def test_size_limit_small_maps_run_the_two_ops():
    conv, act = nn.Conv2d(8, 16, 1), nn.GELU()
    small, large = torch.randn(1, 8, 32, 32), torch.randn(1, 8, 64, 64)
    with torch.inference_mode():
        assert "mkldnn::_convolution_pointwise" not in _ops_run(lambda: conv_act(conv, act, small))
        assert "mkldnn::_convolution_pointwise" in _ops_run(lambda: conv_act(conv, act, large))


def test_fx_symbolic_trace_of_the_fused_model_records_the_two_ops():
    model = fuse_model(repvit.create_model("repvit_m0_6", num_classes=10).eval())
    gm = torch.fx.symbolic_trace(model)
    assert any(n.op == "call_module" and isinstance(gm.get_submodule(n.target), nn.GELU) for n in gm.graph.nodes)
    assert not any("pointwise" in str(n.target) for n in gm.graph.nodes)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(gm(x), model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("act", ["relu", "gelu"])
@pytest.mark.parametrize("bias", [True, False])
def test_mlp_in_row_blocks_equals_the_two_layers(monkeypatch, act, bias):
    monkeypatch.setattr(onednn, "MLP_BLOCK_BYTES", 4 * 48 * 64)  # 64 rows a block: 5 blocks, the last one short
    lin1, lin2 = nn.Linear(24, 48, bias=bias), nn.Linear(48, 20, bias=bias)
    x = torch.randn(3, 100, 24)
    f = F.relu if act == "relu" else F.gelu
    with torch.inference_mode():
        ref = lin2(f(lin1(x)))
        out = mlp(lin1, act, lin2, x)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            mlp(lin1, act, lin2, x)
    calls = sum(e.count for e in prof.key_averages() if e.key in ("aten::addmm", "aten::mm"))
    assert calls == 2 * 5  # two matmuls a block of 64 rows over 300 rows
    assert out.shape == (3, 100, 20)


def test_mlp_runs_the_layers_whole_where_a_gradient_is_wanted_or_rows_are_few(monkeypatch):
    monkeypatch.setattr(onednn, "MLP_BLOCK_BYTES", 4 * 48 * 64)
    lin1, lin2 = nn.Linear(24, 48), nn.Linear(48, 20)
    x = torch.randn(300, 24, requires_grad=True)
    out = mlp(lin1, "gelu", lin2, x)
    out.sum().backward()
    assert x.grad is not None and lin1.weight.grad is not None
    with torch.inference_mode():
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            mlp(lin1, "gelu", lin2, torch.randn(20, 24))  # fewer than two blocks of rows
    assert sum(e.count for e in prof.key_averages() if e.key in ("aten::addmm", "aten::mm")) <= 2
    with pytest.raises(ValueError, match="'relu' or 'gelu'"):
        mlp(lin1, "silu", lin2, x)
