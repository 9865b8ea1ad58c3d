"""The Semantic FPN model: head layout (the mmseg FPN head's), exact fusing in float64, ONNX Runtime parity."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torchvision.ops import Conv2dNormActivation

from repvit.dense.segmentation.model import SemanticFPNHead, build_semantic_fpn
from repvit.models.fuse import is_fused
from tests.helpers import randomize_bn, rel_err


def test_head_layout_per_level():
    head = SemanticFPNHead(256, 128, 150, strides=(4, 8, 16, 32))
    convs = [sum(isinstance(m, Conv2dNormActivation) for m in t) for t in head.scale_heads]
    ups = [sum(isinstance(m, nn.Upsample) for m in t) for t in head.scale_heads]
    assert convs == [1, 1, 2, 3] and ups == [0, 1, 2, 3]
    assert all(m[0].kernel_size == (3, 3) and isinstance(m[1], nn.BatchNorm2d) and isinstance(m[2], nn.ReLU)
               for t in head.scale_heads for m in t if isinstance(m, Conv2dNormActivation))
    assert isinstance(head.dropout, nn.Dropout2d) and head.dropout.p == 0.1
    assert head.classifier.kernel_size == (1, 1) and head.classifier.out_channels == 150


@pytest.mark.parametrize("size", [(64, 64), (70, 98)])
def test_logits_at_input_size(size):
    model = build_semantic_fpn("repvit_m0_6", num_classes=5, fpn_channels=32, head_channels=16).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, *size)).shape == (2, 5, *size)


@pytest.mark.parametrize("taps", ["segment", "stage"])
def test_fuse_is_exact_in_float64(taps):
    model = build_semantic_fpn("repvit_m0_6", num_classes=7, taps=taps, fpn_channels=32, head_channels=16)
    model = randomize_bn(model, seed=2).double().eval()
    fused = model.fuse()
    assert is_fused(fused) and not is_fused(model)
    x = torch.randn(2, 3, 64, 96, dtype=torch.float64)
    with torch.no_grad():
        assert rel_err(fused(x), model(x)) < 1e-9


def test_frozen_bn_in_the_full_model():
    model = build_semantic_fpn("repvit_m0_6", num_classes=3, fpn_channels=16, head_channels=16).train()
    bb_bn = model.backbone.stem.conv1.bn
    head_bn = model.head.scale_heads[0][0][1]
    before = bb_bn.running_var.clone()
    model(torch.randn(2, 3, 64, 64)).mean().backward()
    assert not bb_bn.training and head_bn.training and torch.equal(bb_bn.running_var, before)
    assert bb_bn.weight.grad is not None


def test_onnx_parity_at_two_sizes_with_dynamic_height_and_width(tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from repvit.dense.segmentation.export import export_segmenter_onnx
    from repvit.deploy.onnx_export import make_session, read_metadata, run_session

    model = randomize_bn(build_semantic_fpn("repvit_m0_6", num_classes=11, fpn_channels=32, head_channels=16), 3)
    res = export_segmenter_onnx(model.eval(), tmp_path / "seg.onnx", example_size=(64, 64),
                                check_sizes=((64, 64), (96, 160)), metadata={"class_names": list("abc")})
    assert res["max_rel_diff"] < 1e-4
    proto = onnx.load(str(tmp_path / "seg.onnx"))
    dims = [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims[0] and dims[2] and dims[3]  # batch, height, width are symbolic
    ops = {n.op_type for n in proto.graph.node}
    assert "BatchNormalization" not in ops
    assert "GlobalAveragePool" in ops  # repvit.deploy.onnx_passes: squeeze-excite pooling stays in NCHWc
    assert read_metadata(tmp_path / "seg.onnx")["class_names"] == list("abc")
    # a third, odd size, run independently of the exporter's own check
    x = torch.randn(1, 3, 72, 100)
    with torch.no_grad():
        ref = model.fuse()(x)
    got = run_session(make_session(tmp_path / "seg.onnx", threads=1), x)[0]
    assert rel_err(got, ref) < 1e-4
