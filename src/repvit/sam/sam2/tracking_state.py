"""The per-object bookkeeping of EdgeTAM's video tracking, shared by the PyTorch predictor
(:mod:`repvit.sam.sam2.video_predictor`) and the ONNX Runtime tracker (:mod:`repvit.sam.sam2.onnx_tracker`); plain
Python, no torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["COND", "NON_COND", "ObjectOutputs", "check_frame", "output_dict"]

# the keys of SAM 2's output dict, which the memory-bank rules read
COND, NON_COND = "cond_frame_outputs", "non_cond_frame_outputs"


def output_dict() -> dict[str, dict[int, dict[str, Any]]]:
    """An empty SAM 2 output dict: per-frame outputs of conditioning and non-conditioning frames."""
    return {COND: {}, NON_COND: {}}


@dataclass
class ObjectOutputs:
    """One object's outputs.

    Attributes:
        obj_id: the caller's id for the object.
        outputs: the model's memory bank: per-frame outputs of conditioning and non-conditioning frames.
        temp_outputs: outputs of frames clicked since the last propagation, not yet encoded into memory.
        frames_tracked: frames with an output, mapped to whether they were tracked in reverse.
    """

    obj_id: Any
    outputs: dict[str, dict[int, dict[str, Any]]] = field(default_factory=output_dict)
    temp_outputs: dict[str, dict[int, dict[str, Any]]] = field(default_factory=output_dict)
    frames_tracked: dict[int, bool] = field(default_factory=dict)

    def latest_output(self, frame_idx: int, storage_key: str) -> dict[str, Any] | None:
        """The newest output on a frame: a pending click's, else the conditioning one, else the tracked one."""
        for d in (self.temp_outputs[storage_key], self.outputs[COND], self.outputs[NON_COND]):
            if frame_idx in d:
                return d[frame_idx]
        return None


def check_frame(num_frames: int, frame_idx: int) -> int:
    """``frame_idx`` as an int, checked to be a frame of a video of ``num_frames`` frames."""
    if not isinstance(frame_idx, int | np.integer) or not 0 <= frame_idx < num_frames:
        raise ValueError(f"frame_idx must be an int in [0, {num_frames - 1}], got {frame_idx!r}")
    return int(frame_idx)
