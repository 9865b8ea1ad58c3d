"""EdgeTAM's video predictor: click on objects in some frames, follow them through the video.

The API and the tracking steps are SAM 2's video predictor's (``init_state``, ``add_new_points_or_box``,
``add_new_mask``, ``propagate_in_video``, ``clear_all_prompts_in_frame``, ``remove_object``, ``reset_state``) on
the CPU, without CUDA extensions. Each object keeps a track of its own (its prompts, its conditioning frames
and the outputs that make its memory), as in SAM 2.1's predictor: objects clicked on different frames keep
their tracks on every frame, and objects may be added after tracking. With one object the steps, and so the
masks, are those of EdgeTAM's own predictor:

* a click on a frame the object has not been tracked on makes it a conditioning frame (segmented from the
  prompts alone, like SAM); a click on an already tracked frame corrects it, fed with the previous mask logits;
* clicked frames are encoded into memory when propagation starts (their masks binarized), every other frame
  as it is tracked; the model's ``track_step`` attends to every conditioning frame and to the
  ``num_maskmem - 1`` (6) frames tracked just before (after, in reverse) the current one;
* low-resolution mask logits have their holes up to ``fill_hole_area`` pixels filled before they are stored;
  memories are rounded to bfloat16 as SAM 2 stores them (kept in float32 here: EdgeTAM's memories are small);
* masks are returned as logits at the video's size; ``non_overlap_masks`` keeps each pixel for the highest
  scoring object only.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .build import build_edgetam
from .config import EdgeTamConfig
from .frames import VideoFrames, open_video_frames
from .postprocess import fill_holes_in_mask_scores
from .tracking_state import COND, NON_COND, ObjectOutputs, check_frame

__all__ = ["NO_OBJ_SCORE", "EdgeTamVideoPredictor", "ObjectTrack", "TrackingState", "build_edgetam_video_predictor"]

#: the mask logit of an object that has no output on a frame
NO_OBJ_SCORE = -1024.0


@dataclass
class ObjectTrack(ObjectOutputs):
    """One object's prompts and outputs (:class:`~repvit.sam.sam2.tracking_state.ObjectOutputs`).

    Attributes:
        point_inputs: per frame, the clicks ``{"point_coords": (1, N, 2), "point_labels": (1, N)}`` (model pixels).
        mask_inputs: per frame, the mask prompt ``(1, 1, S, S)``.
    """

    point_inputs: dict[int, dict[str, Tensor]] = field(default_factory=dict)
    mask_inputs: dict[int, Tensor] = field(default_factory=dict)

    def input_frames(self) -> set[int]:
        return set(self.point_inputs) | set(self.mask_inputs)

    def clear(self) -> None:
        """Forget every prompt and output (the object stays)."""
        for d in (self.point_inputs, self.mask_inputs, self.frames_tracked, *self.outputs.values()):
            d.clear()
        for d in self.temp_outputs.values():
            d.clear()


@dataclass
class TrackingState:
    """The inference state of one video: its frames, the objects' tracks and a cache of image features."""

    frames: VideoFrames
    device: torch.device
    storage_device: torch.device
    objects: dict[Any, ObjectTrack] = field(default_factory=dict)
    constants: dict[str, Any] = field(default_factory=dict)
    cached_features: tuple[int, tuple] | None = None

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def video_height(self) -> int:
        return self.frames.height

    @property
    def video_width(self) -> int:
        return self.frames.width

    @property
    def obj_ids(self) -> list[Any]:
        """Object ids in the order the objects were added (the order of the returned masks)."""
        return list(self.objects)


