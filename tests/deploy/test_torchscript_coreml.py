"""TorchScript (traced, frozen) parity and the Core ML package's spec."""

from __future__ import annotations

import json

import pytest
import torch

import repvit
from repvit.deploy.export import export_model
from tests.helpers import randomize_bn, rel_err

IMG = 64


def test_torchscript_file_matches_fused_pytorch(tmp_path):
    model = randomize_bn(repvit.create_model("repvit_m0_6", num_classes=7), seed=5)
    res = export_model(model, tmp_path / "m.pt", "torchscript", img_size=IMG, class_names=list("abcdefg"))
    files = {"metadata.json": ""}
    loaded = torch.jit.load(str(res.path), _extra_files=files)
    assert isinstance(loaded, torch.jit.ScriptModule)
    assert "BatchNorm" not in str(loaded.graph)  # frozen and fused: plain convolutions only
    meta = json.loads(files["metadata.json"])
    assert meta["class_names"] == list("abcdefg") and meta["input_size"] == [3, IMG, IMG]
    fused = repvit.fuse_model(model)
    for batch in (1, 3):
        x = torch.randn(batch, 3, IMG, IMG)
        with torch.no_grad():
            assert rel_err(loaded(x), fused(x)) < 1e-4


def test_coreml_package_spec(tmp_path):
    pytest.importorskip("coremltools", reason="Core ML export needs coremltools: pip install 'repvit-pytorch[coreml]'")
    from repvit.deploy.coreml import coreml_spec_summary

    model = randomize_bn(repvit.create_model("repvit_m0_6", num_classes=10), seed=6)
    res = export_model(model, tmp_path / "m.mlpackage", "coreml", img_size=(64, 96),
                       class_names=[str(i) for i in range(10)])
    assert res.path.is_dir() and (res.path / "Manifest.json").exists()
    spec = coreml_spec_summary(res.path)
    assert spec["is_ml_program"]
    (inp,) = spec["inputs"]
    assert inp["name"] == "image" and inp["kind"] == "imageType" and inp["shape"] == [1, 3, 64, 96]
    (out,) = spec["outputs"]
    assert out["name"] == "logits" and out["kind"] == "multiArrayType"
    meta = spec["metadata"]
    assert json.loads(meta["class_names"]) == [str(i) for i in range(10)]
    assert json.loads(meta["mean"]) == pytest.approx([0.485, 0.456, 0.406])
    assert meta["model_name"] == "repvit_m0_6"
    # the ImageType scales pixels by 1/255 before the (baked) normalization: the program's first op does it
    import coremltools as ct

    s = ct.utils.load_spec(str(res.path))
    assert s.description.input[0].type.imageType.colorSpace == ct.proto.FeatureTypes_pb2.ImageFeatureType.RGB
    block = next(iter(s.mlProgram.functions["main"].block_specializations.values()))
    consts = {op.outputs[0].name: op for op in block.operations if op.type == "const"}
    (mul,) = [op for op in block.operations if op.type == "mul" and op.outputs[0].name.startswith("image__scaled")]
    scale_name = mul.inputs["y"].arguments[0].name
    val = consts[scale_name].attributes["val"].immediateValue.tensor
    assert float(list(val.floats.values)[0]) == pytest.approx(1 / 255, rel=1e-3)
