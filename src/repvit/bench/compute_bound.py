"""This machine's FP32 compute bound: the best large-sgemm rate of MKL (``torch.mm``) and OpenBLAS (numpy), and the
latency it implies for a model.

The bound for a model is ``2 * MACs / sgemm FLOP/s``: the time the model's arithmetic would take if every
multiply-add ran at large-matrix-multiply speed. Real convolutional networks (depthwise layers, small tensors,
memory traffic) rarely get near it; ``measured / bound`` says how far off a runtime is.

Which library is faster depends on the CPU vendor (OpenBLAS beat MKL on an AMD EPYC, MKL may win on Intel), so the
bound takes the better of the two. OpenBLAS's worker threads keep spinning after a call and slow whatever runs next
on a small machine, so :func:`openblas_sgemm_probe` times it in a separate process (its own phase);
the ``torch.mm`` probe (:func:`sgemm_callable`) is timed in-process, interleaved with the models.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable

import torch

__all__ = ["sgemm_callable", "sgemm_flops", "bound_ms", "layer_gemm_callable", "openblas_sgemm_probe",
           "best_rate"]

_OPENBLAS_PROBE = """
import json, sys, time
import numpy as np
n, reps, warmup = (int(v) for v in sys.argv[1:4])
rng = np.random.default_rng(0)
a = rng.standard_normal((n, n), dtype=np.float32)
b = rng.standard_normal((n, n), dtype=np.float32)
c = np.empty((n, n), dtype=np.float32)
for _ in range(warmup):
    np.matmul(a, b, out=c)
ms = []
for _ in range(reps):
    t0 = time.perf_counter()
    np.matmul(a, b, out=c)
    ms.append((time.perf_counter() - t0) * 1e3)
cfg = np.show_config(mode="dicts") if hasattr(np, "show_config") else {}
blas = (cfg.get("Build Dependencies", {}) or {}).get("blas", {}) if isinstance(cfg, dict) else {}
print(json.dumps({"samples_ms": ms, "blas": blas.get("name"), "blas_version": blas.get("version")}))
"""


def openblas_sgemm_probe(n: int = 1024, threads: int = 2, reps: int = 30, warmup: int = 5,
                         timeout_s: float = 300.0) -> dict:
    """Time ``n x n`` float32 ``numpy.matmul`` (OpenBLAS in numpy's wheels) in a separate process with
    ``threads`` BLAS threads; returns ``{"library", "blas", "median_ms", "min_ms", "gflops", "best_gflops", ...}``.

    Raises:
        RuntimeError: the probe process failed (its stderr is included).
    """
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    proc = subprocess.run([sys.executable, "-c", _OPENBLAS_PROBE, str(n), str(reps), str(warmup)],
                          capture_output=True, text=True, env=env, timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"the OpenBLAS sgemm probe failed: {proc.stderr.strip()[-500:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    med, best = statistics.median(out["samples_ms"]), min(out["samples_ms"])
    flop = 2.0 * n**3
    return {"library": "openblas (numpy)", "blas": out.get("blas"), "blas_version": out.get("blas_version"),
            "n": n, "threads": threads, "median_ms": med, "min_ms": best,
            "gflops": sgemm_flops(med, flop) / 1e9, "best_gflops": sgemm_flops(best, flop) / 1e9,
            "process": "separate"}


def best_rate(probes: dict[str, dict]) -> tuple[str, dict]:
    """The probe with the highest median GFLOP/s among ``{name: probe}`` (probes that failed are skipped)."""
    ok = {k: v for k, v in probes.items() if v and v.get("gflops")}
    if not ok:
        raise ValueError("no sgemm probe succeeded.")
    name = max(ok, key=lambda k: ok[k]["gflops"])
    return name, ok[name]


def sgemm_callable(n: int = 1024) -> tuple[Callable[[], torch.Tensor], float]:
    """A zero-argument callable running one ``n x n @ n x n`` float32 ``torch.mm`` and its FLOP count (2 n^3).

    Time it together with the models (``interleaved_latency``) so it sees the same machine load and thread count.
    """
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g)
    b = torch.randn(n, n, generator=g)
    out = torch.empty(n, n)

    def run() -> torch.Tensor:
        return torch.mm(a, b, out=out)

    return run, 2.0 * n**3


def sgemm_flops(ms_per_call: float, flops_per_call: float) -> float:
    """FLOP/s from a timed sgemm call."""
    return flops_per_call / (ms_per_call * 1e-3)


def bound_ms(macs: float, flops_per_s: float, batch: int = 1) -> float:
    """The compute-bound latency in ms of ``batch`` images of a model with ``macs`` MACs per image."""
    return 2.0 * macs * batch / flops_per_s * 1e3


def layer_gemm_callable(model: torch.nn.Module, example: torch.Tensor) -> tuple[Callable[[], None], float]:
    """A callable running, one after another, the ``torch.mm`` each dense layer of ``model`` amounts to, and their
    FLOP count.

    Every ``Conv2d`` with ``groups == 1`` becomes ``(C_out x C_in*kh*kw) @ (C_in*kh*kw x N*H_out*W_out)`` and every
    ``Linear`` ``(N x in) @ (in x out)``, at the shapes a forward pass of ``example`` gives them. Depthwise
    convolutions, activations, pooling and memory layout are left out. Its time against :func:`bound_ms` says how far
    below large-matrix speed the model's own layer shapes already are: a runtime whose dense kernels are no faster
    than this machine's sgemm at those shapes cannot beat it.
    """
    shapes: list[tuple[int, int, int]] = []

    def hook(mod: torch.nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        if isinstance(mod, torch.nn.Conv2d):
            kh, kw = mod.kernel_size
            shapes.append((mod.out_channels, mod.in_channels * kh * kw, out.shape[0] * out.shape[2] * out.shape[3]))
        else:
            shapes.append((inp[0].numel() // mod.in_features, mod.in_features, mod.out_features))

    layers = [m for m in model.modules()
              if (isinstance(m, torch.nn.Conv2d) and m.groups == 1) or isinstance(m, torch.nn.Linear)]
    handles = [m.register_forward_hook(hook) for m in layers]
    try:
        with torch.no_grad():
            model.eval()(example)
    finally:
        for h in handles:
            h.remove()
    g = torch.Generator().manual_seed(0)
    operands = [(torch.randn(m, k, generator=g), torch.randn(k, n, generator=g), torch.empty(m, n))
                for m, k, n in shapes]

    def run() -> None:
        for a, b, out in operands:
            torch.mm(a, b, out=out)

    return run, float(sum(2 * m * k * n for m, k, n in shapes))
