"""SAM 2's memory-bank rules: which conditioning and recent frames, and which object pointers, a frame uses."""

import pytest

from repvit.sam.sam2.memory_bank import memory_frames, pointer_outputs, select_closest_cond_frames


def _outputs(cond, non_cond):
    return {
        "cond_frame_outputs": {t: {"obj_ptr": f"c{t}"} for t in cond},
        "non_cond_frame_outputs": {t: {"obj_ptr": f"n{t}"} for t in non_cond},
    }


def test_recent_frames_forward_and_reverse():
    out = _outputs([0], range(1, 10))
    t_pos, selected, unselected = memory_frames(10, out, num_maskmem=7)
    assert [p for p, _ in t_pos] == [0, 1, 2, 3, 4, 5, 6]
    assert [o["obj_ptr"] if o else None for _, o in t_pos] == ["c0", "n4", "n5", "n6", "n7", "n8", "n9"]
    assert list(selected) == [0] and unselected == {}
    out = _outputs([9], range(0, 9))
    t_pos, _, _ = memory_frames(2, out, num_maskmem=4, track_in_reverse=True)
    assert [o["obj_ptr"] if o else None for _, o in t_pos] == ["c9", "n5", "n4", "n3"]
    t_pos, _, _ = memory_frames(1, _outputs([0], []), num_maskmem=3)
    assert [o for _, o in t_pos][1:] == [None, None]  # missing frames are skipped by the caller
    with pytest.raises(ValueError, match="conditioning frame"):
        memory_frames(1, _outputs([], [0]), num_maskmem=7)


def test_recent_frames_with_a_temporal_stride():
    t_pos, _, _ = memory_frames(20, _outputs([0], range(1, 20)), num_maskmem=4, stride=3)
    assert [o["obj_ptr"] for _, o in t_pos] == ["c0", "n15", "n18", "n19"]


def test_closest_conditioning_frames():
    cond = {t: t for t in (0, 4, 10, 30)}
    selected, unselected = select_closest_cond_frames(8, cond, 3)
    assert sorted(selected) == [0, 4, 10] and list(unselected) == [30]
    assert select_closest_cond_frames(8, cond, -1) == (cond, {})
    with pytest.raises(ValueError, match="at least 2"):
        select_closest_cond_frames(8, cond, 1)


def test_pointers_past_conditioning_frames_then_recent_ones():
    out = _outputs([0, 5], range(1, 5))
    selected = out["cond_frame_outputs"]
    ptrs = pointer_outputs(3, selected, {}, out, num_frames=10, max_obj_ptrs=16)
    assert ptrs == ["c0", "n2", "n1"]  # frame 5's pointer is in the future
    ptrs = pointer_outputs(3, selected, {}, out, num_frames=10, max_obj_ptrs=16, only_past_cond=False)
    assert ptrs == ["c0", "c5", "n2", "n1"]
    ptrs = pointer_outputs(4, selected, {}, out, num_frames=10, max_obj_ptrs=3)
    assert ptrs == ["c0", "n3", "n2"]
