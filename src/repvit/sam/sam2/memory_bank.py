"""Which past outputs a frame attends to (SAM 2's memory bank rules, as EdgeTAM uses them).

Outputs are kept per frame index in ``output_dict = {"cond_frame_outputs": {...}, "non_cond_frame_outputs":
{...}}`` (frames with prompts, and tracked frames). A frame attends to the spatial memories of the conditioning
frames and of the ``num_maskmem - 1`` frames just before it (after it when tracking in reverse), and to the object
pointers of the conditioning frames and of up to ``max_obj_ptrs - 1`` recent frames.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

__all__ = ["select_closest_cond_frames", "memory_frames", "pointer_outputs"]

OutputDict = dict[str, dict[int, Any]]


def select_closest_cond_frames(
    frame_idx: int, cond_frame_outputs: dict[int, Any], max_cond_frame_num: int
) -> tuple[dict[int, Any], dict[int, Any]]:
    """Split conditioning frames into (selected, unselected): at most ``max_cond_frame_num`` (-1: all), the closest
    one before ``frame_idx``, the closest one at or after it, then the temporally closest others."""
    if max_cond_frame_num == -1 or len(cond_frame_outputs) <= max_cond_frame_num:
        return cond_frame_outputs, {}
    if max_cond_frame_num < 2:
        raise ValueError(f"max_cond_frame_num must be -1 or at least 2, got {max_cond_frame_num}.")
    selected = {}
    idx_before = max((t for t in cond_frame_outputs if t < frame_idx), default=None)
    if idx_before is not None:
        selected[idx_before] = cond_frame_outputs[idx_before]
    idx_after = min((t for t in cond_frame_outputs if t >= frame_idx), default=None)
    if idx_after is not None:
        selected[idx_after] = cond_frame_outputs[idx_after]
    num_remain = max_cond_frame_num - len(selected)
    rest = sorted((t for t in cond_frame_outputs if t not in selected), key=lambda x: abs(x - frame_idx))
    selected.update((t, cond_frame_outputs[t]) for t in rest[:num_remain])
    unselected = {t: v for t, v in cond_frame_outputs.items() if t not in selected}
    return selected, unselected


def memory_frames(
    frame_idx: int,
    output_dict: OutputDict,
    num_maskmem: int,
    max_cond_frames: int = -1,
    stride: int = 1,
    track_in_reverse: bool = False,
) -> tuple[list[tuple[int, Any]], dict[int, Any], dict[int, Any]]:
    """The memories to attend to as ``(t_pos, output or None)``, and the selected and unselected conditioning frames.

    Conditioning frames have ``t_pos`` 0; the recent frames ``1`` (the oldest) to ``num_maskmem - 1`` (the previous
    frame). With ``stride`` r > 1 the recent frames are the previous frame and every r-th frame before it. An
    unselected conditioning frame among the recent ones counts as a recent frame.
    """
    cond_outputs = output_dict["cond_frame_outputs"]
    if not cond_outputs:
        raise ValueError("tracking a frame needs at least one conditioning frame (a frame with prompts).")
    selected, unselected = select_closest_cond_frames(frame_idx, cond_outputs, max_cond_frames)
    t_pos_and_prevs = [(0, out) for out in selected.values()]
    for t_pos in range(1, num_maskmem):
        t_rel = num_maskmem - t_pos  # frames before the current one
        if t_rel == 1:
            prev = frame_idx + 1 if track_in_reverse else frame_idx - 1
        elif track_in_reverse:
            prev = -(-(frame_idx + 2) // stride) * stride + (t_rel - 2) * stride
        else:
            prev = ((frame_idx - 2) // stride) * stride - (t_rel - 2) * stride
        out = output_dict["non_cond_frame_outputs"].get(prev, unselected.get(prev))
        t_pos_and_prevs.append((t_pos, out))
    return t_pos_and_prevs, selected, unselected


def pointer_outputs(
    frame_idx: int,
    selected: dict[int, Any],
    unselected: dict[int, Any],
    output_dict: OutputDict,
    num_frames: int,
    max_obj_ptrs: int,
    only_past_cond: bool = True,
    track_in_reverse: bool = False,
) -> list[Tensor]:
    """Object pointers ``(B, C)`` to attend to: the selected conditioning frames' (``only_past_cond``: those not
    after the current frame), then up to ``min(num_frames, max_obj_ptrs) - 1`` recent frames', nearest first."""
    if only_past_cond:
        cond = {t: o for t, o in selected.items() if (t >= frame_idx if track_in_reverse else t <= frame_idx)}
    else:
        cond = selected
    ptrs = [out["obj_ptr"] for out in cond.values()]
    for t_diff in range(1, min(num_frames, max_obj_ptrs)):
        t = frame_idx + t_diff if track_in_reverse else frame_idx - t_diff
        if t < 0 or t >= num_frames:
            break
        out = output_dict["non_cond_frame_outputs"].get(t, unselected.get(t))
        if out is not None:
            ptrs.append(out["obj_ptr"])
    return ptrs
