"""EdgeTAM's video tracking on ONNX Runtime alone: the graphs of :func:`repvit.sam.sam2.export.export_edgetam_onnx`
driven by NumPy, with SAM 2's video predictor API (``init_state``, ``add_new_points_or_box``,
``propagate_in_video``, ``reset_state``).

The steps are those of :class:`repvit.sam.sam2.video_predictor.EdgeTamVideoPredictor` with its defaults: a click on a
frame not yet tracked makes it a conditioning frame, segmented without memory; a click on a tracked frame corrects
it, fed with the previous mask logits; clicked frames are encoded into memory (binarized) when propagation starts,
tracked frames as they are tracked (memories rounded to bfloat16, as SAM 2 stores them); a frame attends to every
conditioning frame, the six frames tracked just before it and up to 16 object pointers, held in the memory
attention graph's fixed-size bank with validity flags. Low-resolution masks have holes up to ``fill_hole_area``
pixels filled (SciPy). Each object is tracked on its own, as in the PyTorch predictor.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .memory_bank import memory_frames, pointer_outputs
from .tracking_state import COND, NON_COND, ObjectOutputs, check_frame

__all__ = ["OnnxEdgeTamTracker", "OnnxTrackingState", "select_mask", "resize_bilinear", "round_to_bfloat16"]

def select_mask(
    low_res_masks: np.ndarray, iou_predictions: np.ndarray, object_score_logits: np.ndarray, obj_ptr: np.ndarray,
    multimask_output: bool, settings: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """SAM 2's choice among the prompt decoder's four mask tokens (batch 1).

    With ``multimask_output`` the multimask output (tokens 1-3) with the highest IoU estimate, and its token's
    pointer; without, token 0's mask unless it is unstable (``dynamic_multimask_via_stability``), then the best
    multimask output, and token 0's pointer. Masks of an object scored absent become ``no_obj_score``.

    Args:
        settings: the manifest's ``mask_decoder`` entry.

    Returns:
        mask logits ``(1, 1, 256, 256)``, IoU estimate ``(1, 1)`` and object pointer ``(1, 256)``.
    """
    best = 1 + int(np.argmax(iou_predictions[0, 1:]))
    if multimask_output:
        idx, ptr_idx = best, best
    else:
        idx, ptr_idx = 0, 0
        if settings["dynamic_multimask_via_stability"]:
            delta = settings["stability_delta"]
            single = low_res_masks[0, 0]
            union = np.count_nonzero(single > -delta)
            stability = np.count_nonzero(single > delta) / union if union > 0 else 1.0
            idx = 0 if stability >= settings["stability_thresh"] else best
    mask = low_res_masks[:, idx : idx + 1]
    if not object_score_logits[0, 0] > 0:
        mask = np.full_like(mask, settings["no_obj_score"])
    return mask, iou_predictions[:, idx : idx + 1], obj_ptr[:, ptr_idx]


def _source_index(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PyTorch's bilinear sampling (``align_corners=False``) along one axis: lower index, upper index, weight."""
    scale = np.float32(in_size / out_size)
    src = np.maximum((np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5), 0)
    i0 = np.minimum(src.astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    return i0, i1, (src - i0).astype(np.float32)


def resize_bilinear(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``F.interpolate(x, size, mode="bilinear", align_corners=False)`` of ``(..., H, W)`` float32 maps."""
    y0, y1, wy = _source_index(size[0], x.shape[-2])
    x0, x1, wx = _source_index(size[1], x.shape[-1])
    rows = x[..., y0, :] * (1 - wy)[:, None] + x[..., y1, :] * wy[:, None]
    return (rows[..., x0] * (1 - wx) + rows[..., x1] * wx).astype(np.float32)


def round_to_bfloat16(x: np.ndarray) -> np.ndarray:
    """float32 values rounded to the nearest bfloat16 (ties to even), kept as float32."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000)
    return rounded.view(np.float32)


def _fill_holes(mask: np.ndarray, max_area: int) -> np.ndarray:
    """SAM 2's hole filling of mask logits ``(1, 1, H, W)``: background regions (8-connected) of at most
    ``max_area`` pixels get 0.1."""
    from scipy import ndimage

    labels, _ = ndimage.label(mask[0, 0] <= 0, structure=np.ones((3, 3), dtype=bool))
    areas = np.bincount(labels.ravel())
    areas[0] = max_area + 1
    hole = areas[labels] <= max_area
    return np.where(hole[None, None], np.float32(0.1), mask).astype(np.float32)


@dataclass
class _ObjectTrack(ObjectOutputs):
    """One object's clicks (model pixels, per frame) and outputs, as the PyTorch predictor keeps them."""

    points: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


@dataclass
class OnnxTrackingState:
    """One video's frames (RGB uint8 arrays or PIL images, or lazily read frames), its objects and caches."""

    frames: Sequence[Any]
    height: int
    width: int
    objects: dict[Any, _ObjectTrack] = field(default_factory=dict)
    cached_features: tuple[int, dict[str, np.ndarray]] | None = None
    maskmem_pos_enc: np.ndarray | None = None

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def obj_ids(self) -> list[Any]:
        return list(self.objects)


class OnnxEdgeTamTracker:
    """Track objects through a video with EdgeTAM's ONNX graphs in ONNX Runtime (SAM 2's video predictor API).

    Args:
        onnx_dir: a folder written by :func:`repvit.sam.sam2.export.export_edgetam_onnx` (``manifest.json`` and
            the four graphs).
        threads: ONNX Runtime's intra-op threads.
        fill_hole_area: fill holes up to this many pixels in the 256 x 256 mask logits (0: off).
        optimization: ONNX Runtime's graph optimization level (``none``/``basic``/``extended``/``all``).
    """

    def __init__(self, onnx_dir: str | Path, *, threads: int = 2, fill_hole_area: int = 8,
                 optimization: str = "all") -> None:  # fmt: skip
        from repvit.deploy.onnx_export import make_session

        if fill_hole_area < 0:
            raise ValueError(f"fill_hole_area must be 0 (off) or positive, got {fill_hole_area}")
        onnx_dir = Path(onnx_dir)
        manifest_path = onnx_dir / "manifest.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(
                f"{manifest_path} not found: export the graphs first (repvit.sam.sam2.export.export_edgetam_onnx, "
                "or repvit sam export --checkpoint edgetam --output-dir DIR)"
            )
        self.manifest = json.loads(manifest_path.read_text())
        if self.manifest.get("format") != "repvit-edgetam-onnx":
            fmt = self.manifest.get("format")
            raise ValueError(f"{manifest_path} is not an EdgeTAM ONNX manifest (format {fmt!r})")
        self.sessions = {
            name: make_session(onnx_dir / g["file"], threads=threads, level=optimization)
            for name, g in self.manifest["graphs"].items()
        }
        self.fill_hole_area = fill_hole_area
        self.image_size = int(self.manifest["image_size"])
        self.bank = self.manifest["memory_bank"]
        self._mean = np.asarray(self.manifest["image_mean"], dtype=np.float32)
        self._std = np.asarray(self.manifest["image_std"], dtype=np.float32)

    def _run(self, graph: str, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        sess = self.sessions[graph]
        outputs = sess.run(None, inputs)
        return {o.name: v for o, v in zip(sess.get_outputs(), outputs)}

    # -- state ----------------------------------------------------------------------------------------------------

    def init_state(self, video_path: str | Path | Sequence[Any]) -> OnnxTrackingState:
        """Open a video: a folder of JPEG/PNG frames, a video file, or a sequence of RGB uint8 ``(H, W, 3)`` arrays
        or PIL images. Frames are read when needed."""
        if isinstance(video_path, str | Path):
            from .frames import open_video_frames

            frames = open_video_frames(video_path, image_size=self.image_size)
            return OnnxTrackingState(frames, frames.height, frames.width)
        frames = list(video_path)
        if not frames:
            raise ValueError("the video has no frames")
        first = np.asarray(frames[0])
        if first.ndim != 3 or first.shape[2] != 3:
            raise ValueError(f"frames must be RGB (H, W, 3) arrays or PIL images, got shape {first.shape}")
        return OnnxTrackingState(frames, first.shape[0], first.shape[1])

    def reset_state(self, inference_state: OnnxTrackingState) -> None:
        """Remove every object, click and output (the video stays)."""
        inference_state.objects.clear()

    def _image(self, state: OnnxTrackingState, frame_idx: int) -> np.ndarray:
        """Frame ``frame_idx`` as the encoder's input: resized as SAM 2's loader does, ImageNet-normalized."""
        from PIL import Image

        from .frames import VideoFrames, resize_frame

        frame = state.frames[frame_idx] if not isinstance(state.frames, VideoFrames) else None
        if frame is None:
            image = state.frames.read_frame(frame_idx)  # the decoded PIL frame; the tensor would need torch
        else:
            image = frame if isinstance(frame, Image.Image) else Image.fromarray(np.asarray(frame, dtype=np.uint8))
        resized = resize_frame(image, self.image_size)
        x = (resized.astype(np.float64) / 255.0).astype(np.float32)
        return ((x - self._mean) / self._std).transpose(2, 0, 1)[None].copy()

    def _features(self, state: OnnxTrackingState, frame_idx: int) -> dict[str, np.ndarray]:
        """The image encoder's outputs on a frame; the last frame's are cached."""
        if state.cached_features is None or state.cached_features[0] != frame_idx:
            state.cached_features = (frame_idx, self._run("image_encoder", image=self._image(state, frame_idx)))
        return state.cached_features[1]

    # -- prompts --------------------------------------------------------------------------------------------------

    def add_new_points_or_box(
        self,
        inference_state: OnnxTrackingState,
        frame_idx: int,
        obj_id: Any,
        points: Any = None,
        labels: Any = None,
        clear_old_points: bool = True,
        normalize_coords: bool = True,
        box: Any = None,
    ) -> tuple[int, list[Any], np.ndarray]:
        """Click on an object (labels 1 positive, 0 negative) and/or give its box ``x0, y0, x1, y1`` on a frame.

        Points are in the video's pixels (in [0, 1] with ``normalize_coords=False``). Returns ``(frame_idx,
        obj_ids, masks)``: every object's mask logits on this frame, ``(objects, 1, H, W)`` float32.
        """
        state = inference_state
        frame_idx = check_frame(state.num_frames, frame_idx)
        coords, lbls = _prompt_points(points, labels, box)
        if box is not None and not clear_old_points:
            raise ValueError("a box must come before any click: give it with clear_old_points=True")
        if normalize_coords:
            coords = coords / np.asarray([state.width, state.height], dtype=np.float32)
        coords = (coords * self.image_size).astype(np.float32)
        track = state.objects.setdefault(obj_id, _ObjectTrack(obj_id))
        old = None if clear_old_points else track.points.get(frame_idx)
        if old is not None:
            coords, lbls = np.concatenate([old[0], coords], axis=1), np.concatenate([old[1], lbls], axis=1)
        track.points[frame_idx] = (coords, lbls)
        is_init_cond = frame_idx not in track.frames_tracked
        reverse = False if is_init_cond else track.frames_tracked[frame_idx]
        key = COND if is_init_cond else NON_COND
        prev = track.latest_output(frame_idx, key)
        prev_logits = None if prev is None else np.clip(prev["pred_masks"], -32.0, 32.0)
        out = self._run_frame(state, track, frame_idx, is_init_cond, (coords, lbls), reverse, False, prev_logits)
        track.temp_outputs[key][frame_idx] = out
        return frame_idx, state.obj_ids, self._frame_masks(state, frame_idx, key)

    def _frame_masks(self, state: OnnxTrackingState, frame_idx: int, key: str) -> np.ndarray:
        """Every object's newest mask logits on a frame at the video's size (``no_obj_score`` where none)."""
        no_obj = self.manifest["mask_decoder"]["no_obj_score"]
        masks = np.full((len(state.objects), 1, state.height, state.width), no_obj, dtype=np.float32)
        for i, track in enumerate(state.objects.values()):
            out = track.latest_output(frame_idx, key)
            if out is not None:
                masks[i : i + 1] = resize_bilinear(out["pred_masks"], (state.height, state.width))
        return masks

    # -- propagation ----------------------------------------------------------------------------------------------

    def propagate_in_video(
        self,
        inference_state: OnnxTrackingState,
        start_frame_idx: int | None = None,
        max_frame_num_to_track: int | None = None,
        reverse: bool = False,
    ) -> Iterator[tuple[int, list[Any], np.ndarray]]:
        """Track every object from ``start_frame_idx`` (default: the first conditioning frame) over
        ``max_frame_num_to_track`` more frames (default: to the video's end), forward or in ``reverse``.

        Yields:
            ``(frame_idx, obj_ids, masks)``, masks being logits ``(objects, 1, H, W)`` at the video's size.
        """
        state = inference_state
        self._encode_prompted_frames(state)
        if start_frame_idx is None:
            start_frame_idx = min(f for t in state.objects.values() for f in t.outputs[COND])
        start = check_frame(state.num_frames, start_frame_idx)
        count = state.num_frames if max_frame_num_to_track is None else int(max_frame_num_to_track)
        if count < 0:
            raise ValueError(f"max_frame_num_to_track must be >= 0, got {count}")
        if reverse:
            order = range(start, max(start - count, 0) - 1, -1) if start > 0 else range(0)
        else:
            order = range(start, min(start + count, state.num_frames - 1) + 1)
        for frame_idx in order:
            masks = [self._track_frame(state, t, frame_idx, reverse) for t in state.objects.values()]
            yield frame_idx, state.obj_ids, resize_bilinear(np.concatenate(masks), (state.height, state.width))

    def _encode_prompted_frames(self, state: OnnxTrackingState) -> None:
        """Encode the frames clicked since the last propagation into memory (masks binarized)."""
        if not state.objects:
            raise RuntimeError("no object to track: add points or a box first (add_new_points_or_box)")
        for track in state.objects.values():
            for key in (NON_COND, COND):
                for frame_idx, out in track.temp_outputs[key].items():
                    if out["maskmem_features"] is None:
                        out["maskmem_features"] = self._encode_memory(state, frame_idx, out["pred_masks"], True)
                    track.outputs[key][frame_idx] = out
                track.temp_outputs[key].clear()
            for frame_idx in track.outputs[COND]:
                track.outputs[NON_COND].pop(frame_idx, None)

    def _track_frame(self, state: OnnxTrackingState, track: _ObjectTrack, frame_idx: int, reverse: bool) -> np.ndarray:
        """One object's mask logits ``(1, 1, 256, 256)`` on a frame: its clicked output there, or tracked."""
        out = track.outputs[COND].get(frame_idx)
        if out is None and frame_idx in track.points:
            out = track.outputs[NON_COND].get(frame_idx)  # a corrected frame keeps its corrected mask
        if out is None:
            out = self._run_frame(state, track, frame_idx, False, None, reverse, True, None)
            track.outputs[NON_COND][frame_idx] = out
        track.frames_tracked[frame_idx] = reverse
        return out["pred_masks"]

    # -- graph calls ----------------------------------------------------------------------------------------------

    def _run_frame(
        self, state: OnnxTrackingState, track: _ObjectTrack, frame_idx: int, is_init_cond: bool,
        points: tuple[np.ndarray, np.ndarray] | None, reverse: bool, run_mem_encoder: bool,
        prev_logits: np.ndarray | None,
    ) -> dict[str, Any]:  # fmt: skip
        """SAM 2's ``track_step`` for one object on one frame, plus hole filling; the output kept in the track."""
        feats = self._features(state, frame_idx)
        if is_init_cond:
            pix_feat = feats["image_embeddings"]
        else:
            pix_feat = self._run("memory_attention", vision_features=feats["vision_features"],
                                 **self._memory_bank(state, track, frame_idx, reverse))["pix_feat"]
        if points is None:  # no clicks: one padding point, as SAM 2 prompts a tracked frame
            points = (np.zeros((1, 1, 2), np.float32), -np.ones((1, 1), np.float32))
        side = 4 * feats["image_embeddings"].shape[-1]
        has_mask = prev_logits is not None
        dec = self._run(
            "prompt_decoder", image_embeddings=pix_feat, high_res_feat0=feats["high_res_feat0"],
            high_res_feat1=feats["high_res_feat1"], point_coords=points[0], point_labels=points[1],
            mask_input=prev_logits if has_mask else np.zeros((1, 1, side, side), np.float32),
            has_mask_input=np.asarray([1.0 if has_mask else 0.0], np.float32),
        )
        settings = self.manifest["mask_decoder"]
        multimask = settings["multimask_min_pt_num"] <= points[1].shape[1] <= settings["multimask_max_pt_num"]
        mask, _, obj_ptr = select_mask(dec["low_res_masks"], dec["iou_predictions"], dec["object_score_logits"],
                                       dec["obj_ptr"], multimask, settings)
        memory = self._encode_memory(state, frame_idx, mask, False) if run_mem_encoder else None
        if self.fill_hole_area > 0:
            mask = _fill_holes(mask, self.fill_hole_area)
        return {"pred_masks": mask, "obj_ptr": obj_ptr, "maskmem_features": memory}

    def _encode_memory(self, state: OnnxTrackingState, frame_idx: int, mask: np.ndarray, binarize: bool) -> np.ndarray:
        """A frame's memory ``(512, 64)`` from its mask logits, rounded to bfloat16."""
        out = self._run("memory_encoder", vision_features=self._features(state, frame_idx)["vision_features"],
                        mask_logits=mask, binarize=np.asarray([1.0 if binarize else 0.0], np.float32))
        if state.maskmem_pos_enc is None:
            state.maskmem_pos_enc = out["maskmem_pos_enc"][0]
        return round_to_bfloat16(out["maskmem_features"][0])

    def _memory_bank(self, state: OnnxTrackingState, track: _ObjectTrack, frame_idx: int,
                     reverse: bool) -> dict[str, np.ndarray]:  # fmt: skip
        """The memory attention's inputs for a frame, chosen by SAM 2's rules (:mod:`.memory_bank`)."""
        cfg, bank = self.manifest["config"], self.bank
        t_pos_and_prevs, selected, unselected = memory_frames(
            frame_idx, track.outputs, bank["num_maskmem"], cfg["max_cond_frames_in_attn"],
            cfg["memory_temporal_stride_for_eval"], reverse,
        )
        slots = [(t_pos, out) for t_pos, out in t_pos_and_prevs if out is not None]
        ptrs = pointer_outputs(frame_idx, selected, unselected, track.outputs, state.num_frames,
                               bank["max_obj_ptrs_in_encoder"], track_in_reverse=reverse)
        return self._bank_arrays(state, slots, ptrs)

    def _bank_arrays(self, state: OnnxTrackingState, slots: list[tuple[int, dict]], ptrs: list[np.ndarray]) -> dict:
        bank = self.bank
        n_mem, n_ptr = bank["num_memory_slots"], bank["num_obj_ptr_slots"]
        if len(slots) > n_mem or len(ptrs) > n_ptr:
            raise ValueError(
                f"the frame attends to {len(slots)} memories and {len(ptrs)} object pointers but the exported bank "
                f"holds {n_mem} and {n_ptr}: export again with larger num_memory_slots / num_obj_ptr_slots"
            )
        if not slots:  # SAM 2's rules always give a tracked frame its conditioning frame's memory
            raise ValueError("the memory attention needs at least one memory, got none: track only after a frame has "
                             "been prompted")
        memory = np.zeros((n_mem, bank["tokens_per_memory"], bank["mem_dim"]), np.float32)
        tpos = np.zeros(n_mem, np.int64)
        for i, (t_pos, out) in enumerate(slots):
            memory[i], tpos[i] = out["maskmem_features"], t_pos
        obj_ptrs = np.zeros((n_ptr, bank["obj_ptr_dim"]), np.float32)
        if ptrs:
            obj_ptrs[: len(ptrs)] = np.concatenate(ptrs)
        return {
            "memory": memory, "memory_pos": np.broadcast_to(state.maskmem_pos_enc, memory.shape).copy(),
            "memory_tpos": tpos, "memory_valid": np.arange(n_mem) < len(slots),
            "obj_ptrs": obj_ptrs, "obj_ptr_valid": np.arange(n_ptr) < len(ptrs),
        }


def _prompt_points(points: Any, labels: Any, box: Any) -> tuple[np.ndarray, np.ndarray]:
    """Points ``(1, N, 2)`` and float labels ``(1, N)``, a box first as two corners labelled 2 and 3."""
    if (points is None) != (labels is None):
        raise ValueError("points and labels must be given together")
    if points is None and box is None:
        raise ValueError("give points with labels, or a box, or both")
    coords = np.zeros((0, 2), np.float32) if points is None else np.asarray(points, dtype=np.float32)
    lbls = np.zeros(0, np.float32) if labels is None else np.asarray(labels, dtype=np.float32)
    if coords.shape[-1:] != (2,) or coords.size // 2 != lbls.size:
        raise ValueError(f"points must be (N, 2) with labels (N,), got {coords.shape} and {lbls.shape}")
    coords, lbls = coords.reshape(1, -1, 2), lbls.reshape(1, -1)
    if box is not None:
        corners = np.asarray(box, dtype=np.float32)
        if corners.size != 4:
            raise ValueError(f"box must be (x0, y0, x1, y1), got {corners.size} values")
        coords = np.concatenate([corners.reshape(1, 2, 2), coords], axis=1)
        lbls = np.concatenate([np.asarray([[2.0, 3.0]], np.float32), lbls], axis=1)
    return coords, lbls
