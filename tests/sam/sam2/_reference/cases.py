"""The inputs of the EdgeTAM parity cases and the code that plays them, shared by both sides.

The same functions drive the authors' predictors (in the reference subprocess, ``make_reference.py``) and repvit's
(in ``tests/sam/sam2/test_reference_parity.py``), so a difference in the outputs is a difference in the models and
predictors, not in how they were called. Only NumPy, Pillow and scikit-image here; torch only to read outputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SEED = 0
IMAGE_FILE = "coffee.png"
FRAMES_DIR = "frames"
NUM_FRAMES = 6
FRAME_HW = (360, 480)
FRAME_SHIFT = (6, 6)  # pixels per frame (down, right) of the crop window on scikit-image's astronaut

# scikit-image's coffee (400 x 600): a click on the cup, a box around it, and a negative click on the saucer
IMAGE_CASES: dict[str, dict] = {
    "point": dict(point_coords=[[310.0, 150.0]], point_labels=[1], multimask_output=True),
    "points": dict(point_coords=[[310.0, 150.0], [420.0, 300.0]], point_labels=[1, 0], multimask_output=False),
    "box": dict(box=[150.0, 40.0, 470.0, 330.0], multimask_output=False),
    "point_box": dict(point_coords=[[310.0, 150.0]], point_labels=[1], box=[150.0, 40.0, 470.0, 330.0],
                      multimask_output=True),
    # mask_input: the reference's best low-resolution mask of "point" (stored with the outputs)
    "point_mask": dict(point_coords=[[310.0, 150.0]], point_labels=[1], multimask_output=False, mask_from="point"),
}

_CLICK_FACE = dict(points=[[230.0, 110.0]], labels=[1])
_CLICK_ROCKET = dict(points=[[395.0, 230.0]], labels=[1], box=[330.0, 140.0, 470.0, 350.0])


def _add(frame_idx: int, obj_id: int, points=None, labels=None, box=None) -> dict:
    return dict(op="add", frame_idx=frame_idx, obj_id=obj_id, points=points, labels=labels, box=box)


def _propagate(start_frame_idx: int | None = None, reverse: bool = False) -> dict:
    return dict(op="propagate", start_frame_idx=start_frame_idx, reverse=reverse)


# Video sessions on the shifted crops, one object each (several objects: see TWO_OBJECTS). "one" is the basic case:
# one click on frame 0, propagated over all frames.
VIDEO_SESSIONS: dict[str, list[dict]] = {
    "one": [_add(0, 1, **_CLICK_FACE), _propagate()],
    "obj1": [_add(0, 1, **_CLICK_FACE), _propagate(), _propagate(NUM_FRAMES - 1, reverse=True)],
    "obj2": [_add(2, 2, **_CLICK_ROCKET), _propagate(0), _propagate(NUM_FRAMES - 1, reverse=True)],
    # a correction (negative click) on a later, already tracked frame, then propagation again
    "correct": [_add(0, 1, **_CLICK_FACE), _propagate(), _add(4, 1, points=[[250.0, 170.0]], labels=[0]),
                _propagate()],
    # a click in the middle, propagated forward and then backward (the reverse pass)
    "middle": [_add(3, 1, **_CLICK_FACE), _propagate(), _propagate(reverse=True)],
}

# Objects are tracked independently: a session with object 1 clicked on frame 0 and object 2 added on frame 2 (before
# propagating) gives, per object, the tracks of the one-object sessions "obj1" and "obj2" (same propagation calls).
TWO_OBJECTS: list[dict] = [_add(0, 1, **_CLICK_FACE), _add(2, 2, **_CLICK_ROCKET), _propagate(),
                           _propagate(NUM_FRAMES - 1, reverse=True)]


def write_inputs(out_dir: Path) -> None:
    """Write the photo (PNG) and the video (JPEG frames ``00000.jpg`` ..., shifted crops of astronaut) to a folder."""
    from PIL import Image
    from skimage import data

    Image.fromarray(data.coffee()).save(out_dir / IMAGE_FILE)
    photo = data.astronaut()
    frames = out_dir / FRAMES_DIR
    frames.mkdir(parents=True, exist_ok=True)
    h, w = FRAME_HW
    for t in range(NUM_FRAMES):
        y, x = 8 + FRAME_SHIFT[0] * t, 2 + FRAME_SHIFT[1] * t
        Image.fromarray(photo[y:y + h, x:x + w]).save(frames / f"{t:05d}.jpg", quality=95)


def load_image(out_dir: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(out_dir / IMAGE_FILE).convert("RGB"))


def load_frame(out_dir: Path, t: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(out_dir / FRAMES_DIR / f"{t:05d}.jpg").convert("RGB"))


def image_prompts(case: dict, outputs: dict[str, np.ndarray] | None = None) -> dict:
    """``predict`` keyword arguments of an image case (``outputs``: the reference's, for a chained mask input)."""
    kw = dict(multimask_output=case["multimask_output"], return_logits=True)
    if "point_coords" in case:
        kw["point_coords"] = np.asarray(case["point_coords"], dtype=np.float32)
        kw["point_labels"] = np.asarray(case["point_labels"], dtype=np.int32)
    if "box" in case:
        kw["box"] = np.asarray(case["box"], dtype=np.float32)
    if "mask_from" in case:
        kw["mask_input"] = outputs[f"{case['mask_from']}/mask_input"]
    return kw


def run_image_case(predictor, case: dict, outputs: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """masks (logits at the image's size), iou and low_res of one case on a predictor that has its image set."""
    masks, iou, low_res = predictor.predict(**image_prompts(case, outputs))
    return {"masks": _f32(masks), "iou": _f32(iou), "low_res": _f32(low_res)}


def _f32(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def run_session(predictor, video_dir: Path, steps: list[dict]) -> list[dict[str, np.ndarray]]:
    """Play ``steps`` on a fresh inference state; per step: frames, obj_ids and logits (frames, objects, 1, H, W)."""
    state = predictor.init_state(str(video_dir))
    results = []
    for step in steps:
        if step["op"] == "add":
            out = predictor.add_new_points_or_box(
                state, frame_idx=step["frame_idx"], obj_id=step["obj_id"],
                points=None if step["points"] is None else np.asarray(step["points"], dtype=np.float32),
                labels=None if step["labels"] is None else np.asarray(step["labels"], dtype=np.int32),
                box=None if step["box"] is None else np.asarray(step["box"], dtype=np.float32),
            )
            outs = [out]
        else:
            outs = list(predictor.propagate_in_video(state, start_frame_idx=step["start_frame_idx"],
                                                     reverse=step["reverse"]))
        results.append({
            "frames": np.asarray([f for f, _, _ in outs], dtype=np.int64),
            "obj_ids": np.asarray(list(outs[0][1]), dtype=np.int64),
            "logits": np.stack([_f32(m) for _, _, m in outs]),
        })
    return results


def flatten_session(name: str, results: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """``results`` as flat .npz keys ``name/step/field``."""
    return {f"{name}/{i}/{k}": v for i, r in enumerate(results) for k, v in r.items()}


def session_from_npz(npz, name: str) -> list[dict[str, np.ndarray]]:
    """The per-step results of session ``name`` back from the flat .npz keys."""
    steps = len({k.split("/")[1] for k in npz.files if k.startswith(name + "/")})
    return [{f: npz[f"{name}/{i}/{f}"] for f in ("frames", "obj_ids", "logits")} for i in range(steps)]
