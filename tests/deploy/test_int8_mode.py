"""INT8 modes: which CPUs get saturation-safe (7-bit) weights, that ONNX Runtime's and NNCF's quantizers really write
7-bit weights then, that the choice is recorded, and that a loss is called out."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import repvit
from repvit.deploy.int8_mode import INT8_MODES, int8_plan, isa_class, resolve_int8_mode
from tests.helpers import randomize_bn

AVX2 = {"avx", "avx2", "fma"}
AVX512 = AVX2 | {"avx512f", "avx512bw"}
VNNI = AVX512 | {"avx512_vnni"}
AMX = VNNI | {"amx_tile", "amx_int8", "amx_bf16"}


@pytest.mark.parametrize("flags,machine,isa,mode", [
    (AVX2, "x86_64", "avx2", "safe"),                      # AMD Zen 2/3, Intel before Cascade Lake
    (AVX512, "x86_64", "avx512", "safe"),                  # Skylake-SP: AVX-512 without VNNI
    (AVX2 | {"avx_vnni"}, "x86_64", "vnni", "full"),       # Alder Lake: AVX-VNNI
    (VNNI, "x86_64", "vnni", "full"),                      # Cascade Lake, Ice Lake, Zen 4
    (AMX, "x86_64", "amx", "full"),                        # Sapphire Rapids
    (set(), "aarch64", "arm", "full"),
])
def test_auto_mode_follows_the_isa(monkeypatch, flags, machine, isa, mode):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("REPVIT_INT8_MODE", raising=False)
    c = resolve_int8_mode("auto", flags=flags, machine=machine)
    assert (c.isa, c.mode, c.requested) == (isa, mode, "auto")
    assert c.saturation_safe == (mode == "safe") and c.reason
    assert c.to_dict()["saturation_safe"] == c.saturation_safe


def test_isa_cap_counts_as_a_cpu_without_vnni(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert isa_class(AMX, "x86_64") == "avx2"
    assert resolve_int8_mode("auto", flags=AMX, machine="x86_64").mode == "safe"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    assert isa_class(AMX, "x86_64") == "amx"


def test_explicit_mode_and_environment_override(monkeypatch):
    assert resolve_int8_mode("full", flags=AVX2, machine="x86_64").mode == "full"
    assert resolve_int8_mode("safe", flags=AMX, machine="x86_64").mode == "safe"
    monkeypatch.setenv("REPVIT_INT8_MODE", "full")
    assert resolve_int8_mode(None, flags=AVX2, machine="x86_64").mode == "full"
    monkeypatch.setenv("REPVIT_INT8_MODE", "fast")
    with pytest.raises(ValueError, match="REPVIT_INT8_MODE.*auto, safe, full"):
        resolve_int8_mode(None)
    with pytest.raises(ValueError, match="auto, safe, full"):
        resolve_int8_mode("8bit")
    assert INT8_MODES == ("auto", "safe", "full")


def _int8_weights(data: bytes) -> list[np.ndarray]:
    import onnx
    from onnx import numpy_helper

    proto = onnx.load_from_string(data)
    inits = {i.name: i for i in proto.graph.initializer}
    out = []
    for n in proto.graph.node:  # a DequantizeLinear fed by an int8 initializer is a quantized weight
        if n.op_type == "DequantizeLinear" and n.input[0] in inits and inits[n.input[0]].data_type == 3:
            out.append(numpy_helper.to_array(inits[n.input[0]]))
    return out


@pytest.fixture(scope="module")
def fp32_onnx():
    pytest.importorskip("onnxruntime", reason="needs onnxruntime: pip install 'repvit-pytorch[onnx]'")
    from repvit.deploy.onnx_export import export_onnx_bytes

    model = repvit.fuse_model(randomize_bn(repvit.create_model("repvit_m0_6", num_classes=10), seed=3)).eval()
    x = torch.randn(2, 3, 64, 64)
    return export_onnx_bytes(model, x, dynamic_batch=True), [torch.randn(4, 3, 64, 64).numpy() for _ in range(2)]


@pytest.mark.parametrize("mode,bound", [("safe", 64), ("full", 127)])
def test_onnxruntime_safe_mode_writes_7_bit_weights(fp32_onnx, mode, bound):
    from repvit.deploy.quantize import quantize_onnx_bytes

    data, calib = fp32_onnx
    ws = _int8_weights(quantize_onnx_bytes(data, calib, int8_mode=mode))
    assert len(ws) > 10
    peak = max(int(np.abs(w.astype(np.int32)).max()) for w in ws)
    assert peak <= bound and peak >= bound - 1  # symmetric per-channel weights reach the edge of their range


def test_dynamic_and_operator_formats_take_the_mode(fp32_onnx):
    import onnx

    from repvit.deploy.quantize import quantize_onnx_bytes, quantize_onnx_dynamic_bytes

    data, calib = fp32_onnx
    op = quantize_onnx_bytes(data, calib, int8_mode="safe", quant_format="operator")
    assert "QLinearConv" in {n.op_type for n in onnx.load_from_string(op).graph.node}
    dyn = onnx.load_from_string(quantize_onnx_dynamic_bytes(data, int8_mode="safe"))
    ints = [i for i in dyn.graph.initializer if i.data_type == 3]  # int8 weights of ConvInteger / MatMulInteger
    assert ints and max(int(np.abs(onnx.numpy_helper.to_array(i).astype(np.int32)).max()) for i in ints) <= 64
    with pytest.raises(ValueError, match="qdq, operator"):
        quantize_onnx_bytes(data, calib, quant_format="qop")


def test_nncf_safe_mode_turns_on_the_overflow_fix(fp32_onnx, monkeypatch):
    nncf = pytest.importorskip("nncf", reason="needs nncf: pip install 'repvit-pytorch[openvino]'")
    from repvit.deploy import openvino_runtime as ovr

    seen = []
    real = nncf.quantize
    monkeypatch.setattr(nncf, "quantize", lambda *a, **k: seen.append(k["advanced_parameters"].overflow_fix) or
                        real(*a, **k))
    data, calib = fp32_onnx
    for mode in ("safe", "full"):
        ovr.quantize_nncf(data, calib, int8_mode=mode)
    assert seen == [nncf.OverflowFix.ENABLE, nncf.OverflowFix.FIRST_LAYER]


def test_export_records_the_int8_mode(tmp_path):
    pytest.importorskip("onnxruntime", reason="needs onnxruntime: pip install 'repvit-pytorch[onnx]'")
    from repvit.deploy.calib import load_calibration
    from repvit.deploy.export import export_model
    from repvit.deploy.onnx_export import read_metadata

    model = repvit.create_model("repvit_m0_6", num_classes=10)
    calib = load_calibration("digits", (32, 32), None, None, limit=32)
    res = export_model(model, tmp_path / "q.onnx", "onnx", img_size=32, int8=True, calib=calib, int8_mode="safe")
    meta = read_metadata(res.path)
    assert meta["int8_mode"] == "safe" and meta["int8_mode_requested"] == "safe"
    assert meta["int8_isa_at_export"] == isa_class() and "7-bit" in meta["int8_weights"]
    assert meta["int8_plan"].startswith(int8_plan().name) and "GELU fused" in meta["int8_plan"]


def test_a_drop_of_more_than_half_a_point_is_a_warning_with_its_cause():
    from repvit.bench.accuracy import lowp_warning

    assert lowp_warning("onnxruntime-int8", "int8", -0.4, 0.995) is None
    w = lowp_warning("onnxruntime-int8", "int8", -9.8, 0.90)
    assert w.startswith("WARNING onnxruntime-int8") and "-9.80 points" in w and "VNNI" in w and "safe" in w
    assert "bf16" in lowp_warning("eager-bf16", "bf16", -1.0)
    assert lowp_warning("openvino-int8", "int8", 0.0, 0.98) is not None  # agreement below 99% alone warns too
