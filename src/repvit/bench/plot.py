"""Pareto plots in the manner of the RepViT paper's first figure: latency vs top-1 and latency vs MACs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["pareto_front", "pareto_plot"]


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points (latency, accuracy) that no other point beats on both (lower latency, higher acc)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def pareto_plot(result: dict[str, Any], path: str | Path, backend: str | None = None) -> Path:
    """Plot latency vs published top-1 and latency vs MACs for one backend (default: ``onnxruntime`` when
    measured, else the first) and save a PNG."""
    from repvit.runtime import require_pyplot

    plt = require_pyplot("the Pareto plot")
    from repvit.io import atomic_write

    rows = result["rows"]
    backends = [r["backend"] for r in rows]
    backend = backend or ("onnxruntime" if "onnxruntime" in backends else (backends[0] if backends else "eager"))
    rows = [r for r in rows if r["backend"] == backend and r.get("fused", True)]  # deploy forms only
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    acc_rows = [r for r in rows if r["top1"] is not None]
    for ax, ys, ylabel in ((axes[0], "top1", "ImageNet top-1 (published, %)"), (axes[1], "macs_g", "GMACs")):
        data = acc_rows if ys == "top1" else rows
        for r in data:
            ours = r["model"].startswith("repvit")
            ax.scatter(r["latency_ms"], r[ys], c="tab:red" if ours else "tab:blue", marker="*" if ours else "o",
                       s=120 if ours else 40, zorder=3)
            ax.annotate(r["model"].replace("repvit_", ""), (r["latency_ms"], r[ys]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
        if ys == "top1" and data:
            front = pareto_front([(r["latency_ms"], r["top1"]) for r in data])
            pts = sorted((data[i]["latency_ms"], data[i]["top1"]) for i in front)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "--", c="gray", lw=1, zorder=2, label="Pareto front")
            ax.legend(loc="lower right", fontsize=8)
        ax.set_xlabel(f"batch-1 latency, ms ({backend}, {result['settings']['threads']} threads)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    env = result["environment"]
    fig.suptitle(f"{env.get('cpu_model') or env.get('processor')} | torch {env.get('torch')}, "
                 f"onnxruntime {env.get('onnxruntime')} | {result['settings']['img_size']}px", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
    return path
