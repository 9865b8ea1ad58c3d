"""Run records: ``OUTPUT/metrics.jsonl`` (one line per epoch), TensorBoard when installed, a PNG of the curves."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["MetricsLog", "read_metrics", "plot_curves"]

_log = logging.getLogger(__name__)


class MetricsLog:
    """Append per-epoch metrics to ``metrics.jsonl`` (and TensorBoard if available). Rank 0 only."""

    def __init__(self, output_dir: str | Path, tensorboard: bool = True, start_epoch: int = 0):
        self.path = Path(output_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():  # drop lines of epochs that a resumed run will redo
            keep = [r for r in read_metrics(self.path) if r.get("epoch", -1) < start_epoch]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in keep))
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(Path(output_dir) / "tensorboard"))
            except ImportError:
                _log.debug("tensorboard is not installed; metrics go to metrics.jsonl only")

    def log(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "epoch":
                    self.writer.add_scalar(k, v, record.get("epoch", 0))
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` (a half-written last line is ignored)."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def plot_curves(metrics_path: str | Path, png_path: str | Path, *, metric: str = "score",
                ylabel: str = "validation metric", series: Sequence[tuple[str, str]] | None = None) -> Path | None:
    """Loss and validation-metric curves per epoch as a PNG; ``None`` (with a log line) if matplotlib is missing.

    Args:
        metric: the task's metric; ``val_<metric>`` and ``ema_<metric>`` are drawn.
        ylabel: the right panel's y label.
        series: ``(metrics.jsonl key, legend label)`` pairs for the right panel instead of those two (a task's
            :attr:`~repvit.engine.task.Task.plot_series`).
    """
    from repvit.runtime import require_pyplot

    try:
        plt = require_pyplot("the curves PNG")
    except ImportError:
        _log.info("matplotlib is not installed, so no curves PNG: pip install 'repvit-pytorch[plot]'")
        return None
    rows = read_metrics(metrics_path)
    if not rows:
        return None
    ep = [r["epoch"] + 1 for r in rows]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.plot(ep, [r.get("train_loss") for r in rows], label="train loss")
    if any("val_loss" in r for r in rows):
        a1.plot([e for e, r in zip(ep, rows) if "val_loss" in r], [r["val_loss"] for r in rows if "val_loss" in r],
                label="val loss")
    a1.set_xlabel("epoch")
    a1.set_ylabel("loss")
    a1.legend()
    keys = list(series) if series else [(f"val_{metric}", f"val {metric}"), (f"ema_{metric}", f"EMA {metric}")]
    for key, lab in keys:
        pts = [(e, r[key]) for e, r in zip(ep, rows) if key in r]
        if pts:
            a2.plot(*zip(*pts), label=lab)
    a2.set_xlabel("epoch")
    a2.set_ylabel(ylabel)
    a2.legend()
    fig.tight_layout()
    png_path = Path(png_path)
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path