class EdgeTamVideoPredictor:
    """Track objects through a video with an EdgeTAM model (SAM 2's video predictor API).

    Args:
        model: an :class:`~repvit.sam.sam2.model.EdgeTAM` in eval mode.
        fill_hole_area: fill holes up to this many pixels in the 256 x 256 mask logits (0: off).
        non_overlap_masks: in the returned masks, keep each pixel for the highest-scoring object only.
        clear_non_cond_mem_around_input: after a correction click, forget the object's tracked memories within
            ``num_maskmem`` frames of it.
        add_all_frames_to_correct_as_cond: make every corrected frame a conditioning frame.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        fill_hole_area: int = 8,
        non_overlap_masks: bool = False,
        clear_non_cond_mem_around_input: bool = False,
        add_all_frames_to_correct_as_cond: bool = False,
    ) -> None:
        if fill_hole_area < 0:
            raise ValueError(f"fill_hole_area must be 0 (off) or positive, got {fill_hole_area}")
        self.model = model
        self.fill_hole_area = fill_hole_area
        self.non_overlap_masks = non_overlap_masks
        self.clear_non_cond_mem_around_input = clear_non_cond_mem_around_input
        self.add_all_frames_to_correct_as_cond = add_all_frames_to_correct_as_cond

    @property
    def image_size(self) -> int:
        return self.model.image_size

    # -- state --------------------------------------------------------------------------------------------------

    @torch.inference_mode()
    def init_state(
        self,
        video_path: str | Path | VideoFrames,
        offload_video_to_cpu: bool = False,
        offload_state_to_cpu: bool = False,
        async_loading_frames: bool = False,
    ) -> TrackingState:
        """Open a video (a folder of JPEG/PNG frames, a video file, or :class:`VideoFrames`) for tracking.

        Frames are always read lazily and kept on the CPU until used, so ``offload_video_to_cpu`` and
        ``async_loading_frames`` (SAM 2's options) change nothing; ``offload_state_to_cpu`` keeps the stored
        outputs on the CPU when the model runs elsewhere. The first frame's features are computed here.
        """
        del offload_video_to_cpu, async_loading_frames
        frames = video_path
        if not isinstance(frames, VideoFrames):
            frames = open_video_frames(video_path, image_size=self.image_size)
        elif frames.image_size != self.image_size:
            raise ValueError(f"frames are resized to {frames.image_size} px but the model takes {self.image_size} px")
        device = self.model.device
        state = TrackingState(frames, device, torch.device("cpu") if offload_state_to_cpu else device)
        self._image_features(state, 0)
        return state

    @torch.inference_mode()
    def reset_state(self, inference_state: TrackingState) -> None:
        """Remove every object, prompt and output (the video and its cached features stay)."""
        inference_state.objects.clear()

    def _track(self, state: TrackingState, obj_id: Any, create: bool = False) -> ObjectTrack:
        track = state.objects.get(obj_id)
        if track is None:
            if not create:
                raise ValueError(f"no object with id {obj_id!r}; the objects are {state.obj_ids}")
            track = state.objects[obj_id] = ObjectTrack(obj_id)
        return track

    # -- prompts ------------------------------------------------------------------------------------------------

    @torch.inference_mode()
    def add_new_points_or_box(
        self,
        inference_state: TrackingState,
        frame_idx: int,
        obj_id: Any,
        points: Any = None,
        labels: Any = None,
        clear_old_points: bool = True,
        normalize_coords: bool = True,
        box: Any = None,
    ) -> tuple[int, list[Any], Tensor]:
        """Click on an object (points labelled 1 positive, 0 negative) and/or give its box on a frame.

        Args:
            inference_state: from :meth:`init_state`.
            frame_idx: the frame clicked on.
            obj_id: the object's id (a new id adds an object).
            points: ``(N, 2)`` x, y in the video's pixels (or, with ``normalize_coords=False``, in [0, 1]).
            labels: ``(N,)`` 1 for a positive click, 0 for a negative one.
            clear_old_points: replace this object's earlier clicks on this frame (else add to them).
            normalize_coords: ``points`` and ``box`` are in the video's pixels.
            box: ``(x0, y0, x1, y1)``, given with ``clear_old_points=True``.

        Returns:
            ``(frame_idx, obj_ids, masks)``: every object's mask logits on this frame, ``(objects, 1, H, W)``.
        """
        state = inference_state
        frame_idx = check_frame(state.num_frames, frame_idx)
        points, labels = self._prompt_points(points, labels, box, clear_old_points)
        if normalize_coords:
            points = points / torch.tensor([state.video_width, state.video_height], dtype=torch.float32)
        points = (points * self.image_size).to(state.device)
        labels = labels.to(state.device)
        track = self._track(state, obj_id, create=True)
        if box is not None and frame_idx in track.frames_tracked:
            warnings.warn(
                "a box on a frame that was already tracked corrects the track, which SAM 2 may not do well; "
                "to start the object from this box, call reset_state (or remove_object) first",
                UserWarning,
                stacklevel=3,
            )
        old = None if clear_old_points else track.point_inputs.get(frame_idx)
        if old is not None:
            points = torch.cat([old["point_coords"], points], dim=1)
            labels = torch.cat([old["point_labels"], labels], dim=1)
        track.point_inputs[frame_idx] = {"point_coords": points, "point_labels": labels}
        track.mask_inputs.pop(frame_idx, None)
        return self._prompt_frame(state, track, frame_idx)

    @staticmethod
    def _prompt_points(points: Any, labels: Any, box: Any, clear_old_points: bool) -> tuple[Tensor, Tensor]:
        """Points ``(1, N, 2)`` float32 and labels ``(1, N)`` int32, a box first as two corners labelled 2 and 3."""
        if (points is None) != (labels is None):
            raise ValueError("points and labels must be given together")
        if points is None and box is None:
            raise ValueError("give points with labels, or a box, or both")
        points = torch.zeros(0, 2) if points is None else torch.as_tensor(points, dtype=torch.float32)
        labels = torch.zeros(0, dtype=torch.int32) if labels is None else torch.as_tensor(labels, dtype=torch.int32)
        if points.shape[-1:] != (2,) or points.dim() > 3 or labels.dim() > 2:
            raise ValueError(
                f"points must be (N, 2) and labels (N,), got {tuple(points.shape)} and {tuple(labels.shape)}"
            )
        points, labels = points.reshape(1, points.numel() // 2, 2), labels.reshape(1, labels.numel())
        if points.shape[1] != labels.shape[1]:
            raise ValueError(f"{points.shape[1]} points but {labels.shape[1]} labels")
        if box is not None:
            if not clear_old_points:
                raise ValueError("a box must come before any click: give it with clear_old_points=True")
            box = torch.as_tensor(box, dtype=torch.float32)
            if box.numel() != 4:
                raise ValueError(f"box must be (x0, y0, x1, y1), got {tuple(box.shape)} values")
            points = torch.cat([box.reshape(1, 2, 2), points], dim=1)
            labels = torch.cat([torch.tensor([[2, 3]], dtype=torch.int32), labels], dim=1)
        return points, labels

    @torch.inference_mode()
    def add_new_mask(
        self, inference_state: TrackingState, frame_idx: int, obj_id: Any, mask: Any
    ) -> tuple[int, list[Any], Tensor]:
        """Give an object's mask ``(H, W)`` (bool or 0/1, any size) on a frame; returns as
        :meth:`add_new_points_or_box`."""
        state = inference_state
        frame_idx = check_frame(state.num_frames, frame_idx)
        mask = torch.as_tensor(mask)
        if mask.dim() != 2:
            raise ValueError(f"mask must be 2-D (H, W), got shape {tuple(mask.shape)}")
        mask = mask.to(torch.bool)[None, None].float().to(state.device)
        if mask.shape[-2:] != (self.image_size, self.image_size):
            size = (self.image_size, self.image_size)
            mask = F.interpolate(mask, size=size, mode="bilinear", align_corners=False, antialias=True)
            mask = (mask >= 0.5).float()
        track = self._track(state, obj_id, create=True)
        track.mask_inputs[frame_idx] = mask
        track.point_inputs.pop(frame_idx, None)
        return self._prompt_frame(state, track, frame_idx)

    def _prompt_frame(self, state: TrackingState, track: ObjectTrack, frame_idx: int) -> tuple[int, list, Tensor]:
        """Segment a frame from the object's prompts on it (a new conditioning frame, or a correction)."""
        is_init_cond_frame = frame_idx not in track.frames_tracked
        reverse = False if is_init_cond_frame else track.frames_tracked[frame_idx]
        is_cond = is_init_cond_frame or self.add_all_frames_to_correct_as_cond
        storage_key = COND if is_cond else NON_COND
        point_inputs = track.point_inputs.get(frame_idx)
        prev_logits = None
        prev = track.latest_output(frame_idx, storage_key)
        if point_inputs is not None and prev is not None and prev["pred_masks"] is not None:
            prev_logits = prev["pred_masks"].to(state.device).clamp(-32.0, 32.0)
        out = self._run_frame(
            state, track, frame_idx, is_init_cond_frame, point_inputs, track.mask_inputs.get(frame_idx),
            reverse=reverse, run_mem_encoder=False, prev_sam_mask_logits=prev_logits,
        )  # fmt: skip
        track.temp_outputs[storage_key][frame_idx] = out
        return frame_idx, state.obj_ids, self._frame_masks(state, frame_idx, is_cond)

    @torch.inference_mode()
    def clear_all_prompts_in_frame(
        self, inference_state: TrackingState, frame_idx: int, obj_id: Any, need_output: bool = True
    ) -> tuple[int, list[Any], Tensor] | None:
        """Remove an object's clicks or mask on a frame. An object left without any conditioning frame loses its
        whole track (prompts and outputs)."""
        state = inference_state
        frame_idx = check_frame(state.num_frames, frame_idx)
        track = self._track(state, obj_id)
        self._clear_prompts(track, frame_idx)
        if not need_output:
            return None
        is_cond = any(frame_idx in t.temp_outputs[COND] for t in state.objects.values())
        return frame_idx, state.obj_ids, self._frame_masks(state, frame_idx, is_cond)

    @staticmethod
    def _clear_prompts(track: ObjectTrack, frame_idx: int) -> None:
        track.point_inputs.pop(frame_idx, None)
        track.mask_inputs.pop(frame_idx, None)
        for d in track.temp_outputs.values():
            d.pop(frame_idx, None)
        out = track.outputs[COND].pop(frame_idx, None)
        if out is not None:  # no longer a conditioning frame: its output stays as a tracked frame's
            track.outputs[NON_COND][frame_idx] = out
            track.frames_tracked.pop(frame_idx, None)
        if not track.outputs[COND] and not track.temp_outputs[COND]:
            track.clear()

    @torch.inference_mode()
    def remove_object(
        self, inference_state: TrackingState, obj_id: Any, strict: bool = False, need_output: bool = True
    ) -> tuple[list[Any], list[tuple[int, Tensor]]]:
        """Remove an object and its track.

        Returns:
            ``(obj_ids, updated_frames)``: the remaining ids and, with ``need_output``, ``(frame_idx, masks)`` for
            each frame the object taken out had prompts on.
        """
        state = inference_state
        if obj_id not in state.objects:
            if strict:
                raise ValueError(f"cannot remove object {obj_id!r}: no such object; the objects are {state.obj_ids}")
            return state.obj_ids, []
        track = state.objects.pop(obj_id)
        if not state.objects or not need_output:
            return state.obj_ids, []
        updated = []
        for frame_idx in sorted(track.input_frames()):
            is_cond = any(frame_idx in t.temp_outputs[COND] for t in state.objects.values())
            updated.append((frame_idx, self._frame_masks(state, frame_idx, is_cond)))
        return state.obj_ids, updated

    # -- propagation --------------------------------------------------------------------------------------------

    @torch.inference_mode()
    def propagate_in_video(
        self,
        inference_state: TrackingState,
        start_frame_idx: int | None = None,
        max_frame_num_to_track: int | None = None,
        reverse: bool = False,
    ) -> Iterator[tuple[int, list[Any], Tensor]]:
        """Track every object from ``start_frame_idx`` (default: the first conditioning frame) over
        ``max_frame_num_to_track`` more frames (default: to the video's end), forward or in ``reverse``.

        Yields:
            ``(frame_idx, obj_ids, masks)`` per frame, masks being logits ``(objects, 1, H, W)`` at the video's size.
        """
        state = inference_state
        self._encode_prompted_frames(state)
        for frame_idx in self._processing_order(state, start_frame_idx, max_frame_num_to_track, reverse):
            masks = [self._track_frame(state, track, frame_idx, reverse) for track in state.objects.values()]
            yield frame_idx, state.obj_ids, self._video_res(state, torch.cat(masks, dim=0))

    def _encode_prompted_frames(self, state: TrackingState) -> None:
        """Encode the frames clicked since the last propagation into memory and add them to the memory bank."""
        if not state.objects:
            raise RuntimeError("no object to track: add points, a box or a mask first (add_new_points_or_box)")
        for track in state.objects.values():
            for key in (NON_COND, COND):
                for frame_idx, out in track.temp_outputs[key].items():
                    if out["maskmem_features"] is None:
                        out["maskmem_features"], out["maskmem_pos_enc"] = self._encode_memory(state, frame_idx, out)
                    track.outputs[key][frame_idx] = out
                    if self.clear_non_cond_mem_around_input:
                        self._clear_non_cond_mem_around(track, frame_idx)
                track.temp_outputs[key].clear()
            if not track.outputs[COND]:
                raise RuntimeError(
                    f"object {track.obj_id!r} has no points, box or mask on any frame: give it some "
                    "(add_new_points_or_box, add_new_mask) or remove it (remove_object)"
                )
            for frame_idx in track.outputs[COND]:
                track.outputs[NON_COND].pop(frame_idx, None)

    @staticmethod
    def _processing_order(state: TrackingState, start: int | None, max_frames: int | None, reverse: bool) -> range:
        if start is None:
            start = min(f for track in state.objects.values() for f in track.outputs[COND])
        start = check_frame(state.num_frames, start)
        max_frames = state.num_frames if max_frames is None else max_frames
        if max_frames < 0:
            raise ValueError(f"max_frame_num_to_track must be >= 0, got {max_frames}")
        if reverse:
            end = max(start - max_frames, 0)
            return range(start, end - 1, -1) if start > 0 else range(0)
        return range(start, min(start + max_frames, state.num_frames - 1) + 1)

    def _track_frame(self, state: TrackingState, track: ObjectTrack, frame_idx: int, reverse: bool) -> Tensor:
        """One object's mask logits ``(1, 1, 256, 256)`` on a frame: its prompted output there, or tracked."""
        out = track.outputs[COND].get(frame_idx)
        if out is not None:
            if self.clear_non_cond_mem_around_input:
                self._clear_non_cond_mem_around(track, frame_idx)
        elif frame_idx in track.input_frames() and frame_idx in track.outputs[NON_COND]:
            out = track.outputs[NON_COND][frame_idx]  # a corrected frame keeps its corrected mask
        else:
            out = self._run_frame(state, track, frame_idx, False, None, None, reverse=reverse, run_mem_encoder=True)
            track.outputs[NON_COND][frame_idx] = out
        track.frames_tracked[frame_idx] = reverse
        return out["pred_masks"].to(state.device)

    def _clear_non_cond_mem_around(self, track: ObjectTrack, frame_idx: int) -> None:
        r = self.model.memory_temporal_stride_for_eval * self.model.num_maskmem
        for t in range(frame_idx - r, frame_idx + r + 1):
            track.outputs[NON_COND].pop(t, None)

    # -- model calls --------------------------------------------------------------------------------------------

    def _image_features(self, state: TrackingState, frame_idx: int) -> tuple:
        """``(vision_feats, vision_pos_embeds, feat_sizes)`` of a frame; the last frame's are cached."""
        if state.cached_features is not None and state.cached_features[0] == frame_idx:
            return state.cached_features[1]
        image = state.frames[frame_idx].to(state.device).unsqueeze(0)
        _, feats, pos, sizes = self.model._prepare_backbone_features(self.model.forward_image(image))
        state.cached_features = (frame_idx, (feats, pos, sizes))
        return feats, pos, sizes

    def _run_frame(
        self,
        state: TrackingState,
        track: ObjectTrack,
        frame_idx: int,
        is_init_cond_frame: bool,
        point_inputs: dict[str, Tensor] | None,
        mask_inputs: Tensor | None,
        *,
        reverse: bool,
        run_mem_encoder: bool,
        prev_sam_mask_logits: Tensor | None = None,
    ) -> dict[str, Any]:
        """Run the model's ``track_step`` for one object on one frame; returns the output kept in the track."""
        feats, pos, sizes = self._image_features(state, frame_idx)
        out = self.model.track_step(
            frame_idx=frame_idx,
            is_init_cond_frame=is_init_cond_frame,
            current_vision_feats=feats,
            current_vision_pos_embeds=pos,
            feat_sizes=sizes,
            point_inputs=point_inputs,
            mask_inputs=mask_inputs,
            output_dict=track.outputs,
            num_frames=state.num_frames,
            track_in_reverse=reverse,
            run_mem_encoder=run_mem_encoder,
            prev_sam_mask_logits=prev_sam_mask_logits,
        )
        pred_masks = out["pred_masks"]
        if self.fill_hole_area > 0:
            pred_masks = fill_holes_in_mask_scores(pred_masks, self.fill_hole_area)
        return {
            "maskmem_features": self._stored_memory(state, out["maskmem_features"]),
            "maskmem_pos_enc": self._maskmem_pos_enc(state, out["maskmem_pos_enc"]),
            "pred_masks": pred_masks.to(state.storage_device),
            "obj_ptr": out["obj_ptr"],
            "object_score_logits": out["object_score_logits"],
        }

    def _encode_memory(self, state: TrackingState, frame_idx: int, out: dict[str, Any]) -> tuple[Tensor, list]:
        """The memory of a clicked frame, from its mask logits upsampled to the model's input size."""
        feats, _, sizes = self._image_features(state, frame_idx)
        size = (self.image_size, self.image_size)
        high_res = F.interpolate(out["pred_masks"].to(state.device), size=size, mode="bilinear", align_corners=False)
        features, pos_enc = self.model._encode_new_memory(
            current_vision_feats=feats,
            feat_sizes=sizes,
            pred_masks_high_res=high_res,
            object_score_logits=out["object_score_logits"],
            is_mask_from_pts=True,
        )
        return self._stored_memory(state, features), self._maskmem_pos_enc(state, pos_enc)

    @staticmethod
    def _stored_memory(state: TrackingState, features: Tensor | None) -> Tensor | None:
        """Memory features rounded to bfloat16 as SAM 2 stores them, kept as float32."""
        if features is None:
            return None
        return features.to(torch.bfloat16).to(state.storage_device, torch.float32)

    @staticmethod
    def _maskmem_pos_enc(state: TrackingState, pos_enc: list[Tensor] | None) -> list[Tensor] | None:
        """The memory's position encoding, the same on every frame: one copy kept for the video."""
        if pos_enc is None:
            return None
        return state.constants.setdefault("maskmem_pos_enc", [x[:1].clone() for x in pos_enc])

    # -- outputs ------------------------------------------------------------------------------------------------

    def _frame_masks(self, state: TrackingState, frame_idx: int, is_cond: bool) -> Tensor:
        """Every object's newest mask logits on a frame at the video's size (``NO_OBJ_SCORE`` where none)."""
        size = (state.video_height, state.video_width)
        masks = torch.full((len(state.objects), 1, *size), NO_OBJ_SCORE, device=state.device)
        for i, track in enumerate(state.objects.values()):
            out = track.latest_output(frame_idx, COND if is_cond else NON_COND)
            if out is not None:
                low_res = out["pred_masks"].to(state.device)
                masks[i : i + 1] = F.interpolate(low_res, size=size, mode="bilinear", align_corners=False)
        return self._video_res(state, masks)

    def _video_res(self, state: TrackingState, masks: Tensor) -> Tensor:
        """Mask logits resized to the video's size; without overlaps between objects if ``non_overlap_masks``."""
        size = (state.video_height, state.video_width)
        if masks.shape[-2:] != size:
            masks = F.interpolate(masks, size=size, mode="bilinear", align_corners=False)
        if self.non_overlap_masks:
            masks = self.model._apply_non_overlapping_constraints(masks)
        return masks


def build_edgetam_video_predictor(
    checkpoint: str | Path | None = None, *, fused: bool = False, device: str | torch.device = "cpu",
    fill_hole_area: int = 8,
) -> EdgeTamVideoPredictor:  # fmt: skip
    """EdgeTAM's video predictor with the settings of the authors' video builder.

    Args:
        checkpoint: ``edgetam.pt`` (a path) or None for random weights.
        fused: re-parameterize the RepViT trunk.
        device: where the model runs.
        fill_hole_area: fill holes up to this many pixels in the low-resolution masks (0: off).
    """
    # the authors' video builder encodes clicked frames' masks into memory as 0/1
    config = EdgeTamConfig(binarize_mask_from_pts_for_mem_enc=True)
    model = build_edgetam(checkpoint, fused=fused, device=device, config=config)
    return EdgeTamVideoPredictor(model, fill_hole_area=fill_hole_area)
