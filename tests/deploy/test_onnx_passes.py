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
