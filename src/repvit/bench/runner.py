"""``run_benchmark``: latency, throughput and efficiency vs the compute bound for models x backends, one run.

All candidates (every model on every backend, plus the MKL sgemm probe) are timed in one interleaved run, so machine
noise affects them alike, with the thread count pinned and recorded. The OpenBLAS sgemm probe runs just before, in
its own process (its threads spin after a call); the compute bound uses the faster of the two libraries. With
``accuracy_checkpoint`` (a digits-trained checkpoint) every backend's top-1 on the digits held-out split is checked
against FP32 in the same run (:mod:`repvit.bench.accuracy`), and ``lowp`` compares the fastest INT8 and bf16
backends with the fastest FP32 one per model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from .backends import BACKENDS, CUDA_BACKENDS, precision_of, prepare_backend
from .baselines import DEFAULT_MODELS, BenchModel, build_bench_model, resolve_model
from .complexity import count_macs, count_params
from .compute_bound import best_rate, bound_ms, openblas_sgemm_probe, sgemm_callable, sgemm_flops
from .latency import cuda_event_throughput, environment_info, interleaved_latency

__all__ = ["BenchSettings", "run_benchmark", "DEFAULT_BACKENDS", "ROW_FIELDS"]

_LOG = logging.getLogger(__name__)

DEFAULT_BACKENDS: tuple[str, ...] = ("eager", "onnxruntime")
ROW_FIELDS: tuple[str, ...] = (
    "model", "backend", "precision", "fused", "params_m", "macs_g", "top1", "top1_res", "top1_source", "latency_ms",
    "p90_ms", "min_ms", "throughput_img_s", "bound_ms", "x_bound", "efficiency_pct", "best_bound_ms", "x_bound_best",
)


@dataclass(frozen=True)
class BenchSettings:
    """What ``repvit bench`` measures and how.

    Attributes:
        models: model specs (see :func:`repvit.bench.baselines.resolve_model`).
        backends: backends from :data:`repvit.bench.backends.BACKENDS`.
        img_size: input resolution (square) for every model.
        threads: intra-op threads for PyTorch and ONNX Runtime.
        rounds: interleaved rounds for batch-1 latency.
        iters: timed calls per candidate per round.
        warmup: untimed calls per candidate before timing.
        throughput_batch: batch size for throughput (0 skips throughput).
        throughput_rounds: timed large-batch calls per candidate (interleaved).
        sgemm_n: matrix size of the sgemm probes (MKL and OpenBLAS).
        openblas_probe: also measure OpenBLAS (numpy) sgemm, in its own process; the bound takes the faster library.
        accuracy_checkpoint: a digits-trained checkpoint; when set, every backend's digits held-out top-1 and
            agreement with FP32 are checked in the same run.
        int8_mode: ``auto``, ``safe`` or ``full`` for the ONNX Runtime and OpenVINO INT8 backends
            (:mod:`repvit.deploy.int8_mode`); the resolved choice is recorded in the result's ``int8``.
        pretrained: ``True``: every repvit model with published weights loads its default ones; a weights name:
            the models of its architecture load those (``repvit weights list``). Timing does not depend on it.
    """

    models: tuple[str, ...] = DEFAULT_MODELS
    backends: tuple[str, ...] = DEFAULT_BACKENDS
    img_size: int = 224
    threads: int = 2
    rounds: int = 8
    iters: int = 5
    warmup: int = 5
    throughput_batch: int = 32
    throughput_rounds: int = 3
    sgemm_n: int = 1024
    openblas_probe: bool = True
    accuracy_checkpoint: str | None = None
    int8_mode: str = "auto"
    pretrained: bool | str | None = None

    def __post_init__(self) -> None:
        bad = [b for b in self.backends if b not in BACKENDS]
        if bad:
            raise ValueError(f"Unknown backend(s) {', '.join(bad)}; supported: {', '.join(BACKENDS)}.")
        if self.img_size < 32:
            raise ValueError("img_size must be at least 32.")
        if self.threads < 1 or self.rounds < 1 or self.iters < 1:
            raise ValueError("threads, rounds and iters must be positive.")


@dataclass
class _Candidate:
    bm: BenchModel
    backend: str
    params: int
    macs: int
    fn: Callable[[], Any] | None = None
    row: dict[str, Any] = field(default_factory=dict)


def _prepare(models: dict[str, tuple[BenchModel, torch.nn.Module]], backends, example, threads, errors, say,
             int8_mode=None):
    cands: dict[str, _Candidate] = {}
    for key, (bm, model) in models.items():
        params, macs = count_params(model), count_macs(model, tuple(example.shape[-2:]))
        for backend in backends:
            say(f"preparing {bm.name} / {backend} (batch {example.shape[0]})")
            try:
                fn = prepare_backend(model, backend, example, threads=threads, int8_mode=int8_mode)
            except (ImportError, RuntimeError, ValueError, TypeError, NotImplementedError) as e:
                errors.append({"model": bm.name, "backend": backend, "error": f"{type(e).__name__}: {e}"})
                _LOG.warning("skipping %s / %s: %s", bm.name, backend, e)
                continue
            except Exception as e:  # noqa: BLE001 - exporters and compilers raise anything; record and go on
                errors.append({"model": bm.name, "backend": backend, "error": f"{type(e).__name__}: {e}"})
                _LOG.warning("skipping %s / %s: %s", bm.name, backend, e)
                continue
            cands[f"{key}|{backend}"] = _Candidate(bm, backend, params, macs, fn)
    return cands


def _with_weights(bms: list[BenchModel], pretrained: bool | str | None) -> list[BenchModel]:
    """Attach published weights to the repvit models (``BenchSettings.pretrained``)."""
    import dataclasses

    if pretrained is None or pretrained is False:
        return bms
    from repvit.weights import DEFAULT_TAGS, get_weights

    if pretrained is True:
        return [dataclasses.replace(bm, weights=f"{bm.arch}.{DEFAULT_TAGS[bm.arch]}")
                if bm.source == "repvit" and bm.arch in DEFAULT_TAGS else bm for bm in bms]
    entry = get_weights(str(pretrained))
    if not any(bm.source == "repvit" and bm.arch == entry.model for bm in bms):
        raise ValueError(f"--pretrained {entry.name} holds {entry.model} weights, but no {entry.model} is benchmarked; "
                         f"add it to --models.")
    return [dataclasses.replace(bm, weights=entry.name) if bm.source == "repvit" and bm.arch == entry.model else bm
            for bm in bms]


def run_benchmark(settings: BenchSettings, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure every model on every backend; return ``{"environment", "settings", "sgemm", "rows", "errors"}``.

    Rows carry params, MACs, published top-1, batch-1 latency (median, p90, min), throughput, the compute bound
    (``2 * MACs / sgemm FLOP/s`` from the sgemm probe timed in the same run, median rate) and the efficiency against
    it, plus ``x_bound_best``: the fastest call against the bound at the fastest sgemm call, which is steadier
    than the medians when other jobs share the machine.
    A backend that cannot run (a missing package, no CUDA) is recorded in ``errors`` and skipped.
    """
    from repvit.deploy.int8_mode import resolve_int8_mode

    say = progress or (lambda s: _LOG.info(s))
    int8 = resolve_int8_mode(settings.int8_mode)
    errors: list[dict[str, str]] = []
    cuda_only = [b for b in settings.backends if b in CUDA_BACKENDS]
    cpu_backends = [b for b in settings.backends if b not in CUDA_BACKENDS]
    models = _build_models(settings, say)

    torch.manual_seed(0)
    size = settings.img_size
    cands = _prepare(models, cpu_backends, torch.randn(1, 3, size, size), settings.threads, errors, say, int8)
    openblas = _openblas_probe(settings, errors, say)
    sgemm_fn, sgemm_flop = sgemm_callable(settings.sgemm_n)
    timed = {k: c.fn for k, c in cands.items()}
    timed["__sgemm__"] = sgemm_fn
    say(f"timing batch-1 latency of {len(cands)} candidates + sgemm ({settings.rounds} rounds x {settings.iters})")
    lat = interleaved_latency(timed, rounds=settings.rounds, iters_per_round=settings.iters, warmup=settings.warmup,
                              threads=settings.threads)
    sgemm = _sgemm_summary(settings, lat.pop("__sgemm__"), sgemm_flop, openblas)
    thr = _throughput(models, cpu_backends, settings, errors, say, int8) if cands else {}

    rows = _latency_rows(cands, lat, thr, sgemm["gflops"] * 1e9, sgemm["best_gflops"] * 1e9)
    _close(cands)
    rows += _cuda_rows(models, cuda_only, settings, errors, say)
    out = {"environment": environment_info() | {"bench_threads": settings.threads},
           "settings": asdict(settings), "int8": int8.to_dict(), "sgemm": sgemm, "rows": rows, "errors": errors}
    if settings.accuracy_checkpoint:
        from .accuracy import digits_accuracy

        out["accuracy"] = digits_accuracy(settings.accuracy_checkpoint, settings.backends, settings.threads, say=say,
                                          int8_mode=int8)
    out["lowp"] = lowp_summary(rows, out.get("accuracy"))
    return out


