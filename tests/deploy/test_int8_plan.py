"""INT8 plans: which plan each ISA class gets, that the GELU fusion is exact, and that a model quantized with the plan
stays close to FP32 on the digits set (ONNX Runtime's FP32 run of the same graph is the reference)."""

from __future__ import annotations

import numpy as np
import pytest

import repvit
from repvit.deploy.int8_mode import int8_plan, resolve_int8_mode
from tests.helpers import randomize_bn

AVX2 = {"avx", "avx2", "fma"}
VNNI = AVX2 | {"avx512f", "avx512bw", "avx512_vnni"}
AMX = VNNI | {"amx_tile", "amx_int8", "amx_bf16"}


@pytest.mark.parametrize("flags,machine,plan,runtime", [
    (AVX2, "x86_64", "avx2", "openvino-int8"),                          # AMD Zen 1-3
    (AVX2 | {"avx512f", "avx512bw"}, "x86_64", "avx2", "openvino-int8"),  # AVX-512 without VNNI
    (set(), "x86_64", "avx2", "openvino-int8"),                         # unknown x86: the safe plan
    (AVX2 | {"avx_vnni"}, "x86_64", "dot-product", "executorch-int8"),
    (VNNI, "x86_64", "dot-product", "executorch-int8"),
    (AMX, "x86_64", "dot-product", "executorch-int8"),
    (set(), "aarch64", "dot-product", "executorch-int8"),
])
def test_plan_follows_the_isa(monkeypatch, flags, machine, plan, runtime):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    c = resolve_int8_mode("auto", flags=flags, machine=machine)
    assert (c.plan.name, c.plan.runtime) == (plan, runtime)
    assert c.plan is int8_plan(c.isa) and c.plan.fuse_gelu and "Mul" not in c.plan.op_types
    assert c.plan.name in c.metadata()["int8_plan"] and c.to_dict()["plan"]["name"] == plan


@pytest.fixture(scope="module")
def digits_model():
    pytest.importorskip("onnxruntime", reason="needs onnxruntime: pip install 'repvit-pytorch[onnx]'")
    from repvit.deploy.calib import digits_tensors
    from repvit.deploy.onnx_export import export_onnx_bytes

    model = repvit.fuse_model(randomize_bn(repvit.create_model("repvit_m0_6", num_classes=10), seed=1)).eval()
    x, _ = digits_tensors("val", img_size=32)
    calib = [b.numpy() for b in digits_tensors("train", img_size=32)[0][:128].split(32)]
    return export_onnx_bytes(model, x[:2], dynamic_batch=True), x[:96].numpy(), calib


def _run(data: bytes, x: np.ndarray) -> np.ndarray:
    from repvit.deploy.onnx_export import make_session

    sess = make_session(data, threads=2, spinning=False, nchwc_se=False)
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def test_gelu_fusion_is_exact_and_complete(digits_model):
    import onnx

    from repvit.deploy.quantize import fuse_erf_gelu

    data, x, _ = digits_model
    model = onnx.load_from_string(data)
    n_erf = sum(n.op_type == "Erf" for n in model.graph.node)
    assert n_erf > 5 and fuse_erf_gelu(model) == n_erf
    assert not {"Erf", "Div"} & {n.op_type for n in model.graph.node}
    used = {i for n in model.graph.node for i in n.input}
    assert all(t.name in used for t in model.graph.initializer)  # the GELU constants went with the subgraphs
    onnx.checker.check_model(model)
    np.testing.assert_allclose(_run(model.SerializeToString(), x), _run(data, x), rtol=1e-4, atol=1e-4)
    assert fuse_erf_gelu(model) == 0  # idempotent


def test_the_plan_keeps_int8_close_to_fp32_on_digits(digits_model):
    import onnx

    from repvit.deploy.quantize import quantize_onnx_bytes

    data, x, calib = digits_model
    choice = resolve_int8_mode("safe")
    q = quantize_onnx_bytes(data, calib, int8_mode=choice)
    ops = [n.op_type for n in onnx.load_from_string(q).graph.node]
    assert "Erf" not in ops and ops.count("Gelu") > 5  # GELU runs as one op between the INT8 convolutions
    ref, got = _run(data, x), _run(q, x)
    cos = (ref * got).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
    assert cos.min() > 0.98, cos.min()
    assert (ref.argmax(1) == got.argmax(1)).mean() >= 0.9


def test_onnxruntime_fuses_the_plan_into_int8_kernels(digits_model, tmp_path):
    """ONNX Runtime's own optimizer turns the plan's QDQ graph into QLinearConv / QLinearAdd with GELU as one op."""
    import onnx
    import onnxruntime as ort

    from repvit.deploy.quantize import quantize_onnx_bytes

    data, _, calib = digits_model
    q = quantize_onnx_bytes(data, calib, int8_mode="safe")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    so.log_severity_level = 3
    ort.InferenceSession(q, so, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node]
    assert {"QLinearConv", "QLinearAdd", "Gelu"} <= set(ops) and "Erf" not in ops and "Conv" not in ops
    # what is left of the Q/DQ nodes sits around the plan's float ops: one pair per GELU, about seven per
    # squeeze-excite block (pool, sigmoid, scale and a requantization), the input, the pooled features, the logits
    qdq = ops.count("QuantizeLinear") + ops.count("DequantizeLinear")
    assert qdq <= 2 * ops.count("Gelu") + 8 * ops.count("Mul") + 4, (qdq, sorted(set(ops)))
