"""OpenVINO (an independent runtime) runs our ONNX export: parity with the fused PyTorch model, pinned settings, clear
errors, and no telemetry on import."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import repvit
from repvit.deploy.openvino_runtime import compile_onnx, import_openvino, run
from tests.helpers import randomize_bn, rel_err, require_openvino

IMG = 64


@pytest.fixture(scope="module")
def onnx_passes():
    pytest.importorskip("onnx", reason="ONNX export needs onnx: pip install 'repvit-pytorch[onnx]'")
    from repvit.deploy.onnx_export import export_onnx_bytes
    from repvit.deploy.onnx_passes import apply_passes

    return lambda model, x, dynamic: apply_passes(export_onnx_bytes(model, x, dynamic_batch=dynamic))


@pytest.fixture(scope="module")
def exported(tmp_path_factory, onnx_passes):
    """Fused repvit_m0_6 (random BN statistics) exported with a dynamic batch, as ``repvit export`` writes it, and
    compiled by OpenVINO from the file."""
    require_openvino()
    fused = repvit.fuse_model(randomize_bn(repvit.create_model("repvit_m0_6", num_classes=10), seed=4))
    path = tmp_path_factory.mktemp("openvino") / "m.onnx"
    path.write_bytes(onnx_passes(fused, torch.randn(1, 3, IMG, IMG), True))
    return fused, compile_onnx(path, threads=1)


@pytest.mark.parametrize("batch", [1, 3])
def test_openvino_matches_fused_pytorch(exported, batch):
    fused, compiled = exported
    x = torch.randn(batch, 3, IMG, IMG)
    (got,) = run(compiled, x)
    with torch.no_grad():
        ref = fused(x)
    assert got.shape == (batch, 10)
    assert rel_err(got, ref) < 1e-4


def test_features_only_backbone_gives_four_matching_outputs(onnx_passes):
    require_openvino()
    model = repvit.fuse_model(randomize_bn(repvit.create_model("repvit_m0_6", features_only=True), seed=5))
    x = torch.randn(1, 3, IMG, IMG)
    got = run(compile_onnx(onnx_passes(model, x, False), threads=1), x)
    with torch.no_grad():
        refs = model(x)
    assert len(got) == len(refs) == 4
    for g, r in zip(got, refs, strict=True):
        assert g.shape == r.shape
        assert rel_err(g, r) < 1e-4


def test_compiled_model_is_f32_with_pinned_threads(exported):
    # f32 pinned: OpenVINO would pick bf16 on CPUs that have it, which is not what FP32 ONNX Runtime computes
    compiled = exported[1]
    assert compiled.get_property("INFERENCE_PRECISION_HINT") == import_openvino().Type.f32
    assert int(compiled.get_property("INFERENCE_NUM_THREADS")) == 1
    assert int(compiled.get_property("NUM_STREAMS")) == 1


def test_missing_openvino_names_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(ImportError, match=r"pip install 'repvit-pytorch\[openvino\]'"):
        compile_onnx(b"", threads=1)


def test_import_sends_no_telemetry(tmp_path):
    """``import openvino`` sends a usage event and writes ~/intel unless telemetry is declined; ours declines it.

    Run in a fresh interpreter with HOME in tmp_path and no CI variables (CI systems set CI=true, which would hide a
    regression); the telemetry class's ``send_event`` is replaced so nothing is sent even if this fails.
    """
    require_openvino()
    code = textwrap.dedent("""
        import os
        calls = []
        try:
            from openvino_telemetry import Telemetry
            Telemetry.send_event = lambda self, *a, **k: calls.append(bool(self.consent))
        except ImportError:
            pass  # no telemetry package: OpenVINO uses its stub
        from repvit.deploy.openvino_runtime import import_openvino
        import_openvino()
        assert not any(calls), f"telemetry sent with consent: {calls}"
        assert "CI" not in os.environ, "CI must be restored after the import"
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "TF_BUILD", "JENKINS_URL")}
    env["HOME"] = str(tmp_path)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (tmp_path / "intel").exists(), "openvino_telemetry wrote its client id / stats files"
