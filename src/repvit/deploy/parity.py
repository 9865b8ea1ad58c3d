"""Parity checks between an exported model and the fused PyTorch model it came from.

The criterion is relative to the output's scale: ``max|exported - reference| <= rtol * max|reference|`` for every
output, which is what "matches to a relative 1e-4" means for logits (an elementwise relative error is meaningless
for logits near zero).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

__all__ = ["ParityError", "ParityReport", "compare_outputs", "as_list"]


class ParityError(RuntimeError):
    """The exported model's outputs differ from the fused PyTorch model's by more than the tolerance."""


@dataclass
class ParityReport:
    """Largest deviations over all checked batches and outputs."""

    max_abs_diff: float = 0.0
    max_rel_diff: float = 0.0  # max|a-b| / max|b| per output, the worst one
    checked: list[str] = field(default_factory=list)  # e.g. "batch 1: logits"

    def to_dict(self) -> dict:
        return {"max_abs_diff": self.max_abs_diff, "max_rel_diff": self.max_rel_diff, "checked": self.checked}


def as_list(out) -> list[torch.Tensor]:
    """A model's output as a list of tensors (a classifier gives one, a ``features_only`` backbone several)."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [torch.as_tensor(v) for v in out.values()]
    return [torch.as_tensor(o) for o in out]


def compare_outputs(
    got: Sequence[torch.Tensor],
    ref: Sequence[torch.Tensor],
    rtol: float,
    label: str,
    names: Sequence[str] | None = None,
    report: ParityReport | None = None,
) -> ParityReport:
    """Compare exported outputs ``got`` with reference outputs ``ref``; raise :class:`ParityError` on mismatch.

    Args:
        got: outputs of the exported model.
        ref: outputs of the fused PyTorch model on the same input.
        rtol: tolerance relative to ``max|ref|`` of each output.
        label: what was run (e.g. ``"onnxruntime, batch 3"``), used in messages.
        names: output names for messages.
        report: a report to update (a new one when omitted).
    """
    report = report or ParityReport()
    if len(got) != len(ref):
        raise ParityError(f"{label}: the exported model has {len(got)} outputs, the PyTorch model {len(ref)}.")
    for i, (g, r) in enumerate(zip(got, ref)):
        name = names[i] if names else f"output {i}"
        g = torch.as_tensor(g).float().cpu()
        r = r.detach().float().cpu()
        if g.shape != r.shape:
            raise ParityError(f"{label}: {name} has shape {tuple(g.shape)}, expected {tuple(r.shape)}.")
        abs_diff = (g - r).abs().max().item()
        scale = max(r.abs().max().item(), 1e-12)
        rel = abs_diff / scale
        report.max_abs_diff = max(report.max_abs_diff, abs_diff)
        report.max_rel_diff = max(report.max_rel_diff, rel)
        report.checked.append(f"{label}: {name}")
        if not rel <= rtol:  # also catches NaN
            raise ParityError(
                f"parity check failed ({label}, {name}): max |exported - fused PyTorch| = {abs_diff:.3e}, "
                f"{rel:.3e} relative to max |output| = {scale:.3e}; tolerance {rtol:.1e}. A few times the "
                f"tolerance can be float32 rounding that the weights amplify (check a float64 run of the model); "
                f"to accept it, pass a larger tolerance (--rtol, or rtol=)."
            )
    return report
