"""ONNX graph passes: the rewritten graphs compute what PyTorch computes, in ONNX Runtime (an independent runtime)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from repvit.deploy.onnx_export import export_onnx_bytes, make_session, op_types
from repvit.deploy.onnx_passes import apply_passes
from tests.helpers import rel_err

onnx = pytest.importorskip("onnx", reason="ONNX export needs onnx: pip install 'repvit-pytorch[onnx]'")
pytest.importorskip("onnxruntime", reason="ONNX parity needs onnxruntime: pip install 'repvit-pytorch[onnx]'")


class _ConvUpsample(nn.Module):
    """A conv and an upsampling, as EdgeSAM's fusion neck upsamples its stride-32 map."""

    def __init__(self, channels: int = 12, **upsample) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3, padding=1)
        self.up = nn.Upsample(**upsample)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.conv(x))


def _resize_modes(data: bytes) -> list[str]:
    proto = onnx.load_from_string(data)
    return [next((a.s.decode() for a in n.attribute if a.name == "mode"), "nearest")
            for n in proto.graph.node if n.op_type == "Resize"]


def _run(data: bytes, x: torch.Tensor, level: str) -> torch.Tensor:
    sess = make_session(data, threads=1, level=level)
    return torch.from_numpy(sess.run(None, {"input": x.numpy()})[0])


@pytest.mark.parametrize("size", [(1, 1), (5, 7), (16, 16)])
def test_bicubic_x2_becomes_nearest_and_depthwise_convs_with_the_same_output(size):
    """x2 bicubic (half-pixel, a = -0.75, clamped borders: PyTorch's) is rewritten to edge padding, nearest x2 and
    depthwise convolutions; ONNX Runtime then gives PyTorch's bicubic output, borders included, with and without
    its own graph optimizations (NCHWc layout at ``all``)."""
    torch.manual_seed(0)
    model = _ConvUpsample(scale_factor=2, mode="bicubic", align_corners=False).eval()
    x = torch.randn(2, 3, *size) * 3
    with torch.no_grad():
        ref = model(x)
    data = apply_passes(export_onnx_bytes(model, x))
    assert _resize_modes(data) == ["nearest"]
    assert {"Pad", "Conv"} <= op_types(data)
    for level in ("none", "all"):
        got = _run(data, x, level)
        assert got.shape == ref.shape and rel_err(got, ref) < 2e-6, level


@pytest.mark.parametrize("upsample", [dict(scale_factor=2, mode="bilinear", align_corners=False),
                                      dict(scale_factor=3, mode="bicubic", align_corners=False),
                                      dict(scale_factor=2, mode="bicubic", align_corners=True),
                                      dict(size=(9, 10), mode="bicubic", align_corners=False)])
def test_other_resizes_are_left_alone(upsample):
    model = _ConvUpsample(**upsample).eval()
    x = torch.randn(1, 3, 5, 5)
    raw = export_onnx_bytes(model, x, dynamic_batch=False)
    data = apply_passes(raw)
    assert _resize_modes(data) == _resize_modes(raw) == [upsample["mode"].removeprefix("bi")]
    with torch.no_grad():
        assert rel_err(_run(data, x, "all"), model(x)) < 1e-5


class _ConvLayerNorm2d(nn.Module):
    """Convs around segment-anything's ``LayerNorm2d`` (SAM's neck), with a random affine part."""

    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        from segment_anything.modeling.common import LayerNorm2d

        self.conv = nn.Conv2d(3, channels, 3, padding=1)
        self.norm = LayerNorm2d(channels)
        self.out = nn.Conv2d(channels, 8, 1)
        with torch.no_grad():
            self.norm.weight.uniform_(0.5, 1.5)
            self.norm.bias.normal_()
            self.conv.bias.add_(2.0)  # a channel mean away from zero

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.norm(self.conv(x)))


def _reduce_mean_count(data: bytes) -> int:
    return sum(1 for n in onnx.load_from_string(data).graph.node if n.op_type == "ReduceMean")


def test_layer_norm_2d_becomes_layer_normalization_with_the_same_output():
    """segment-anything's LayerNorm2d, exported as ReduceMean/Sub/Pow/.../Add, becomes one LayerNormalization
    between transposes; ONNX Runtime gives PyTorch's output and the un-rewritten graph's, at every level."""
    pytest.importorskip("segment_anything")
    torch.manual_seed(0)
    model = _ConvLayerNorm2d().eval()
    x = torch.randn(2, 3, 9, 11)
    with torch.no_grad():
        ref = model(x)
    raw = export_onnx_bytes(model, x)
    data = apply_passes(raw)
    assert _reduce_mean_count(raw) == 2 and _reduce_mean_count(data) == 0
    assert {"LayerNormalization", "Transpose"} <= op_types(data) and not {"Pow", "Sqrt", "Div"} & op_types(data)
    for level in ("none", "all"):
        got, plain = _run(data, x, level), _run(raw, x, level)
        assert got.shape == ref.shape and rel_err(got, ref) < 1e-5 and rel_err(got, plain) < 1e-5, level
    graph = onnx.load_from_string(data).graph  # the replaced ops' constants are gone with them
    used = {i for n in graph.node for i in n.input}
    assert all(i.name in used for i in graph.initializer) and len(graph.initializer) == 6


class _CentredOnly(nn.Module):
    """A mean over the channels that is not a LayerNorm (no division by the spread)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        return (x - u).pow(2) + u


def test_other_channel_means_are_left_alone():
    x = torch.randn(1, 4, 5, 5)
    raw = export_onnx_bytes(_CentredOnly(), x, dynamic_batch=False)
    data = apply_passes(raw)
    assert "LayerNormalization" not in op_types(data) and _reduce_mean_count(data) == 1
    assert rel_err(_run(data, x, "all"), _CentredOnly()(x)) < 1e-6


def test_layer_norm_2d_is_left_alone_below_opset_17():
    """LayerNormalization exists from opset 17: older graphs keep the elementwise form."""
    pytest.importorskip("segment_anything")
    model = _ConvLayerNorm2d().eval()
    x = torch.randn(1, 3, 6, 6)
    data = apply_passes(export_onnx_bytes(model, x, opset=16))
    assert "LayerNormalization" not in op_types(data) and _reduce_mean_count(data) == 2
