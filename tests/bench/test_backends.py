"""``prepare_backend``: every CPU backend computes what PyTorch eager computes (ONNX Runtime as the independent
reference), and errors are clear."""

from __future__ import annotations

import shutil

import pytest
import torch

import repvit
from repvit.bench.backends import BACKENDS, CPU_BACKENDS, available_backends, prepare_backend
from tests.helpers import randomize_bn, rel_err, require_openvino


@pytest.fixture(scope="module")
def fused_and_input():
    model = repvit.fuse_model(randomize_bn(repvit.create_model("repvit_m0_6", num_classes=10), seed=7))
    return model, torch.randn(2, 3, 64, 64)


def _out(r):
    r = r[0] if isinstance(r, (list, tuple)) else r
    return torch.as_tensor(r).float()


@pytest.mark.parametrize("backend", ["eager", "channels_last", "torchscript", "onnxruntime"])
def test_backend_matches_eager(fused_and_input, backend):
    if backend == "onnxruntime":
        pytest.importorskip("onnxruntime", reason="needs onnxruntime: pip install 'repvit-pytorch[onnx]'")
    model, x = fused_and_input
    with torch.no_grad():
        ref = model(x)
    assert rel_err(_out(prepare_backend(model, backend, x)()), ref) < 1e-4


def test_int8_backend_close_to_fp32(fused_and_input):
    pytest.importorskip("onnxruntime", reason="needs onnxruntime: pip install 'repvit-pytorch[onnx]'")
    model, x = fused_and_input
    with torch.no_grad():
        ref = model(x)
    got = _out(prepare_backend(model, "onnxruntime-int8", x, calib=[x.numpy(), torch.randn_like(x).numpy()])())
    assert torch.nn.functional.cosine_similarity(got, ref, dim=1).min() > 0.98


@pytest.mark.parametrize("batch", [1, 3])
def test_openvino_backend_matches_fused_pytorch(fused_and_input, batch):
    pytest.importorskip("onnx", reason="the openvino backend exports with onnx: pip install 'repvit-pytorch[onnx]'")
    require_openvino()
    model = fused_and_input[0]
    x = torch.randn(batch, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
    got = _out(prepare_backend(model, "openvino", x, threads=1)())
    assert got.shape == ref.shape
    assert rel_err(got, ref) < 1e-4


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None, reason="inductor needs a C++ compiler")
def test_compile_backend_matches_eager(fused_and_input):
    model, x = fused_and_input
    with torch.no_grad():
        ref = model(x)
    assert rel_err(_out(prepare_backend(model, "compile", x)()), ref) < 1e-4


def test_unknown_backend_lists_supported(fused_and_input):
    model, x = fused_and_input
    with pytest.raises(ValueError) as e:
        prepare_backend(model, "tensorrt", x)
    for b in BACKENDS:
        assert b in str(e.value)


def test_cuda_backend_without_cuda_is_a_clear_error(fused_and_input):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the error path is for machines without it")
    model, x = fused_and_input
    with pytest.raises(RuntimeError, match="CUDA"):
        prepare_backend(model, "cuda-fp16", x)


def test_missing_onnxruntime_names_extra(fused_and_input, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    model, x = fused_and_input
    with pytest.raises(ImportError, match=r"pip install 'repvit-pytorch\[onnx\]'"):
        prepare_backend(model, "onnxruntime", x)


def test_missing_openvino_names_extra(fused_and_input, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "openvino", None)
    model, x = fused_and_input
    with pytest.raises(ImportError, match=r"pip install 'repvit-pytorch\[openvino\]'"):
        prepare_backend(model, "openvino", x)
    assert "openvino" not in available_backends()


def test_backend_list_is_stable():
    # the roadmap helper depends on these names
    assert CPU_BACKENDS == (
        "eager", "channels_last", "compile", "torchscript", "onnxruntime", "onnxruntime-int8", "openvino",
        "executorch", "executorch-int8", "openvino-int8", "openvino-qdq", "openvino-bf16", "eager-bf16",
        "onnxruntime-int8-conv", "tflite",
    )
