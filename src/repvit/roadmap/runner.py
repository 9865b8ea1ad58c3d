"""Measure the roadmap: params, MACs, fused latency per backend and (optionally) top-1 of every step.

Latency uses the shared benchmark machinery (:func:`repvit.bench.backends.prepare_backend` and
:func:`repvit.bench.latency.interleaved_latency`): all steps on one backend are timed round-robin in one run, so a
noisy machine slows them alike, and every step is also reported as a ratio to step 0. Training uses the project's
trainer (:func:`repvit.classification.train`) with one recipe for every step.

Ablations (:mod:`.ablation`, e.g. ``roadmap_8 + se=none``) are extra rows after the steps: they are registered
as models and then measured, timed (in the same interleaved runs) and trained exactly like the steps.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from repvit.bench.complexity import count_macs, count_params
from repvit.models.factory import create_model
from repvit.models.fuse import fuse_model

from .ablation import RoadmapVariant, ablation_variants, register_variant
from .steps import STEPS, RoadmapStep

__all__ = ["RoadmapSettings", "run_roadmap", "select_steps", "select_variants", "plot_roadmap", "format_table"]

_LOG = logging.getLogger(__name__)

Entry = RoadmapStep | RoadmapVariant  # one row: a step, or a step with one ablation


@dataclass(frozen=True)
class RoadmapSettings:
    """What ``repvit roadmap`` measures.

    Attributes:
        img_size: input side for MACs and latency.
        backends: latency backends (see :data:`repvit.bench.backends.BACKENDS`); empty: no latency.
        threads: intra-op threads while timing and training.
        rounds, iters_per_round, warmup: the interleaved timer's schedule.
        train: ``"digits"`` or an ImageFolder directory to train every step on; ``None``: no training.
        epochs: training epochs per step.
        train_img_size: training and evaluation resolution.
        batch_size: training batch.
        output_dir: where the training runs go (one folder per step).
        steps: names or indices of the steps to include (default: all).
        ablations: ``KEY=VALUE[,VALUE...]`` specs (:func:`repvit.roadmap.ablation.parse_ablations`): one extra
            row per value, ``ablation_base`` with that one switch changed.
        ablation_base: name or index of the step the ablations modify (default: the last step, RepViT-M1.0).
        train_overrides: further :class:`repvit.classification.TrainConfig` fields, the same for every step.
    """

    img_size: int = 224
    backends: tuple[str, ...] = ()
    threads: int = 1
    rounds: int = 10
    iters_per_round: int = 5
    warmup: int = 5
    train: str | None = None
    epochs: int = 10
    train_img_size: int = 32
    batch_size: int = 64
    output_dir: str = "runs/roadmap"
    steps: tuple[str, ...] | None = None
    ablations: tuple[str, ...] = ()
    ablation_base: str | None = None
    train_overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.img_size < 32:
            raise ValueError(f"img_size must be >= 32 (the networks have stride 32), got {self.img_size}.")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}.")
        if self.rounds < 1 or self.iters_per_round < 1:
            raise ValueError("rounds and iters_per_round must be >= 1.")


def select_steps(selection: tuple[str, ...] | None = None) -> list[RoadmapStep]:
    """The steps named (``roadmap_3_early_convs``, ``early_convs``) or numbered (``3``) in ``selection``."""
    if not selection:
        return list(STEPS)
    out = []
    for sel in selection:
        sel = str(sel).strip()
        match = [s for s in STEPS if sel in (s.name, s.slug, str(s.index))]
        if not match:
            names = ", ".join(s.name for s in STEPS)
            raise ValueError(f"unknown roadmap step {sel!r}; give a number 0-{len(STEPS) - 1} or one of: {names}.")
        out.extend(m for m in match if m not in out)
    return sorted(out, key=lambda s: s.index)


def select_variants(specs: tuple[str, ...], base: str | None = None) -> list[RoadmapVariant]:
    """The ablation variants of ``specs`` (e.g. ``("se=all,none", "kernel=5")``) on step ``base`` (default: the
    last step), registered as models so that every code path builds them by name."""
    if not specs:
        if base is not None:
            raise ValueError("an ablation base step needs ablations to apply (KEY=VALUE, e.g. se=none).")
        return []
    try:
        base_step = select_steps((base,))[0] if base is not None else STEPS[-1]
    except ValueError as e:
        raise ValueError(f"ablation base: {e}") from None
    variants = ablation_variants(specs, base_step)
    for v in variants:
        register_variant(v)
    return variants


def _complexity(step: Entry, img_size: int) -> dict[str, Any]:
    model = create_model(step.name)
    fused = fuse_model(model)
    return {"params": count_params(model), "fused_params": count_params(fused),
            "fused_macs": count_macs(fused, img_size)}


def _latency(steps: list[Entry], s: RoadmapSettings) -> dict[str, dict[str, dict[str, float]]]:
    """``{step_name: {backend: LatencyResult.to_dict()}}``; each backend is one interleaved run over all steps."""
    from repvit.bench.backends import prepare_backend
    from repvit.bench.latency import interleaved_latency

    out: dict[str, dict[str, dict[str, float]]] = {st.name: {} for st in steps}
    example = torch.randn(1, 3, s.img_size, s.img_size)
    for backend in s.backends:
        candidates = {}
        for st in steps:
            fused = fuse_model(create_model(st.name))
            candidates[st.name] = prepare_backend(fused, backend, example, threads=s.threads)
        _LOG.info("timing %d networks on %s (%d rounds)", len(steps), backend, s.rounds)
        res = interleaved_latency(candidates, rounds=s.rounds, iters_per_round=s.iters_per_round,
                                  warmup=s.warmup, threads=s.threads)
        for name, r in res.items():
            out[name][backend] = r.to_dict()
    return out


def _train(step: Entry, s: RoadmapSettings) -> dict[str, Any]:
    """Train ``step`` with the shared recipe and return its top-1 figures."""
    from repvit.bench.latency import thread_count
    from repvit.classification import TrainConfig, train

    fields = dict(
        model=step.name, data=s.train, epochs=s.epochs, img_size=s.train_img_size, batch_size=s.batch_size,
        output_dir=str(Path(s.output_dir) / step.name), seed=0, model_ema=False, tensorboard=False, progress=False,
        warmup_epochs=min(2, max(s.epochs - 1, 0)), warmup_steps=None, lr=1.6e-2, bn_momentum=None, workers=0,
    )
    fields.update(s.train_overrides)
    t0 = time.perf_counter()
    # a pinned thread count: on a shared machine, more OpenMP threads than free cores slows training many-fold
    with thread_count(s.threads):
        summary = train(TrainConfig(**fields))
    if summary.get("interrupted"):
        # the trainer saved a resumable checkpoint on Ctrl-C; stop the whole roadmap, not just this step
        raise KeyboardInterrupt
    return {"top1": summary.get("top1"), "best_top1": summary.get("best_top1"),
            "train_time_s": round(time.perf_counter() - t0, 1)}


def run_roadmap(settings: RoadmapSettings | None = None) -> dict[str, Any]:
    """Measure every step, then every ablation variant.

    Returns:
        ``{"settings", "environment", "steps": [...]}``; each row has ``index``, ``name`` (the registered model),
        ``label`` (the name, or e.g. ``roadmap_8 + se=none``), ``title``, ``description``, ``params``
        (train-time, 1000 classes), ``fused_params``, ``fused_macs`` (at ``img_size``), and when asked
        ``latency`` (``{backend: {median_ms, p90_ms, ...}}``), ``latency_vs_first`` (median ratio to the first
        row, same run) and ``top1``/``best_top1``. Ablation rows follow the steps and also have ``base`` (the
        step's name), ``ablation`` (``KEY=VALUE``) and ``same_as_base``.
    """
    from repvit.bench.latency import environment_info, thread_count

    s = settings or RoadmapSettings()
    steps: list[Entry] = [*select_steps(s.steps), *select_variants(s.ablations, s.ablation_base)]
    rows: list[dict[str, Any]] = []
    with thread_count(s.threads):  # as in training: more threads than free cores slows a shared machine down
        for st in steps:
            row = st.to_dict()
            row.update(_complexity(st, s.img_size))
            rows.append(row)
    if s.backends:
        lat = _latency(steps, s)
        first = steps[0].name
        for row in rows:
            row["latency"] = lat[row["name"]]
            row["latency_vs_first"] = {b: row["latency"][b]["median_ms"] / lat[first][b]["median_ms"]
                                       for b in s.backends}
    if s.train:
        for row, st in zip(rows, steps):
            _LOG.info("training %s on %s for %d epochs", st.name, s.train, s.epochs)
            row.update(_train(st, s))
    return {"settings": asdict(s), "environment": environment_info(), "steps": rows}


def format_table(result: dict[str, Any]) -> str:
    """A fixed-width table of :func:`run_roadmap`'s result, one row per step or ablation (valid markdown)."""
    rows = result["steps"]
    backends = list(result["settings"]["backends"])
    trained = any("top1" in r for r in rows)
    img = result["settings"]["img_size"]
    head = ["step", "model", "params (M)", "fused params (M)", f"MACs@{img} (G)"]
    for b in backends:
        head += [f"{b} (ms)", f"{b} (x step {rows[0]['index']})"]
    if trained:
        head += ["top-1 (%)", "best top-1 (%)"]
    lines = []
    for r in rows:
        cells = [str(r["index"]), r["label"], f"{r['params'] / 1e6:.3f}", f"{r['fused_params'] / 1e6:.3f}",
                 f"{r['fused_macs'] / 1e9:.3f}"]
        for b in backends:
            cells += [f"{r['latency'][b]['median_ms']:.2f}", f"{r['latency_vs_first'][b]:.2f}"]
        if trained:
            cells += [_pct(r.get("top1")), _pct(r.get("best_top1"))]
        lines.append(cells)
    widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(head)]
    fmt = "| " + " | ".join(f"{{:<{w}}}" for w in widths) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([fmt.format(*head), sep] + [fmt.format(*c) for c in lines])


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def plot_roadmap(result: dict[str, Any], path: str | Path, backend: str | None = None) -> Path:
    """Draw latency (bars) and top-1 (line) per step, like the paper's roadmap figure, and save it to ``path``.

    Args:
        result: :func:`run_roadmap`'s result; needs latency or top-1 (or both).
        path: the image file (``.png``, ``.svg``, ``.pdf``), written atomically.
        backend: which backend's latency to draw (default: the first measured).
    """
    from repvit.runtime import require_pyplot

    plt = require_pyplot("--plot")
    from repvit.io import atomic_write

    rows = result["steps"]
    backends = list(result["settings"]["backends"])
    backend = backend or (backends[0] if backends else None)
    has_lat = backend is not None and all(backend in r.get("latency", {}) for r in rows)
    has_acc = all(r.get("top1") is not None for r in rows)
    if not (has_lat or has_acc):
        raise ValueError("nothing to plot: measure latency (--backends ...) or accuracy (--train ...) first.")
    labels = [r["label"] if "ablation" in r else f"{r['index']}. {r['title']}" for r in rows]
    x = list(range(len(rows)))
    fig, ax = plt.subplots(figsize=(11, 5.5))
    if has_lat:
        lat = [r["latency"][backend]["median_ms"] for r in rows]
        colors = ["#d9b38f" if "ablation" in r else "#8fb3d9" for r in rows]  # ablation rows in another colour
        ax.bar(x, lat, color=colors, label=f"fused latency, {backend} (ms)")
        ax.set_ylabel(f"latency, {backend}, batch 1 @ {result['settings']['img_size']} px (ms)")
        for xi, v in zip(x, lat):
            ax.annotate(f"{v:.1f}", (xi, v), ha="center", va="bottom", fontsize=8)
    if has_acc:
        ax2 = ax.twinx() if has_lat else ax
        acc = [r["top1"] for r in rows]
        ax2.plot(x, acc, "o-", color="#c0392b", label="top-1 (%)")
        ax2.set_ylabel(f"top-1 on {result['settings']['train']} (%)")
        for xi, v in zip(x, acc):
            ax2.annotate(f"{v:.1f}", (xi, v), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8,
                         color="#c0392b")
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set_title("Modernization roadmap: MobileNetV3-L (GELU) to RepViT-M1.0")
    fig.legend(loc="upper left", bbox_to_anchor=(0.07, 0.93), fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fmt = path.suffix.lstrip(".") or "png"
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format=fmt))
    plt.close(fig)
    return path
