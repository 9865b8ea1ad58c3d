"""Low-precision and phone-runtime benchmark backends, the two-library compute bound and the CPU flags."""

from __future__ import annotations

import pytest
import torch

import repvit
from tests.helpers import rel_err

IMG = 64


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    model = repvit.fuse_model(repvit.create_model("repvit_m0_6", num_classes=10)).eval()
    x = torch.randn(2, 3, IMG, IMG)
    with torch.no_grad():
        return model, x, model(x)


def test_cpu_flags_agree_with_pytorch_cpu_capability():
    from repvit.bench.latency import ISA_FLAGS, cpu_flags, environment_info

    flags = cpu_flags()
    if flags is None:
        pytest.skip("no /proc/cpuinfo on this platform")
    assert set(ISA_FLAGS) <= set(flags)
    cap = torch.backends.cpu.get_cpu_capability()  # PyTorch's own dispatch: AVX512 needs avx512f, AVX2 needs avx2
    if cap == "AVX512":
        assert flags["avx512f"] and flags["avx2"]
    elif cap == "AVX2":
        assert flags["avx2"]
    assert environment_info()["cpu_flags"] == flags


def test_openblas_probe_runs_in_its_own_process_and_the_bound_takes_the_faster_library():
    from repvit.bench.compute_bound import best_rate, openblas_sgemm_probe

    p = openblas_sgemm_probe(256, threads=1, reps=3, warmup=1)
    assert p["process"] == "separate" and p["gflops"] > 0 and p["best_gflops"] >= p["gflops"]
    assert p["median_ms"] == pytest.approx(2 * 256**3 / (p["gflops"] * 1e9) * 1e3)
    name, best = best_rate({"mkl": {"gflops": 10.0}, "openblas": p | {"gflops": 20.0}, "failed": None})
    assert name == "openblas" and best["gflops"] == 20.0
    with pytest.raises(ValueError, match="no sgemm probe"):
        best_rate({"mkl": None})


def test_lowp_summary_picks_fastest_per_precision():
    from repvit.bench.runner import lowp_summary

    rows = [{"model": "m", "backend": b, "precision": p, "latency_ms": ms} for b, p, ms in
            [("eager", "fp32", 20.0), ("openvino", "fp32", 10.0), ("onnxruntime-int8", "int8", 12.0),
             ("openvino-int8", "int8", 5.0), ("openvino-bf16", "bf16", 8.0)]]
    acc = {"rows": [{"backend": "openvino-int8", "passed": True}]}
    (s,) = lowp_summary(rows, acc)
    assert s["fp32_backend"] == "openvino" and s["int8_backend"] == "openvino-int8"
    assert s["int8_speedup"] == pytest.approx(2.0) and s["bf16_speedup"] == pytest.approx(1.25)
    assert s["int8_accuracy"] == {"backend": "openvino-int8", "passed": True}
    assert s["fp32_compared"] == ["eager", "openvino"]  # the report says the fastest FP32 is only of these
    from repvit.bench.report import _lowp_lines

    header = _lowp_lines([s])[1]
    assert "the fastest of eager, openvino;" in header and "onnxruntime, executorch, tflite (not run" in header


@pytest.mark.parametrize("backend,tol", [("eager-bf16", 0.05), ("openvino-bf16", 0.05), ("openvino-int8", 0.15)])
def test_low_precision_backends_follow_fp32_but_are_not_fp32(small, backend, tol):
    from repvit.bench.backends import available_backends, precision_of, prepare_backend
    from repvit.bench.lowp_backends import first_output

    if backend not in available_backends():
        pytest.skip(f"{backend} is not available here")
    model, x, ref = small
    calib = [torch.randn(4, 3, IMG, IMG) for _ in range(2)]
    out = first_output(prepare_backend(model, backend, x, threads=1, calib=calib)())
    assert out.shape == ref.shape
    err = rel_err(out, ref)
    assert err < tol, f"{backend}: {err:.3e}"
    if precision_of(backend) == "int8" or backend == "eager-bf16":
        assert err > 1e-5  # really low precision, not FP32 under another name
    if backend == "openvino-bf16":
        from repvit.bench.latency import cpu_flags

        if (cpu_flags() or {}).get("avx512_bf16") or (cpu_flags() or {}).get("amx_bf16"):
            assert err > 1e-5  # the CPU has bf16, so OpenVINO must have used it


@pytest.mark.slow  # ~50 s: lowers a program to ExecuTorch
def test_remote_executorch_program_matches_in_process_runtime(small):
    pytest.importorskip("executorch", reason="needs executorch: pip install 'repvit-pytorch[executorch]'")
    from repvit.bench.remote import RemoteProgram
    from repvit.deploy.executorch_export import export_executorch_bytes, load_method, run_method

    model, x, ref = small
    pte, info = export_executorch_bytes(model, x[:1])
    assert info["delegate_calls"] == 1
    remote = RemoteProgram(pte, x[:1].numpy(), threads=1)
    try:
        (got,) = remote()
        samples = remote.time_calls(3)
    finally:
        remote.close()
    assert rel_err(torch.from_numpy(got), ref[:1]) < 1e-4
    assert rel_err(torch.from_numpy(got), run_method(load_method(pte), x[:1])[0]) < 1e-6
    assert len(samples) == 3 and all(s > 0 for s in samples)
    with pytest.raises(RuntimeError, match="worker process failed"):
        RemoteProgram(b"not a program", x[:1].numpy(), threads=1)