def _build_models(settings: BenchSettings, say) -> dict[str, tuple[BenchModel, torch.nn.Module]]:
    """Every model of ``settings`` built (with its published weights when asked), by name."""
    models: dict[str, tuple[BenchModel, torch.nn.Module]] = {}
    for bm in _with_weights([resolve_model(spec) for spec in settings.models], settings.pretrained):
        say(f"building {bm.name}" + (f" with weights {bm.weights}" if bm.weights else ""))
        models[bm.name] = (bm, build_bench_model(bm))
    return models


def _openblas_probe(settings: BenchSettings, errors, say) -> dict[str, Any] | None:
    """OpenBLAS's sgemm rate, timed in its own process (None when not asked for or when it fails)."""
    if not settings.openblas_probe:
        return None
    say(f"OpenBLAS sgemm probe ({settings.sgemm_n}x{settings.sgemm_n}, own process)")
    try:
        return openblas_sgemm_probe(settings.sgemm_n, settings.threads)
    except (RuntimeError, OSError, ValueError) as e:
        errors.append({"model": "*", "backend": "openblas sgemm probe", "error": str(e)})
        return None


def _sgemm_summary(settings: BenchSettings, sg, sgemm_flop: float, openblas: dict[str, Any] | None) -> dict[str, Any]:
    """The sgemm probes (torch.mm timed with the candidates, OpenBLAS) and the rates the compute bound uses: the
    faster library's median (``gflops``) and the fastest call of any (``best_gflops``)."""
    probes = {"mkl": {"library": f"{torch.backends.mkl.is_available() and 'mkl' or 'blas'} (torch.mm)",
                      "n": settings.sgemm_n, "threads": sg.threads, "median_ms": sg.median_ms, "min_ms": sg.min_ms,
                      "gflops": sgemm_flops(sg.median_ms, sgemm_flop) / 1e9,
                      "best_gflops": sgemm_flops(sg.min_ms, sgemm_flop) / 1e9, "process": "interleaved"}}
    if openblas is not None:
        probes["openblas"] = openblas
    lib, best = best_rate(probes)
    return {"n": settings.sgemm_n, "median_ms": best["median_ms"], "gflops": best["gflops"],
            "best_gflops": max(p["best_gflops"] for p in probes.values()), "threads": sg.threads,
            "bound_library": lib, **probes}


