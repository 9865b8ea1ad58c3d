"""``repvit export`` fails with one clear line and exit code 1 for each documented error."""

from __future__ import annotations

import pytest
import torch

import repvit
from repvit.cli.main import main

pytest.importorskip("onnxruntime", reason="ONNX export needs onnxruntime: pip install 'repvit-pytorch[onnx]'")


def _err(capsys, argv) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 1, err
    assert err.startswith("repvit export: error:")
    return err


def test_unknown_format_lists_supported(capsys, tmp_path):
    err = _err(capsys, ["export", "--model", "m0_6", "--format", "tensorrt", "--output", str(tmp_path / "m.plan")])
    assert "tensorrt" in err and "onnx" in err and "torchscript" in err and "coreml" in err
    assert "executorch" in err and "tflite" in err


def test_image_size_not_multiple_of_32(capsys, tmp_path):
    err = _err(capsys, ["export", "--model", "m0_6", "--output", str(tmp_path / "m.onnx"), "--img-size", "100"])
    assert "multiple of 32" in err and "128" in err
    assert not (tmp_path / "m.onnx").exists()


def test_checkpoint_that_does_not_match(capsys, tmp_path):
    ckpt = repvit.save_checkpoint(repvit.create_model("repvit_m0_9", num_classes=10), tmp_path / "m09.safetensors")
    err = _err(capsys, ["export", "--model", "m1_1", "--checkpoint", str(ckpt), "--output", str(tmp_path / "x.onnx"),
                        "--img-size", "64"])
    assert "checkpoint" in err.lower()
    assert not (tmp_path / "x.onnx").exists()


def test_missing_optional_dependency_names_extra(capsys, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "coremltools", None)  # makes `import coremltools` raise ImportError
    err = _err(capsys, ["export", "--model", "m0_6", "--output", str(tmp_path / "m.mlpackage"), "--img-size", "64"])
    assert "pip install 'repvit-pytorch[coreml]'" in err


def test_parity_failure_reports_difference(capsys, tmp_path, monkeypatch):
    """An exporter that produces a different graph (one weight perturbed) must be caught by the parity check."""
    import repvit.deploy.onnx_export as ox

    real = ox.export_onnx_bytes

    def broken(model, example, **kw):
        bad = __import__("copy").deepcopy(model)
        with torch.no_grad():
            next(p for p in bad.parameters() if p.dim() == 4).add_(0.5)
        return real(bad, example, **kw)

    monkeypatch.setattr(ox, "export_onnx_bytes", broken)
    out = tmp_path / "m.onnx"
    err = _err(capsys, ["export", "--model", "m0_6", "--output", str(out), "--img-size", "64"])
    assert "parity check failed" in err and "max |exported - fused PyTorch|" in err and "tolerance" in err
    assert "--rtol" in err  # the fix, when the difference is rounding
    assert not out.exists()  # nothing is written when parity fails


def test_int8_needs_calibration(capsys, tmp_path):
    err = _err(capsys, ["export", "--model", "m0_6", "--output", str(tmp_path / "m.onnx"), "--int8"])
    assert "--calib" in err
