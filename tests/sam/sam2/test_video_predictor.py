"""EdgeTAM's video predictor: prompts, propagation and the per-object bookkeeping.

Most tests drive the predictor with a small stand-in model that has EdgeTAM's tracking interface
(``forward_image``, ``_prepare_backbone_features``, ``track_step``, ``_encode_new_memory``) and "tracks" by
copying the mask of the frame it remembers, recording what it was given; so each test sees exactly which frames
are conditioning frames, what memory each object's step is given, and which masks come back. One test runs the
real EdgeTAM (random weights, small input); numerical parity with the authors' predictor is the parity tests' job.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from repvit.sam.sam2.frames import FrameFolder
from repvit.sam.sam2.video_predictor import NO_OBJ_SCORE, EdgeTamVideoPredictor, build_edgetam_video_predictor

pytest.importorskip("scipy.ndimage")

H, W = 24, 40  # the video's size
S = 64  # the stand-in model's input size; its masks are S // 4 = 16 px


class TrackingStandIn(nn.Module):
    """EdgeTAM's tracking interface on 16 x 16 masks: clicks draw squares, tracking copies the remembered mask."""

    image_size = S
    num_maskmem = 7
    memory_temporal_stride_for_eval = 1

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))
        self.calls: list[dict] = []
        self.encoded: list[dict] = []
        self.images = 0

    @property
    def device(self):
        return self.anchor.device

    def forward_image(self, img):
        assert img.shape == (1, 3, S, S)
        self.images += 1
        return {"img": img}

    def _prepare_backbone_features(self, backbone_out):
        feat = backbone_out["img"].mean(1).flatten(1).T[:, :, None]  # (HW, 1, 1)
        return backbone_out, [feat], [feat], [(S, S)]

    def track_step(self, frame_idx, is_init_cond_frame, current_vision_feats, current_vision_pos_embeds, feat_sizes,
                   point_inputs, mask_inputs, output_dict, num_frames, track_in_reverse=False, run_mem_encoder=True,
                   prev_sam_mask_logits=None):  # fmt: skip
        self.calls.append(
            dict(frame=frame_idx, init=is_init_cond_frame, reverse=track_in_reverse, mem=run_mem_encoder,
                 cond=sorted(output_dict["cond_frame_outputs"]), non_cond=sorted(output_dict["non_cond_frame_outputs"]),
                 points=None if point_inputs is None else point_inputs["point_coords"].clone(),
                 prev=prev_sam_mask_logits, mask=mask_inputs is not None)
        )  # fmt: skip
        if mask_inputs is not None:
            masks = torch.where(F.adaptive_avg_pool2d(mask_inputs, S // 4) > 0.5, 10.0, -10.0)
        elif point_inputs is not None:
            masks = self._draw(point_inputs, prev_sam_mask_logits)
        else:
            masks = self._remembered(frame_idx, output_dict, track_in_reverse)
        out = {"pred_masks": masks, "obj_ptr": torch.zeros(1, 8), "object_score_logits": torch.full((1, 1), 10.0)}
        out["maskmem_features"], out["maskmem_pos_enc"] = None, None
        if run_mem_encoder:
            out["maskmem_features"], out["maskmem_pos_enc"] = self._memory(masks)
        return out

    @staticmethod
    def _draw(point_inputs, prev):
        masks = torch.full((1, 1, S // 4, S // 4), -10.0) if prev is None else prev.clone()
        coords = (point_inputs["point_coords"][0] / 4).round().long().clamp(0, S // 4 - 1)
        labels = point_inputs["point_labels"][0].tolist()
        for (x, y), label in zip(coords.tolist(), labels):
            if label in (0, 1):
                masks[..., max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2] = 10.0 if label == 1 else -10.0
        if labels[:2] == [2, 3]:
            (x0, y0), (x1, y1) = coords[:2].tolist()
            masks[..., y0 : y1 + 1, x0 : x1 + 1] = 10.0
        return masks

    @staticmethod
    def _remembered(frame_idx, output_dict, reverse):
        """The mask of the previous frame in tracking order, else of the nearest conditioning frame."""
        prev = output_dict["non_cond_frame_outputs"].get(frame_idx + (1 if reverse else -1))
        if prev is None:
            cond = output_dict["cond_frame_outputs"]
            prev = cond[min(cond, key=lambda t: abs(t - frame_idx))]
        assert prev["maskmem_features"] is not None, "a remembered frame must have been encoded into memory"
        return prev["pred_masks"].clone()

    @staticmethod
    def _memory(masks):
        return masks.mean().reshape(1, 1, 1).expand(1, 4, 8).clone(), [torch.zeros(1, 4, 8)]

    def _encode_new_memory(self, current_vision_feats, feat_sizes, pred_masks_high_res, object_score_logits,
                           is_mask_from_pts):  # fmt: skip
        assert pred_masks_high_res.shape == (1, 1, S, S)
        self.encoded.append(dict(from_points=is_mask_from_pts))
        return self._memory(pred_masks_high_res)

    def _apply_non_overlapping_constraints(self, masks):
        keep = masks.argmax(0, keepdim=True) == torch.arange(masks.shape[0])[:, None, None, None]
        return torch.where(keep, masks, masks.clamp(max=-10.0))


def _write_frames(folder: Path, n: int) -> Path:
    folder.mkdir()
    for i in range(n):
        img = np.full((H, W, 3), 30 + 10 * i, np.uint8)
        Image.fromarray(img).save(folder / f"{i:05d}.png")
    return folder


@pytest.fixture
def video(tmp_path):
    return _write_frames(tmp_path / "video", 8)


@pytest.fixture
def model():
    return TrackingStandIn().eval()


def _pixel(masks, obj, x, y):
    return masks[obj, 0, y, x].item()


# --- state and prompts ---


def test_init_state_reads_the_video_lazily_and_warms_up_frame_0(video, model):
    predictor = EdgeTamVideoPredictor(model)
    state = predictor.init_state(str(video))
    assert (state.num_frames, state.video_height, state.video_width) == (8, H, W)
    assert isinstance(state.frames, FrameFolder) and len(state.frames._cache) == 1
    assert model.images == 1 and state.cached_features[0] == 0
    assert state.obj_ids == []


def test_init_state_accepts_frames_at_the_model_size_only(video, model):
    predictor = EdgeTamVideoPredictor(model)
    assert predictor.init_state(FrameFolder(video, S)).num_frames == 8
    with pytest.raises(ValueError, match="resized to 32 px but the model takes 64 px"):
        predictor.init_state(FrameFolder(video, 32))


def test_click_in_video_pixels_is_scaled_to_the_model(video, model):
    predictor = EdgeTamVideoPredictor(model, fill_hole_area=0)
    state = predictor.init_state(video)
    frame_idx, obj_ids, masks = predictor.add_new_points_or_box(state, 2, 7, points=[[20, 12]], labels=[1])
    assert (frame_idx, obj_ids, masks.shape) == (2, [7], (1, 1, H, W))
    assert torch.allclose(model.calls[-1]["points"], torch.tensor([[[20 / W * S, 12 / H * S]]]))
    assert model.calls[-1]["init"] and not model.calls[-1]["mem"]  # memory is encoded when propagation starts
    assert _pixel(masks, 0, 20, 12) > 0 and _pixel(masks, 0, 2, 2) < 0
    predictor.add_new_points_or_box(state, 2, 7, points=[[0.5, 0.5]], labels=[1], normalize_coords=False)
    assert torch.allclose(model.calls[-1]["points"], torch.tensor([[[S / 2, S / 2]]]))


def test_clicks_add_up_or_replace(video, model):
    predictor = EdgeTamVideoPredictor(model)
    state = predictor.init_state(video)
    predictor.add_new_points_or_box(state, 0, 1, points=[[5, 5]], labels=[1])
    predictor.add_new_points_or_box(state, 0, 1, points=[[30, 20]], labels=[0], clear_old_points=False)
    assert state.objects[1].point_inputs[0]["point_labels"].tolist() == [[1, 0]]
    assert model.calls[-1]["prev"] is not None  # the previous mask logits go with the new click
    predictor.add_new_points_or_box(state, 0, 1, points=[[30, 20]], labels=[1])
    assert state.objects[1].point_inputs[0]["point_labels"].tolist() == [[1]]


def test_box_comes_first_as_corners_2_and_3(video, model):
    predictor = EdgeTamVideoPredictor(model, fill_hole_area=0)
    state = predictor.init_state(video)
    _, _, masks = predictor.add_new_points_or_box(state, 0, 1, points=[[1, 1]], labels=[0], box=[10, 6, 30, 18])
    assert state.objects[1].point_inputs[0]["point_labels"].tolist() == [[2, 3, 0]]
    assert _pixel(masks, 0, 20, 12) > 0 and _pixel(masks, 0, 38, 22) < 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(points=[[1, 1]]), "together"),
        (dict(labels=[1]), "together"),
        (dict(), "points with labels, or a box"),
        (dict(points=[[1, 1], [2, 2]], labels=[1]), "2 points but 1 labels"),
        (dict(points=[1, 2, 3], labels=[1]), r"\(N, 2\)"),
        (dict(box=[1, 2, 3]), r"\(x0, y0, x1, y1\)"),
        (dict(box=[1, 2, 3, 4], clear_old_points=False), "clear_old_points=True"),
    ],
)
def test_bad_prompts(video, model, kwargs, match):
    predictor = EdgeTamVideoPredictor(model)
    state = predictor.init_state(video)
    with pytest.raises(ValueError, match=match):
        predictor.add_new_points_or_box(state, 0, 1, **kwargs)


@pytest.mark.parametrize("frame_idx", [-1, 8, 1.5])
def test_bad_frame_index(video, model, frame_idx):
    predictor = EdgeTamVideoPredictor(model)
    state = predictor.init_state(video)
    with pytest.raises(ValueError, match=r"frame_idx must be an int in \[0, 7\]"):
        predictor.add_new_points_or_box(state, frame_idx, 1, points=[[1, 1]], labels=[1])


def test_add_new_mask_resizes_to_the_model(video, model):
    predictor = EdgeTamVideoPredictor(model, fill_hole_area=0)
    state = predictor.init_state(video)
    mask = np.zeros((H, W), bool)
    mask[:, : W // 2] = True
    _, _, masks = predictor.add_new_mask(state, 1, 3, mask)
    assert model.calls[-1]["mask"] and model.calls[-1]["init"]
    assert state.objects[3].mask_inputs[1].shape == (1, 1, S, S)
    assert _pixel(masks, 0, 5, 12) > 0 and _pixel(masks, 0, 35, 12) < 0
    with pytest.raises(ValueError, match="2-D"):
        predictor.add_new_mask(state, 1, 3, np.zeros((1, H, W)))


# --- propagation ---


def test_propagate_tracks_from_the_first_clicked_frame(video, model):
    predictor = EdgeTamVideoPredictor(model, fill_hole_area=0)
    state = predictor.init_state(video)
    predictor.add_new_points_or_box(state, 2, 1, points=[[20, 12]], labels=[1])
    outputs = list(predictor.propagate_in_video(state))
    assert [f for f, _, _ in outputs] == list(range(2, 8))
    assert all(ids == [1] and m.shape == (1, 1, H, W) and _pixel(m, 0, 20, 12) > 0 for _, ids, m in outputs)
    assert model.encoded == [dict(from_points=True)]  # the clicked frame, encoded as propagation starts
    tracked = [c for c in model.calls if c["points"] is None]
    assert [c["frame"] for c in tracked] == [3, 4, 5, 6, 7]
    assert all(c["cond"] == [2] and not c["init"] and c["mem"] for c in tracked)
    assert tracked[-1]["non_cond"] == [3, 4, 5, 6]  # the model picks its recent memories from these
    assert state.objects[1].frames_tracked == {f: False for f in range(2, 8)}


def test_propagate_range_and_reverse(video, model):
    predictor = EdgeTamVideoPredictor(model)
    state = predictor.init_state(video)
    predictor.add_new_points_or_box(state, 5, 1, points=[[20, 12]], labels=[1])
    assert [f for f, _, _ in predictor.propagate_in_video(state, start_frame_idx=5, max_frame_num_to_track=1)] == [5, 6]
    assert [f for f, _, _ in predictor.propagate_in_video(state, reverse=True)] == [5, 4, 3, 2, 1, 0]
    reverse_calls = [c for c in model.calls if c["points"] is None and c["frame"] < 5]
    assert all(c["reverse"] for c in reverse_calls) and reverse_calls[0]["non_cond"] == [6]
    # as in SAM 2, a reverse run from frame 0 has nothing to do
    assert list(predictor.propagate_in_video(state, start_frame_idx=0, reverse=True)) == []
    assert state.objects[1].frames_tracked[3] is True and state.objects[1].frames_tracked[6] is False
    with pytest.raises(ValueError, match="max_frame_num_to_track"):
        list(predictor.propagate_in_video(state, max_frame_num_to_track=-1))


def test_propagate_without_prompts(video, model):
    predictor = EdgeTamVideoPredictor(model)
    state = predictor.init_state(video)
    with pytest.raises(RuntimeError, match="no object to track"):
        next(predictor.propagate_in_video(state))


def test_two_objects_added_on_different_frames_keep_their_tracks(video, model):
    predictor = EdgeTamVideoPredictor(model, fill_hole_area=0)
    state = predictor.init_state(video)
    predictor.add_new_points_or_box(state, 0, "a", points=[[6, 6]], labels=[1])
    _, ids, masks = predictor.add_new_points_or_box(state, 3, "b", points=[[33, 18]], labels=[1])
    assert ids == ["a", "b"] and masks[0].max() == NO_OBJ_SCORE  # "a" has no output on frame 3 yet
    outputs = {f: m for f, _, m in predictor.propagate_in_video(state)}
    assert sorted(outputs) == list(range(8))
    for f, m in outputs.items():
        assert m.shape == (2, 1, H, W)
        assert _pixel(m, 0, 6, 6) > 0 and _pixel(m, 0, 33, 18) < 0, f  # "a" on every frame, frame 3 included
        assert _pixel(m, 1, 33, 18) > 0 and _pixel(m, 1, 6, 6) < 0, f  # "b" from its own conditioning frame
    b_calls = [c for c in model.calls if c["points"] is None and c["cond"] == [3]]
    assert [c["frame"] for c in b_calls] == [0, 1, 2, 4, 5, 6, 7]  # each object's step sees its own memory only
    assert b_calls[0]["non_cond"] == [] and b_calls[3]["non_cond"] == [0, 1, 2]  # "a"'s frame-0 output is not there


def test_object_added_after_tracking(video, model):
    predictor = EdgeTamVideoPredictor(model, fill_hole_area=0)
    state = predictor.init_state(video)
    predictor.add_new_points_or_box(state, 0, 1, points=[[6, 6]], labels=[1])
    list(predictor.propagate_in_video(state))
    _, ids, masks = predictor.add_new_points_or_box(state, 4, 2, points=[[33, 18]], labels=[1])
    assert ids == [1, 2] and _pixel(masks, 0, 6, 6) > 0 and _pixel(masks, 1, 33, 18) > 0
    assert model.calls[-1]["init"]  # a new object's first click is a conditioning frame
    last = list(predictor.propagate_in_video(state, start_frame_idx=4))[-1][2]
    assert _pixel(last, 0, 6, 6) > 0 and _pixel(last, 1, 33, 18) > 0


def test_click_corrects_a_tracked_frame(video, model):
    predictor = EdgeTamVideoPredictor(model, fill_hole_area=0)
    state = predictor.init_state(video)
    predictor.add_new_points_or_box(state, 0, 1, points=[[6, 6]], labels=[1])
    list(predictor.propagate_in_video(state))
    _, _, masks = predictor.add_new_points_or_box(state, 4, 1, points=[[33, 18]], labels=[1])
    correction = model.calls[-1]
    assert not correction["init"] and correction["prev"] is not None  # fed with the tracked mask logits
    assert correction["cond"] == [0] and 4 in correction["non_cond"]
    assert _pixel(masks, 0, 6, 6) > 0 and _pixel(masks, 0, 33, 18) > 0
    n_calls = len(model.calls)
    outputs = {f: m for f, _, m in predictor.propagate_in_video(state, start_frame_idx=4)}
    assert [c["frame"] for c in model.calls[n_calls:]] == [5, 6, 7]  # the corrected frame keeps its output
    assert all(_pixel(m, 0, 33, 18) > 0 for m in outputs.values())  # and the track follows the correction
    track_outputs = state.objects[1].outputs
    assert 4 in track_outputs["non_cond_frame_outputs"] and track_outputs["cond_frame_outputs"].keys() == {0}


def test_correction_as_conditioning_frame(video, model):
    predictor = EdgeTamVideoPredictor(model, add_all_frames_to_correct_as_cond=True)
    state = predictor.init_state(video)
    predictor.add_new_points_or_box(state, 0, 1, points=[[6, 6]], labels=[1])
    list(predictor.propagate_in_video(state))
    predictor.add_new_points_or_box(state, 4, 1, points=[[33, 18]], labels=[1])
    list(predictor.propagate_in_video(state))
    outputs = state.objects[1].outputs
    assert sorted(outputs["cond_frame_outputs"]) == [0, 4] and 4 not in outputs["non_cond_frame_outputs"]


def test_holes_are_filled_up_to_fill_hole_area(video, model):
    mask = np.ones((H, W), bool)
    mask[9:15, 15:25] = False  # a hole of about 4 x 4 cells in the 16 x 16 mask
    for area, filled in [(0, False), (8, False), (16, True)]:
        predictor = EdgeTamVideoPredictor(TrackingStandIn(), fill_hole_area=area)
        state = predictor.init_state(video)
        _, _, masks = predictor.add_new_mask(state, 0, 1, mask)
        assert (_pixel(masks, 0, 20, 12) > 0) == filled, area
    with pytest.raises(ValueError, match="fill_hole_area"):
        EdgeTamVideoPredictor(model, fill_hole_area=-1)


def test_non_overlapping_masks(video, model):
    for non_overlap in (False, True):
        predictor = EdgeTamVideoPredictor(TrackingStandIn(), non_overlap_masks=non_overlap)
        state = predictor.init_state(video)
        predictor.add_new_points_or_box(state, 0, 1, box=[0, 0, 30, 20])
        _, _, masks = predictor.add_new_points_or_box(state, 0, 2, box=[10, 6, 39, 23])
        both = ((masks[0] > 0) & (masks[1] > 0)).any().item()
        assert both != non_overlap


# --- removing prompts and objects ---


def test_remove_object(video, model):
    predictor = EdgeTamVideoPredictor(model, fill_hole_area=0)
    state = predictor.init_state(video)
    predictor.add_new_points_or_box(state, 0, 1, points=[[6, 6]], labels=[1])
    predictor.add_new_points_or_box(state, 2, 2, points=[[33, 18]], labels=[1])
    predictor.add_new_points_or_box(state, 5, 2, points=[[30, 18]], labels=[1])
    ids, updated = predictor.remove_object(state, 2)
    assert ids == [1] and [f for f, _ in updated] == [2, 5]
    assert all(m.shape == (1, 1, H, W) for _, m in updated)
    outputs = list(predictor.propagate_in_video(state))
    assert all(ids == [1] and m.shape[0] == 1 for _, ids, m in outputs)
    assert predictor.remove_object(state, 99) == ([1], [])
    with pytest.raises(ValueError, match="no such object"):
        predictor.remove_object(state, 99, strict=True)
    assert predictor.remove_object(state, 1) == ([], [])
    with pytest.raises(RuntimeError, match="no object to track"):
        next(predictor.propagate_in_video(state))


def test_reset_state(video, model):
    predictor = EdgeTamVideoPredictor(model)
    state = predictor.init_state(video)
    predictor.add_new_points_or_box(state, 0, 1, points=[[6, 6]], labels=[1])
    list(predictor.propagate_in_video(state))
    predictor.reset_state(state)
    assert state.obj_ids == [] and state.num_frames == 8
    _, _, masks = predictor.add_new_points_or_box(state, 3, 1, points=[[33, 18]], labels=[1])
    assert model.calls[-1]["init"] and model.calls[-1]["non_cond"] == []  # a fresh start on frame 3
    assert [f for f, _, _ in predictor.propagate_in_video(state)] == [3, 4, 5, 6, 7]


def test_clear_all_prompts_in_frame(video, model):
    predictor = EdgeTamVideoPredictor(model, fill_hole_area=0)
    state = predictor.init_state(video)
    predictor.add_new_points_or_box(state, 0, 1, points=[[6, 6]], labels=[1])
    predictor.add_new_points_or_box(state, 0, 2, points=[[33, 18]], labels=[1])
    predictor.add_new_points_or_box(state, 3, 1, points=[[20, 12]], labels=[1])
    list(predictor.propagate_in_video(state))
    frame_idx, ids, masks = predictor.clear_all_prompts_in_frame(state, 3, 1)
    assert (frame_idx, ids) == (3, [1, 2]) and 3 not in state.objects[1].point_inputs
    assert 3 in state.objects[1].outputs["non_cond_frame_outputs"]  # no longer a conditioning frame
    assert 3 not in state.objects[1].frames_tracked
    predictor.clear_all_prompts_in_frame(state, 0, 2, need_output=False)  # object 2's only prompt
    assert state.objects[2].outputs["non_cond_frame_outputs"] == {}
    with pytest.raises(RuntimeError, match="object 2 has no points, box or mask"):
        next(predictor.propagate_in_video(state))
    with pytest.raises(ValueError, match="no object with id 5"):
        predictor.clear_all_prompts_in_frame(state, 0, 5)


# --- video files and the builder ---


def test_tracks_a_video_file(tmp_path, model):
    av = pytest.importorskip("av")
    path = tmp_path / "v.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for i in range(4):
            frame = av.VideoFrame.from_ndarray(np.full((H, W, 3), 40 * i, np.uint8), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    predictor = EdgeTamVideoPredictor(model)
    state = predictor.init_state(path)
    predictor.add_new_points_or_box(state, 0, 1, points=[[20, 12]], labels=[1])
    assert [m.shape for _, _, m in predictor.propagate_in_video(state)] == [(1, 1, H, W)] * 4


def test_tracks_with_edgetam(tmp_path):
    """The real EdgeTAM (random weights, 256 px input) through the predictor: two objects on different frames."""
    from repvit.sam.sam2.build import build_edgetam
    from repvit.sam.sam2.config import EdgeTamConfig

    torch.manual_seed(0)
    model = build_edgetam(config=EdgeTamConfig(image_size=256, binarize_mask_from_pts_for_mem_enc=True))
    predictor = EdgeTamVideoPredictor(model)
    state = predictor.init_state(_write_frames(tmp_path / "video", 3))
    predictor.add_new_points_or_box(state, 0, 1, points=[[6, 6]], labels=[1])
    predictor.add_new_points_or_box(state, 1, 2, box=[20, 10, 38, 22])
    outputs = list(predictor.propagate_in_video(state))
    assert [(f, ids, tuple(m.shape)) for f, ids, m in outputs] == [(f, [1, 2], (2, 1, H, W)) for f in range(3)]
    assert all(torch.isfinite(m).all() for _, _, m in outputs)
    for track, cond in zip(state.objects.values(), ([0], [1])):
        assert sorted(track.outputs["cond_frame_outputs"]) == cond
        memories = {**track.outputs["cond_frame_outputs"], **track.outputs["non_cond_frame_outputs"]}
        assert sorted(memories) == [0, 1, 2]
        assert all(out["maskmem_features"].shape == (1, 512, 64) for out in memories.values())


def test_build_edgetam_video_predictor_uses_the_authors_video_settings():
    predictor = build_edgetam_video_predictor(fill_hole_area=0)
    assert isinstance(predictor, EdgeTamVideoPredictor) and predictor.fill_hole_area == 0
    assert predictor.model.binarize_mask_from_pts_for_mem_enc and not predictor.model.training
    assert build_edgetam_video_predictor().fill_hole_area == 8
