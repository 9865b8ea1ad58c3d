"""Compatibility path: run records live in :mod:`repvit.engine.records`. :func:`plot_curves` here keeps its old
defaults, classification's top-1 curves."""

from __future__ import annotations

from pathlib import Path

from repvit.classification.task import ClassifyTask
from repvit.engine import records as _records
from repvit.engine.records import MetricsLog, read_metrics

__all__ = ["MetricsLog", "read_metrics", "plot_curves"]


def plot_curves(metrics_path: str | Path, png_path: str | Path, *, metric: str = "top1",
                ylabel: str = "accuracy (%)") -> Path | None:
    """:func:`repvit.engine.records.plot_curves`, by default for a classification run (top-1, top-5, EMA top-1)."""
    series = ClassifyTask.plot_series if metric == ClassifyTask.best_metric else None
    return _records.plot_curves(metrics_path, png_path, metric=metric, ylabel=ylabel, series=series)
