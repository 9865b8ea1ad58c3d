"""Latency measurement shared by ``repvit bench``, ``repvit roadmap`` and the scripts in ``benchmarks/``.

The runner times callables on the CPU (or CUDA with events), pins the thread count and records it, and can
interleave several candidates round by round so that a noisy, shared machine affects them alike.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from repvit.runtime import torch_threads

__all__ = [
    "LatencyResult",
    "thread_count",
    "time_callable",
    "interleaved_latency",
    "cuda_event_throughput",
    "environment_info",
    "cpu_flags",
    "ISA_FLAGS",
]

ISA_FLAGS: tuple[str, ...] = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx")


@dataclass
class LatencyResult:
    """Timings of one candidate in milliseconds per call."""

    name: str
    samples_ms: list[float] = field(default_factory=list)
    threads: int = 0

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def p90_ms(self) -> float:
        s = sorted(self.samples_ms)
        return s[min(len(s) - 1, int(round(0.9 * (len(s) - 1))))]

    @property
    def min_ms(self) -> float:
        return min(self.samples_ms)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("samples_ms")
        d.update(median_ms=self.median_ms, p90_ms=self.p90_ms, min_ms=self.min_ms, n=len(self.samples_ms))
        return d


@contextmanager
def thread_count(threads: int | None) -> Iterator[int]:
    """Pin PyTorch's intra-op thread count for the duration of the block (:func:`repvit.runtime.torch_threads`);
    yields the count in force."""
    with torch_threads(threads or None):
        yield torch.get_num_threads()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_callable(fn: Callable[[], Any], iters: int = 50, warmup: int = 10, device: str = "cpu",
                  clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Milliseconds per call of ``fn`` over ``iters`` calls after ``warmup`` calls, by ``clock`` (seconds; wall time
    by default, ``time.thread_time`` for the calling thread's CPU time, which a busy machine's other processes do not
    add to when the work runs on that thread alone).

    A callable with a ``time_calls(n)`` method (a model running in a worker process,
    :class:`repvit.bench.remote.RemoteProgram`) times its own calls there; its timings are used as they are.
    """
    if hasattr(fn, "time_calls"):
        fn.time_calls(warmup)
        return list(fn.time_calls(iters))
    for _ in range(warmup):
        fn()
    _sync(device)
    out = []
    for _ in range(iters):
        t0 = clock()
        fn()
        _sync(device)
        out.append((clock() - t0) * 1e3)
    return out


def interleaved_latency(
    candidates: dict[str, Callable[[], Any]],
    rounds: int = 10,
    iters_per_round: int = 10,
    warmup: int = 10,
    threads: int | None = 2,
    device: str = "cpu",
    settle_s: float = 0.0,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, LatencyResult]:
    """Time several callables round-robin so machine noise hits them alike.

    Each round runs every candidate ``iters_per_round`` times (order rotating between rounds); the samples of all
    rounds are pooled per candidate. ``settle_s`` adds an untimed pause after each candidate's block, so a runtime
    whose idle threads spin (ONNX Runtime's default) does not slow down the candidate that follows it. ``clock``: as
    in :func:`time_callable`.
    """
    results = {name: LatencyResult(name) for name in candidates}
    names = list(candidates)
    with thread_count(threads) as n, torch.inference_mode():
        for name in names:
            results[name].threads = n
            time_callable(candidates[name], iters=0, warmup=warmup, device=device)
        for r in range(rounds):
            order = names[r % len(names):] + names[: r % len(names)]
            for name in order:
                results[name].samples_ms += time_callable(candidates[name], iters_per_round, 0, device, clock)
                if settle_s:  # untimed pause: lets spinning worker threads (ONNX Runtime's default) go idle
                    time.sleep(settle_s)
    return results


def cuda_event_throughput(fn: Callable[[], Any], batch: int, iters: int = 30, warmup: int = 10) -> dict[str, float]:
    """Time a CUDA callable with CUDA events, in the manner of the RepViT authors' GPU throughput script.

    Each call is bracketed by a pair of ``torch.cuda.Event(enable_timing=True)``; the device is synchronized once
    per call so that event times are read after the work finished.

    Returns:
        ``median_ms``, ``p90_ms`` per call and ``img_per_s`` (``batch`` images per median call).
    """
    if not torch.cuda.is_available():
        raise RuntimeError("cuda_event_throughput needs a CUDA device; none is available.")
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(iters):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
    r = LatencyResult("cuda", times)
    return {"median_ms": r.median_ms, "p90_ms": r.p90_ms, "img_per_s": batch / (r.median_ms * 1e-3)}


def environment_info() -> dict[str, Any]:
    """Machine, library versions and thread settings, recorded beside every benchmark result."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        import os

        info["cpu_count"] = os.cpu_count()
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "cpu family":  # the model name of a VM is often just the vendor: keep family/model too
                    info["cpu_family"] = value.strip()
                elif key == "model":
                    info["cpu_model_number"] = value.strip()
                elif key == "model name":
                    info["cpu_model"] = value.strip()
                    break
    except OSError:
        pass
    info["cpu_flags"] = cpu_flags()
    from repvit.deploy.int8_mode import isa_class

    info["int8_isa_class"] = isa_class()
    from importlib.metadata import PackageNotFoundError, version

    try:  # a busy machine makes every timing slower: record how busy it was
        import os

        info["loadavg_1m_5m_15m"] = [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        info["loadavg_1m_5m_15m"] = None
    # read versions from package metadata: importing coremltools & co. just to learn a version is slow and noisy
    for mod in ("timm", "torchvision", "onnxruntime", "onnx", "openvino", "nncf", "executorch", "litert-torch",
                "ai-edge-litert", "coremltools", "numpy"):
        try:
            info[mod] = version(mod)
        except PackageNotFoundError:
            info[mod] = None
    return info


def cpu_flags() -> dict[str, bool] | None:
    """Which of :data:`ISA_FLAGS` this CPU reports in ``/proc/cpuinfo`` (``amx``: any of amx_tile/int8/bf16, also
    listed one by one); None where there is no ``/proc/cpuinfo``."""
    from repvit.deploy.int8_mode import read_cpu_flags

    flags = read_cpu_flags()
    if flags is None:
        return None
    out = {k: k in flags for k in ISA_FLAGS if k != "amx"}
    amx = sorted(f for f in flags if f.startswith("amx"))
    out["amx"] = bool(amx)
    out.update({f: True for f in amx})
    return out