def _throughput(models, backends, settings: BenchSettings, errors, say, int8) -> dict[str, float]:
    """Images per second at ``throughput_batch`` per candidate key, timed interleaved (empty when it is 0)."""
    if settings.throughput_batch <= 0:
        return {}
    size = settings.img_size
    xb = torch.randn(settings.throughput_batch, 3, size, size)
    big = _prepare(models, backends, xb, settings.threads, errors, say, int8)
    say(f"timing throughput at batch {settings.throughput_batch}")
    res = interleaved_latency({k: c.fn for k, c in big.items()}, rounds=settings.throughput_rounds,
                              iters_per_round=1, warmup=1, threads=settings.threads)
    _close(big)
    return {k: settings.throughput_batch / (r.median_ms * 1e-3) for k, r in res.items()}


def _latency_rows(cands: dict[str, _Candidate], lat, thr: dict[str, float], flops: float,
                  best_flops: float) -> list[dict[str, Any]]:
    """One row per candidate: latency, throughput, the bound at the median sgemm rate and, best vs best, the
    fastest call against the fastest sgemm (robust when other jobs share the machine)."""
    rows = []
    for key, c in cands.items():
        r = lat[key]
        row = _row(c, r.median_ms, r.p90_ms, thr.get(key), bound_ms(c.macs, flops))
        best_b = bound_ms(c.macs, best_flops)
        row.update(min_ms=r.min_ms, best_bound_ms=best_b, x_bound_best=r.min_ms / best_b)
        rows.append(row)
    return rows


