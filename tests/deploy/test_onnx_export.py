"""ONNX export: parity with the fused PyTorch model in ONNX Runtime (an independent runtime), graph and metadata."""

from __future__ import annotations

import json

import pytest
import torch

import repvit
from repvit.cli.main import main
from tests.helpers import randomize_bn, rel_err

onnx = pytest.importorskip("onnx", reason="ONNX export needs onnx: pip install 'repvit-pytorch[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="ONNX parity needs onnxruntime: pip install 'repvit-pytorch[onnx]'")

IMG = 64


def _session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A checkpoint with randomized BN statistics, exported with the CLI, and its fused PyTorch model."""
    tmp = tmp_path_factory.mktemp("onnx")
    model = randomize_bn(repvit.create_model("repvit_m0_6", num_classes=10, distillation=True), seed=1)
    ckpt = repvit.save_checkpoint(model, tmp / "m.safetensors", class_names=[f"c{i}" for i in range(10)])
    out = tmp / "m.onnx"
    assert main(["export", "--checkpoint", str(ckpt), "--output", str(out), "--img-size", str(IMG)]) == 0
    fused = repvit.fuse_model(repvit.create_model(checkpoint=ckpt))
    return out, fused


@pytest.mark.parametrize("batch", [1, 3])
def test_onnxruntime_matches_fused_pytorch(exported, batch):
    path, fused = exported
    x = torch.randn(batch, 3, IMG, IMG)
    (got,) = _session(path).run(None, {"input": x.numpy()})
    with torch.no_grad():
        ref = fused(x)
    assert got.shape == (batch, 10)
    assert rel_err(torch.from_numpy(got), ref) < 1e-4


def test_graph_has_no_batchnorm_and_pinned_opset(exported):
    proto = onnx.load(str(exported[0]))
    onnx.checker.check_model(proto)
    ops = {n.op_type for n in proto.graph.node}
    assert "BatchNormalization" not in ops
    assert "Conv" in ops
    assert {o.domain or "ai.onnx": o.version for o in proto.opset_import}["ai.onnx"] == 17
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value  # symbolic (dynamic) batch


def test_metadata_embedded(exported):
    meta = {p.key: p.value for p in onnx.load(str(exported[0])).metadata_props}
    assert json.loads(meta["input_size"]) == [3, IMG, IMG]
    assert json.loads(meta["mean"]) == pytest.approx([0.485, 0.456, 0.406])
    assert json.loads(meta["std"]) == pytest.approx([0.229, 0.224, 0.225])
    assert json.loads(meta["class_names"]) == [f"c{i}" for i in range(10)]
    assert meta["model_name"] == "repvit_m0_6"


def test_features_only_backbone_exports_four_outputs(tmp_path):
    from repvit.deploy.export import export_model

    model = randomize_bn(repvit.create_model("repvit_m0_6", features_only=True), seed=2)
    res = export_model(model, tmp_path / "f.onnx", "onnx", img_size=IMG)
    sess = _session(res.path)
    assert [o.name for o in sess.get_outputs()] == ["feat0", "feat1", "feat2", "feat3"]
    x = torch.randn(2, 3, IMG, IMG)
    got = sess.run(None, {"input": x.numpy()})
    with torch.no_grad():
        ref = repvit.fuse_model(model)(x)
    assert len(got) == 4
    for g, r, stride in zip(got, ref, (4, 8, 16, 32)):
        assert g.shape[-1] == IMG // stride
        assert rel_err(torch.from_numpy(g), r) < 1e-4


def test_baked_normalization_takes_unit_range_pixels(tmp_path):
    from repvit.deploy.export import export_model

    model = randomize_bn(repvit.create_model("repvit_m0_6", num_classes=5), seed=3)
    res = export_model(model, tmp_path / "n.onnx", "onnx", img_size=IMG, bake_normalization=True, batch=1)
    x01 = torch.rand(1, 3, IMG, IMG)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    (got,) = _session(res.path).run(None, {"input": x01.numpy()})
    with torch.no_grad():
        ref = repvit.fuse_model(model)((x01 - mean) / std)
    assert rel_err(torch.from_numpy(got), ref) < 1e-4
    assert _session(res.path).get_inputs()[0].shape == [1, 3, IMG, IMG]


def test_int8_is_qdq_per_channel_and_follows_fp32(tmp_path):
    from repvit.deploy.calib import load_calibration
    from repvit.deploy.export import export_model

    model = randomize_bn(repvit.create_model("repvit_m0_6", num_classes=10), seed=4)
    calib = load_calibration("digits", (IMG, IMG), None, None, limit=64)
    res = export_model(model, tmp_path / "q.onnx", "onnx", img_size=IMG, int8=True, calib=calib)
    proto = onnx.load(str(res.path))
    ops = [n.op_type for n in proto.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    # per-channel weights: a DequantizeLinear of a conv weight carries a vector of scales
    inits = {i.name: i for i in proto.graph.initializer}
    vec_scales = [n for n in proto.graph.node if n.op_type == "DequantizeLinear" and n.input[1] in inits
                  and len(inits[n.input[1]].dims) == 1 and inits[n.input[1]].dims[0] > 1]
    assert vec_scales
    x = torch.from_numpy(calib[0])
    (q,) = _session(res.path).run(None, {"input": x.numpy()})
    with torch.no_grad():
        ref = repvit.fuse_model(model)(x)
    cos = torch.nn.functional.cosine_similarity(torch.from_numpy(q), ref, dim=1)
    assert cos.min() > 0.98


class _TwoInputs(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, image, scale):
        return self.conv(image) * scale.view(1, -1, 1, 1), image.mean(dim=(2, 3))


def test_export_helper_names_inputs_outputs_and_dynamic_axes():
    from repvit.deploy.onnx_export import export_onnx_bytes

    torch.manual_seed(0)
    model = _TwoInputs().eval()
    spatial = {2: "height", 3: "width"}
    data = export_onnx_bytes(model, (torch.randn(1, 3, 8, 8), torch.rand(4)), input_names=["image", "scale"],
                             output_names=["features", "mean"], dynamic_axes={"image": spatial, "features": spatial},
                             dynamic_batch=False)
    graph = onnx.load_from_string(data).graph
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in graph.input}
    assert dims == {"image": [1, 3, "height", "width"], "scale": [4]}
    assert [o.name for o in graph.output] == ["features", "mean"]
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    x, s = torch.randn(1, 3, 12, 20), torch.rand(4)
    got = sess.run(None, {"image": x.numpy(), "scale": s.numpy()})
    with torch.no_grad():
        ref = model(x, s)
    assert all(rel_err(torch.from_numpy(g), r) < 1e-5 for g, r in zip(got, ref))
    batched = export_onnx_bytes(model, (torch.randn(1, 3, 8, 8), torch.rand(4)), input_names=["image", "scale"],
                                output_names=["features", "mean"])
    first = onnx.load_from_string(batched).graph.input[0].type.tensor_type.shape.dim[0]
    assert first.dim_param == "batch"


def test_format_table_suffixes():
    from repvit.deploy.export import FORMATS, format_for_path

    assert [format_for_path(f"m{s}") for s in (".onnx", ".pt", ".ts", ".mlpackage", ".pte", ".tflite")] == [
        "onnx", "torchscript", "torchscript", "coreml", "executorch", "tflite"]
    assert set(FORMATS) == {"onnx", "torchscript", "coreml", "executorch", "tflite"}
    with pytest.raises(ValueError, match="--format"):
        format_for_path("m.bin")
