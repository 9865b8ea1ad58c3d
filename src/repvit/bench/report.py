"""Benchmark outputs: a markdown table, JSON and CSV, each recording the machine, library versions and settings."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from .runner import ROW_FIELDS

__all__ = ["to_markdown", "to_csv", "write_outputs"]


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def to_markdown(result: dict[str, Any]) -> str:
    """The result as a markdown table (one row per model x backend) with a header recording the setup."""
    env, st, sg = result["environment"], result["settings"], result["sgemm"]
    lines = [
        f"Machine: {env.get('cpu_model') or env.get('processor')} (family {env.get('cpu_family', '?')}, model "
        f"{env.get('cpu_model_number', '?')}; {env.get('cpu_count')} CPUs), {env.get('platform')}",
        f"Libraries: torch {env.get('torch')}, timm {env.get('timm')}, onnxruntime {env.get('onnxruntime')}, "
        f"onnx {env.get('onnx')}, openvino {env.get('openvino')}, python {env.get('python')}; load average "
        f"(1/5/15 min) at the end: {env.get('loadavg_1m_5m_15m')}",
        f"Settings: {st['threads']} threads, {st['img_size']}x{st['img_size']}, batch 1 latency over "
        f"{st['rounds']}x{st['iters']} interleaved calls after {st['warmup']} warm-up; throughput at batch "
        f"{st['throughput_batch']}; time {env.get('time')}",
        f"CPU flags: {_flags(env.get('cpu_flags'))}",
        f"Compute bound: best large sgemm ({sg['n']}x{sg['n']}, {sg['threads']} threads) of {_probes(sg)} = "
        f"{sg['gflops']:.1f} GFLOP/s (median; best call {sg['best_gflops']:.1f}); bound = 2 x MACs / median rate; "
        "x bound (best/best) = fastest call / bound at the best rate.",
        "",
        "| model | backend | precision | params (M) | MACs (G) | top-1 (published) | latency ms (median) | p90 ms | "
        "throughput img/s | bound ms | x bound | efficiency % | x bound (best/best) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        top1 = _fmt(r["top1"], 1) + (f" @{r['top1_res']}" if r["top1"] and r["top1_res"] not in (None, 224) else "")
        lines.append(
            f"| {r['model']} | {r['backend']} | {r.get('precision', 'fp32')} | {_fmt(r['params_m'])} | "
            f"{_fmt(r['macs_g'], 3)} | {top1} | "
            f"{_fmt(r['latency_ms'])} | {_fmt(r['p90_ms'])} | {_fmt(r['throughput_img_s'], 1)} | "
            f"{_fmt(r['bound_ms'])} | {_fmt(r['x_bound'])} | {_fmt(r['efficiency_pct'], 1)} | "
            f"{_fmt(r.get('x_bound_best'))} |"
        )
    lines += _fastest_lines(result)
    lines += _lowp_lines(result.get("lowp") or [])
    lines += _accuracy_lines(result.get("accuracy"))
    if result.get("errors"):
        lines += ["", "Skipped:"] + [f"- {e['model']} / {e['backend']}: {e['error']}" for e in result["errors"]]
    return "\n".join(lines) + "\n"


def _flags(flags: dict | None) -> str:
    if not flags:
        return "unknown"
    return ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in flags.items())


def _probes(sg: dict[str, Any]) -> str:
    parts = []
    for key in ("mkl", "openblas"):
        p = sg.get(key)
        if p:
            mark = " (used)" if sg.get("bound_library") == key else ""
            parts.append(f"{p['library']} {p['gflops']:.1f}{mark}")
    return "; ".join(parts) if parts else "torch.mm"


def _fastest_lines(result: dict[str, Any]) -> list[str]:
    """Per model, the fastest FP32 backend (median batch-1 latency) and its distance from the compute bound."""
    rows = {(r["model"], r["backend"]): r for r in result["rows"]}
    entries = [(e, rows.get((e["model"], e["fp32_backend"]), {})) for e in result.get("lowp") or []]
    if not entries:
        return []
    lines = ["", "Fastest FP32 backend per model (median latency, batch 1; " + _compared(result["lowp"]) + "):", "",
             "| model | fastest backend | latency ms | bound ms | x bound | x bound (best/best) |",
             "|---|---|---:|---:|---:|---:|"]
    for e, r in entries:
        lines.append(f"| {e['model']} | {e['fp32_backend']} | {_fmt(e['fp32_ms'])} | {_fmt(r.get('bound_ms'))} | "
                     f"{_fmt(r.get('x_bound'))} | {_fmt(r.get('x_bound_best'))} |")
    return lines


_CPU_FP32_RUNTIMES = ("onnxruntime", "openvino", "executorch", "tflite")


def _compared(lowp: list[dict[str, Any]]) -> str:
    """Which FP32 backends the fastest was picked from, and which CPU runtimes left out may be faster."""
    names = list(dict.fromkeys(b for e in lowp for b in e["fp32_compared"]))
    missing = [b for b in _CPU_FP32_RUNTIMES if b not in names]
    more = f"; {', '.join(missing)} (not run, add with --backends) may be faster" if missing else ""
    return f"the fastest of {', '.join(names)}{more}"


def _lowp_lines(lowp: list[dict[str, Any]]) -> list[str]:
    if not any("int8_ms" in e or "bf16_ms" in e for e in lowp):
        return []
    lines = ["", "Low precision against the fastest FP32 backend (median latency, batch 1; " + _compared(lowp) + "):",
             "",
             "| model | fastest FP32 | ms | fastest INT8 | ms | speed-up | fastest bf16 | ms | speed-up |",
             "|---|---|---:|---|---:|---:|---|---:|---:|"]
    for e in lowp:
        lines.append(f"| {e['model']} | {e['fp32_backend']} | {_fmt(e['fp32_ms'])} | {e.get('int8_backend', '–')} | "
                     f"{_fmt(e.get('int8_ms'))} | {_fmt(e.get('int8_speedup'))}x | {e.get('bf16_backend', '–')} | "
                     f"{_fmt(e.get('bf16_ms'))} | {_fmt(e.get('bf16_speedup'))}x |")
    return lines


def _accuracy_lines(acc: dict[str, Any] | None) -> list[str]:
    if not acc:
        return []
    c = acc["criteria"]
    lines = ["", f"Accuracy on the digits held-out split ({acc['images']} images, {acc['img_size']}x{acc['img_size']}, "
             f"{acc['model']} from {acc['checkpoint']}): FP32 PyTorch top-1 {acc['fp32_top1']:.2f}%; a backend passes "
             f"within {c['max_drop_points']} points of it and >= {100 * c['min_agreement']:.0f}% agreement.", "",
             "| backend | precision | top-1 % | vs FP32 (points) | agreement with FP32 % | passed |",
             "|---|---|---:|---:|---:|---|"]
    for r in acc["rows"]:
        lines.append(f"| {r['backend']} | {r['precision']} | {r['top1']:.2f} | {r['delta_points']:+.2f} | "
                     f"{100 * r['agreement']:.2f} | {_fmt(r['passed'])} |")
    lines += [f"- {e['backend']}: {e['error']}" for e in acc.get("errors", [])]
    lines += [f"- {r['warning']}" for r in acc["rows"] if r.get("warning")]
    if acc.get("int8"):
        i = acc["int8"]
        lines.append(f"- INT8 mode: {i['mode']} (asked {i['requested']}; ISA class {i['isa']}: {i['reason']})")
    return lines


def to_csv(result: dict[str, Any]) -> str:
    """Rows as CSV; the setup (machine, versions, settings, sgemm) goes into leading ``#`` comment lines."""
    buf = io.StringIO()
    buf.write(f"# environment: {json.dumps(result['environment'], sort_keys=True)}\n")
    buf.write(f"# settings: {json.dumps(result['settings'], sort_keys=True)}\n")
    buf.write(f"# sgemm: {json.dumps(result['sgemm'], sort_keys=True)}\n")
    w = csv.DictWriter(buf, fieldnames=list(ROW_FIELDS), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in result["rows"]:
        w.writerow(r)
    return buf.getvalue()


def write_outputs(result: dict[str, Any], out_dir: str | Path, stem: str = "bench", plot: bool = True) -> list[Path]:
    """Write ``<stem>.json``, ``.csv``, ``.md`` (and ``_pareto.png`` when matplotlib is present) under ``out_dir``.

    Returns:
        The paths written.
    """
    from repvit.io import atomic_write

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix, text in ((".json", json.dumps(result, indent=2, default=str)), (".csv", to_csv(result)),
                         (".md", to_markdown(result))):
        p = out / f"{stem}{suffix}"
        atomic_write(p, lambda tmp, t=text: Path(tmp).write_text(t))
        written.append(p)
    if plot:
        from .plot import pareto_plot

        written.append(pareto_plot(result, out / f"{stem}_pareto.png"))
    return written