def _close(cands: dict[str, _Candidate]) -> None:
    """Stop the candidates' worker processes (ExecuTorch)."""
    for c in cands.values():
        if hasattr(c.fn, "close"):
            c.fn.close()


def lowp_summary(rows: list[dict[str, Any]], accuracy: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Per model: the fastest FP32, INT8 and bf16 backends (median latency) and the speed-up of each low-precision
    one over the fastest FP32 one, with the accuracy check of that backend when there is one; ``fp32_compared``: the
    FP32 backends measured (the fastest is only the fastest of these)."""
    acc = {r["backend"]: r for r in (accuracy or {}).get("rows", [])}
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        fastest: dict[str, dict[str, Any]] = {}
        compared = []
        for r in rows:
            if r["model"] == model and r.get("latency_ms"):
                p = r.get("precision", "fp32")
                if p == "fp32":
                    compared.append(r["backend"])
                if p not in fastest or r["latency_ms"] < fastest[p]["latency_ms"]:
                    fastest[p] = r
        if "fp32" not in fastest:
            continue
        ref = fastest["fp32"]
        entry: dict[str, Any] = {"model": model, "fp32_backend": ref["backend"], "fp32_ms": ref["latency_ms"],
                                 "fp32_compared": compared}
        for p in ("int8", "bf16"):
            if p in fastest:
                r = fastest[p]
                entry.update({f"{p}_backend": r["backend"], f"{p}_ms": r["latency_ms"],
                              f"{p}_speedup": ref["latency_ms"] / r["latency_ms"],
                              f"{p}_accuracy": acc.get(r["backend"])})
        out.append(entry)
    return out


def _row(c: _Candidate, median: float, p90: float, throughput: float | None, b_ms: float | None) -> dict[str, Any]:
    bm = c.bm
    return {
        "model": bm.name, "backend": c.backend, "precision": precision_of(c.backend), "fused": bm.fused,
        "params_m": c.params / 1e6, "macs_g": c.macs / 1e9,
        "top1": bm.top1, "top1_res": bm.top1_res, "top1_source": bm.top1_source, "latency_ms": median,
        "p90_ms": p90, "throughput_img_s": throughput, "bound_ms": b_ms,
        "x_bound": (median / b_ms) if b_ms else None, "efficiency_pct": (100 * b_ms / median) if b_ms else None,
    }


def _cuda_rows(models, backends, settings: BenchSettings, errors, say) -> list[dict[str, Any]]:
    """fp16/bf16 on CUDA: batch-1 latency and large-batch throughput timed with CUDA events."""
    rows: list[dict[str, Any]] = []
    if not backends:
        return rows
    if not torch.cuda.is_available():
        for b in backends:
            errors.append({"model": "*", "backend": b, "error": "CUDA is not available on this machine"})
        return rows
    size = settings.img_size
    for bm, model in models.values():
        params, macs = count_params(model), count_macs(model, size)
        for backend in backends:
            say(f"CUDA {bm.name} / {backend}")
            c = _Candidate(bm, backend, params, macs)
            fn1 = prepare_backend(model, backend, torch.randn(1, 3, size, size))
            lat = cuda_event_throughput(fn1, batch=1, iters=settings.rounds * settings.iters, warmup=settings.warmup)
            tb = settings.throughput_batch or 256
            fnb = prepare_backend(model, backend, torch.randn(tb, 3, size, size))
            tp = cuda_event_throughput(fnb, batch=tb, iters=settings.throughput_rounds * 10, warmup=settings.warmup)
            rows.append(_row(c, lat["median_ms"], lat["p90_ms"], tp["img_per_s"], None))
    return rows
