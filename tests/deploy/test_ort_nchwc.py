"""The NCHWc squeeze-excite rewrite of ONNX Runtime's optimized graph: exact, and never used when it is wrong."""

from __future__ import annotations

import logging

import pytest
import torch

import repvit
from tests.helpers import randomize_bn, rel_err

onnx = pytest.importorskip("onnx", reason="the rewrite needs onnx: pip install 'repvit-pytorch[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="the rewrite needs onnxruntime: pip install 'repvit-pytorch[onnx]'")

from repvit.deploy import ort_nchwc  # noqa: E402
from repvit.deploy.export import export_model  # noqa: E402
from repvit.deploy.onnx_export import make_session  # noqa: E402

IMG = 96


def _nchwc_or_skip() -> int:
    block = ort_nchwc.nchwc_block_size()
    if block is None:
        pytest.skip("ONNX Runtime has no NCHWc layout on this CPU (x86 with AVX2 or AVX-512 only)")
    return block


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Fused repvit_m0_6 with random BN statistics, exported with a dynamic batch (as ``repvit export`` does)."""
    model = repvit.fuse_model(randomize_bn(repvit.create_model("repvit_m0_6", num_classes=10), seed=3))
    path = tmp_path_factory.mktemp("nchwc") / "m.onnx"
    export_model(model, path, "onnx", img_size=IMG)
    return path.read_bytes(), model


def _ops(data: bytes) -> list[str]:
    return [n.op_type for n in onnx.load_from_string(data).graph.node]


def test_block_size_is_a_vector_width():
    assert _nchwc_or_skip() in (8, 16)


def test_rewrite_removes_the_se_reorders(exported):
    block = _nchwc_or_skip()
    data, model = exported
    optimized = ort_nchwc.ort_optimized_bytes(data)
    rewritten, count = ort_nchwc.rewrite_se_blocks(optimized, block)
    from timm.layers import SqueezeExcite

    n_se = sum(1 for m in model.modules() if isinstance(m, SqueezeExcite))
    assert n_se > 0 and count == n_se  # every SE block of m0_6 is rewritten
    before, after = _ops(optimized), _ops(rewritten)
    reorders = [sum(ops.count(k) for k in ("ReorderOutput", "ReorderInput")) for ops in (before, after)]
    assert reorders[1] < reorders[0] / 2, reorders  # most layout conversions were around the SE blocks
    graph = onnx.load_from_string(rewritten).graph
    producer = {o: n.op_type for n in graph.node for o in n.output}
    for node in graph.node:  # every SE multiply now reads the blocked tensor through a zero-copy reshape
        if node.op_type == "Mul":
            assert [producer[i] for i in node.input] == ["Reshape", "Expand"]


@pytest.mark.parametrize("batch", [1, 3])
def test_rewritten_session_matches_pytorch_and_plain_onnxruntime(exported, batch):
    _nchwc_or_skip()
    data, model = exported
    fast = make_session(data, threads=1)
    plain = make_session(data, threads=1, nchwc_se=False)
    assert len(fast.get_providers()) == 1
    x = torch.randn(batch, 3, IMG, IMG, generator=torch.Generator().manual_seed(batch))
    feed = {"input": x.numpy()}
    got, ref = fast.run(None, feed)[0], plain.run(None, feed)[0]
    # same kernels; only the residual is summed inside the convolution instead of after it
    assert rel_err(torch.from_numpy(got), torch.from_numpy(ref)) < 1e-5
    with torch.no_grad():
        expected = model(x)
    assert rel_err(torch.from_numpy(got), expected) < 1e-4


def test_fixed_batch_of_one_scales_with_a_depthwise_conv(exported, caplog):
    """With the batch fixed at 1 each SE multiply is a depthwise 1x1 NCHWc conv whose filter is the scale (no Expand,
    no Mul left); ONNX Runtime then gives the plain graph's and PyTorch's output."""
    block = _nchwc_or_skip()
    from repvit.deploy.onnx_export import export_onnx_bytes
    from repvit.deploy.onnx_passes import apply_passes

    _, model = exported
    x = torch.randn(1, 3, IMG, IMG, generator=torch.Generator().manual_seed(5))
    data = apply_passes(export_onnx_bytes(model, x, dynamic_batch=False))
    rewritten, count = ort_nchwc.rewrite_se_blocks(ort_nchwc.ort_optimized_bytes(data), block)
    graph = onnx.load_from_string(rewritten).graph
    scale_convs = [n for n in graph.node if n.name.endswith("_scale_conv")]
    assert count > 0 and len(scale_convs) == count
    assert not {"Mul", "Expand"} & {n.op_type for n in graph.node}
    producer = {o: n for n in graph.node for o in n.output}
    for conv in scale_convs:
        group = next(a.i for a in conv.attribute if a.name == "group")
        assert conv.domain == "com.microsoft.nchwc" and producer[conv.input[1]].op_type == "Reshape"
        assert group % block == 0
    with caplog.at_level(logging.WARNING, logger="repvit.deploy.onnx_export"):
        fast = make_session(data, threads=1)
    assert "NCHWc" not in caplog.text  # the session runs the rewritten graph
    plain = make_session(data, threads=1, nchwc_se=False)
    got, ref = (torch.from_numpy(s.run(None, {"input": x.numpy()})[0]) for s in (fast, plain))
    assert rel_err(got, ref) < 1e-5
    with torch.no_grad():
        assert rel_err(got, model(x)) < 1e-4


def test_wrong_rewrite_is_detected_and_not_used(exported, monkeypatch, caplog):
    """A rewrite that changed the numbers must never reach the user: the plain session is returned instead."""
    _nchwc_or_skip()
    data, model = exported
    other = repvit.fuse_model(randomize_bn(repvit.create_model("repvit_m0_6", num_classes=10), seed=4))
    import io

    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(other, (torch.randn(1, 3, IMG, IMG),), buf, dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    monkeypatch.setattr(ort_nchwc, "rewrite_se_blocks", lambda d, b: (buf.getvalue(), 1))
    with caplog.at_level(logging.WARNING, logger="repvit.deploy.onnx_export"):
        sess = make_session(data, threads=1)
    assert "differs" in caplog.text
    x = torch.randn(2, 3, IMG, IMG)
    with torch.no_grad():
        expected = model(x)
    assert rel_err(torch.from_numpy(sess.run(None, {"input": x.numpy()})[0]), expected) < 1e-4


def test_failing_rewrite_falls_back(exported, monkeypatch, caplog):
    _nchwc_or_skip()
    data, _ = exported

    def boom(d, b):
        raise RuntimeError("simulated")

    monkeypatch.setattr(ort_nchwc, "rewrite_se_blocks", boom)
    with caplog.at_level(logging.WARNING, logger="repvit.deploy.onnx_export"):
        sess = make_session(data, threads=1)
    assert "simulated" in caplog.text and sess.get_inputs()[0].name == "input"


def test_graph_without_se_blocks_is_left_alone():
    _nchwc_or_skip()
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 16, 1))
    import io

    buf = io.BytesIO()
    torch.onnx.export(model, (torch.randn(1, 3, 32, 32),), buf, dynamo=False, opset_version=17)
    optimized = ort_nchwc.ort_optimized_bytes(buf.getvalue())
    assert ort_nchwc.rewrite_se_blocks(optimized, ort_nchwc.nchwc_block_size()) == (optimized, 0)
