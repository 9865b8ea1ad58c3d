"""EdgeTAM in repvit: the authors' checkpoint layout, fusing, RoPE in real arithmetic, the tracking step and the
image predictor.

``edgetam_authors_keys.json`` lists every key and shape of the state dict of the authors' EdgeTAM (their
``edgetam.yaml`` built with their code: ``SAM2Base`` with timm's ``repvit_m1`` trunk); it is data made from the
authors' model, not from ours. Forwards at 1024 px are the slow part, so the image predictor shares one embedded
image and the tracking tests feed random backbone features.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from repvit.io import CheckpointError
from repvit.sam.sam2 import (
    EdgeTAM,
    EdgeTamImagePredictor,
    build_edgetam,
    fuse_edgetam,
    is_fused_edgetam,
    read_edgetam_checkpoint,
    save_edgetam,
)
from repvit.sam.sam2.position_encoding import apply_rope, axial_rope
from tests.helpers import one_torch_thread, randomize_bn  # noqa: F401  (one_torch_thread: an autouse fixture)

AUTHORS_KEYS = json.loads((Path(__file__).parent / "edgetam_authors_keys.json").read_text())


@pytest.fixture(scope="module")
def model() -> EdgeTAM:
    torch.manual_seed(0)
    m = build_edgetam()
    with torch.no_grad():  # make objects "appear" so that masks and pointers are not the no-object constants
        m.sam_mask_decoder.pred_obj_score_head.layers[2].bias.fill_(8.0)
    return m


def _authors_state_dict(model: EdgeTAM, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under the authors' names and shapes (dtypes from our model, which the load checks)."""
    g = torch.Generator().manual_seed(seed)
    ours = model.state_dict()
    sd = {}
    for k, shape in AUTHORS_KEYS.items():
        t = ours[k]
        if t.is_floating_point():
            sd[k] = torch.randn(shape, generator=g)
            if k.endswith("running_var"):
                sd[k] = sd[k].abs() + 0.5
        else:
            sd[k] = torch.zeros(shape, dtype=t.dtype)
    return sd


def test_state_dict_has_the_authors_keys_and_shapes(model):
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert set(ours) == set(AUTHORS_KEYS)
    assert {k: v for k, v in ours.items() if v != AUTHORS_KEYS[k]} == {}


def test_authors_layout_loads_strictly_and_round_trips(model, tmp_path):
    sd = _authors_state_dict(model)
    path = tmp_path / "edgetam.pt"
    torch.save({"model": sd}, path)
    loaded = build_edgetam(path)
    got = loaded.state_dict()
    for k in ("image_encoder.trunk.body.stages_2.blocks.13.token_mixer.conv.c.weight", "spatial_perceiver.latents_2d",
              "memory_attention.layers.1.cross_attn_image.k_proj.weight", "maskmem_tpos_enc"):
        assert torch.equal(got[k], sd[k])
    again = save_edgetam(loaded, tmp_path / "again.pt")
    assert set(torch.load(again, weights_only=True)["model"]) == set(AUTHORS_KEYS)
    assert set(read_edgetam_checkpoint(sd)) == set(AUTHORS_KEYS)  # a bare state dict is accepted too


def test_wrong_files_give_clear_errors(model, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        build_edgetam(tmp_path / "missing.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="not an EdgeTAM checkpoint"):
        build_edgetam(tmp_path / "list.pt")
    sam_v1 = {"model": {"image_encoder.neck.0.weight": torch.zeros(1), "prompt_encoder.x": torch.zeros(1),
                        "mask_decoder.y": torch.zeros(1)}}
    with pytest.raises(CheckpointError, match="build_repvit_sam"):
        read_edgetam_checkpoint(sam_v1)
    sd = _authors_state_dict(model)
    sd["memory_encoder.out_proj.weight"] = torch.zeros(32, 256, 1, 1)
    with pytest.raises(CheckpointError, match="out_proj"):
        build_edgetam({"model": sd})
    del sd["memory_encoder.out_proj.weight"]
    with pytest.raises(CheckpointError, match="Missing key"):
        build_edgetam({"model": sd})


def test_fused_trunk_has_no_batchnorm_and_same_outputs(model):
    torch.manual_seed(1)
    unfused = build_edgetam()
    randomize_bn(unfused.image_encoder.trunk, seed=3)
    x = torch.randn(1, 3, 256, 256)  # the encoder is fully convolutional: a small input checks the fuse
    with torch.no_grad():
        ref = unfused.forward_image(x)
        fused = fuse_edgetam(unfused)
        out = fused.forward_image(x)
    assert is_fused_edgetam(fused) and not is_fused_edgetam(model)
    for a, b in zip(out["backbone_fpn"], ref["backbone_fpn"]):  # strides 4 and 8 through the folded projections
        assert a.shape == b.shape and (a - b).abs().max() <= 1e-4 * b.abs().max()
    assert [c.conv.out_channels for c in fused.image_encoder.neck.convs] == [256, 256, 64, 32]
    assert isinstance(fused.sam_mask_decoder.conv_s0, torch.nn.Identity)
    assert is_fused_edgetam(build_edgetam(fused=True))


def test_fused_checkpoint_loads_in_deploy_form(tmp_path):
    torch.manual_seed(2)
    fused = build_edgetam(fused=True)
    path = save_edgetam(fused, tmp_path / "fused.pt")
    loaded = build_edgetam(path)
    assert is_fused_edgetam(loaded)
    for k, v in fused.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_rope_in_real_arithmetic_equals_the_complex_product():
    cos, sin = axial_rope(64, 8, 4)
    x = torch.randn(2, 1, 32, 64)
    angles = torch.atan2(sin, cos)
    expected = torch.view_as_real(torch.view_as_complex(x.reshape(2, 1, 32, 32, 2)) * torch.polar(
        torch.ones_like(angles), angles)).flatten(3)
    assert torch.allclose(apply_rope(x, cos, sin), expected, atol=1e-5)
    # token i sits at (i mod 8, i // 8): x-angles grow along a row, y-angles down a column
    assert torch.allclose(angles[1, :16], angles[0, :16] + torch.atan2(sin[1, :16], cos[1, :16]))
    assert torch.equal(angles[8, :16], angles[0, :16]) and not torch.equal(angles[8, 16:], angles[0, 16:])


def test_memory_rope_rotates_only_the_2d_latents(model):
    cos, sin = model.memory_attention.memory_rope(num_spatial_mem=2, num_obj_ptr_tokens=8, like=torch.zeros(1))
    assert cos.shape == (2 * 512 + 8, 128)
    for start in (0, 512):
        assert torch.equal(cos[start : start + 256], torch.ones(256, 128))  # global latents
        grid_cos, _ = axial_rope(256, 16, 16)
        assert torch.equal(cos[start + 256 : start + 512], grid_cos)  # the 16 x 16 latents
    assert torch.equal(sin[-8:], torch.zeros(8, 128))  # object pointers


def test_memory_valid_mask_equals_leaving_the_memory_out(model):
    g = torch.Generator().manual_seed(5)
    curr, curr_pos = torch.randn(4096, 1, 256, generator=g), torch.randn(4096, 1, 256, generator=g)
    mem, mem_pos = torch.randn(2 * 512 + 4, 1, 64, generator=g), torch.randn(2 * 512 + 4, 1, 64, generator=g)
    keep = torch.cat([torch.arange(512), torch.arange(1024, 1028)])  # the first memory and the pointer tokens
    valid = torch.zeros(1, 2 * 512 + 4, dtype=torch.bool)
    valid[0, keep] = True
    attention = model.memory_attention
    with torch.no_grad():
        masked = attention(curr, mem, curr_pos, mem_pos, num_obj_ptr_tokens=4, num_spatial_mem=2, memory_valid=valid)
        dropped = attention(curr, mem[keep], curr_pos, mem_pos[keep], num_obj_ptr_tokens=4, num_spatial_mem=1)
        full = attention(curr, mem, curr_pos, mem_pos, num_obj_ptr_tokens=4, num_spatial_mem=2)
    assert torch.allclose(masked, dropped, atol=1e-5)
    assert not torch.allclose(full, dropped, atol=1e-3)
    with pytest.raises(ValueError, match="memory has"):
        attention(curr, mem, curr_pos, mem_pos, num_obj_ptr_tokens=0, num_spatial_mem=2)


@pytest.mark.parametrize("num_heads", [1, 2])
def test_split_cross_attention_equals_attending_to_the_whole_memory(num_heads, monkeypatch):
    """The eager split (rotated 2D latents at width 256, the other tokens at the memory's width 64) against plain
    attention over the whole memory, with weights large enough that attention is far from uniform."""
    from repvit.sam.sam2 import memory_attention as ma

    torch.manual_seed(3)
    attention = ma.MemoryAttention(num_heads=num_heads).eval()
    with torch.no_grad():
        for p in attention.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    g = torch.Generator().manual_seed(6)
    curr, curr_pos = torch.randn(1024, 2, 256, generator=g), torch.randn(1024, 2, 256, generator=g)
    mem, mem_pos = torch.randn(3 * 512 + 8, 2, 64, generator=g), torch.randn(3 * 512 + 8, 2, 64, generator=g)
    calls = []
    split = ma.split_cross_attention
    monkeypatch.setattr(ma, "split_cross_attention", lambda *a: calls.append(1) or split(*a))
    with torch.no_grad():
        fast = attention(curr, mem, curr_pos, mem_pos, num_obj_ptr_tokens=8, num_spatial_mem=3)
        assert len(calls) == 2  # one per layer
        monkeypatch.setattr(ma, "_HAS_CPU_FLASH_LSE", False)
        plain = attention(curr, mem, curr_pos, mem_pos, num_obj_ptr_tokens=8, num_spatial_mem=3)
    assert len(calls) == 2
    assert (fast - plain).norm() / plain.norm() < 1e-5
    # the weights make the memory matter: without the last memory the output moves far more than that
    with torch.no_grad():
        fewer = attention(curr, mem[:1024], curr_pos, mem_pos[:1024], num_obj_ptr_tokens=0, num_spatial_mem=2)
    assert (fewer - plain).norm() / plain.norm() > 1e-2


def _frame_features(seed: int, b: int = 1):
    g = torch.Generator().manual_seed(seed)
    sizes = [(256, 256), (128, 128), (64, 64)]
    feats = [torch.randn(h * w, b, c, generator=g) for (h, w), c in zip(sizes, (32, 64, 256))]
    pos = [torch.randn(h * w, b, c, generator=g) for (h, w), c in zip(sizes, (32, 64, 256))]
    return feats, pos, sizes


def test_track_step_click_then_memory(model):
    out_dict = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    click = {"point_coords": torch.tensor([[[500.0, 400.0]]]), "point_labels": torch.tensor([[1]], dtype=torch.int32)}
    with torch.no_grad():
        feats, pos, sizes = _frame_features(0)
        first = model.track_step(0, True, feats, pos, sizes, click, None, out_dict, num_frames=3)
        out_dict["cond_frame_outputs"][0] = first
        feats, pos, sizes = _frame_features(1)
        second = model.track_step(1, False, feats, pos, sizes, None, None, out_dict, num_frames=3)
        without = model.track_step(1, True, feats, pos, sizes, None, None, out_dict, num_frames=3)
    assert first["pred_masks"].shape == (1, 1, 256, 256)
    assert first["pred_masks_high_res"].shape == (1, 1, 1024, 1024)
    assert first["obj_ptr"].shape == (1, 256) and first["object_score_logits"].shape == (1, 1)
    assert first["maskmem_features"].shape == (1, 512, 64) and first["maskmem_pos_enc"][0].shape == (1, 512, 64)
    assert torch.equal(first["maskmem_pos_enc"][0][:, :256], torch.zeros(1, 256, 64))  # global latents
    # the memory changes the second frame's prediction
    assert not torch.allclose(second["pred_masks"], without["pred_masks"])


def test_track_step_mask_input_is_output(model):
    mask = torch.zeros(1, 1, 1024, 1024)
    mask[..., 256:512, 256:768] = 1
    feats, pos, sizes = _frame_features(2)
    with torch.no_grad():
        out = model.track_step(0, True, feats, pos, sizes, None, mask, {}, num_frames=1, run_mem_encoder=False)
    assert torch.equal(out["pred_masks_high_res"], mask * 20 - 10)
    assert out["object_score_logits"].item() == 10.0
    assert out["maskmem_features"] is None


def test_non_overlapping_constraints(model):
    masks = torch.tensor([[[[1.0, -2.0]]], [[[3.0, -1.0]]]])
    out = model._apply_non_overlapping_constraints(masks)
    assert out[:, 0, 0].tolist() == [[-10.0, -10.0], [3.0, -1.0]]


@pytest.fixture(scope="module")
def predictor(model):
    rng = np.random.default_rng(0)
    image = (rng.random((120, 160, 3)) * 255).astype(np.uint8)
    image[30:90, 40:120] = (230, 30, 30)
    p = EdgeTamImagePredictor(model)
    p.set_image(image)
    return p


def test_image_predictor_outputs(predictor):
    masks, iou, low = predictor.predict(point_coords=np.array([[80, 60]]), point_labels=np.array([1]))
    assert masks.shape == (3, 120, 160) and masks.dtype == bool
    assert iou.shape == (3,) and ((iou >= 0) & (iou <= 1)).all()
    assert low.shape == (3, 256, 256) and low.dtype == np.float32 and np.abs(low).max() <= 32
    logits, _, _ = predictor.predict(point_coords=np.array([[80, 60]]), point_labels=np.array([1]),
                                     return_logits=True)
    assert np.array_equal(logits > 0, masks)
    one, iou1, low1 = predictor.predict(box=np.array([40, 30, 120, 90]), multimask_output=False)
    assert one.shape == (1, 120, 160) and iou1.shape == (1,)
    again, _, _ = predictor.predict(point_coords=np.array([[80, 60]]), point_labels=np.array([1]),
                                    mask_input=low1, multimask_output=False)
    assert again.shape == (1, 120, 160)
    assert predictor.get_image_embedding().shape == (1, 256, 64, 64)


def test_image_predictor_rejects_bad_input(model, predictor):
    fresh = EdgeTamImagePredictor(model)
    with pytest.raises(RuntimeError, match="set_image"):
        fresh.predict(point_coords=np.array([[1, 1]]), point_labels=np.array([1]))
    with pytest.raises(ValueError, match="uint8"):
        fresh.set_image(np.zeros((8, 8, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        fresh.set_image(np.zeros((8, 8), dtype=np.uint8))
    with pytest.raises(TypeError, match="EdgeTAM"):
        EdgeTamImagePredictor(torch.nn.Linear(1, 1))
    with pytest.raises(ValueError, match="point_labels"):
        predictor.predict(point_coords=np.array([[1, 1]]))
    with pytest.raises(ValueError, match="point_coords must be"):
        predictor.predict(point_coords=np.array([[1, 1, 1]]), point_labels=np.array([1]))
    with pytest.raises(ValueError, match="mask_input"):
        predictor.predict(point_coords=np.array([[1, 1]]), point_labels=np.array([1]), mask_input=np.zeros((1, 8, 8)))
    with pytest.raises(ValueError, match="box"):
        predictor.predict(box=np.array([1, 2, 3]))


def test_memory_attention_exports_to_onnx(model, tmp_path):
    """RoPE in real arithmetic and the validity mask trace to ONNX; ONNX Runtime gives the same result."""
    pytest.importorskip("onnx", reason="onnx is in the export extra")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in the export extra")

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.attention = model.memory_attention

        def forward(self, curr, curr_pos, memory, memory_pos, valid):
            return self.attention(curr, memory, curr_pos, memory_pos, num_obj_ptr_tokens=4, num_spatial_mem=1,
                                  memory_valid=valid)

    g = torch.Generator().manual_seed(7)
    args = (torch.randn(256, 1, 256, generator=g), torch.randn(256, 1, 256, generator=g),
            torch.randn(516, 1, 64, generator=g), torch.randn(516, 1, 64, generator=g), torch.ones(1, 516, dtype=bool))
    args[4][0, 100:300] = False
    names = ["curr", "curr_pos", "memory", "memory_pos", "valid"]
    with torch.no_grad():
        expected = Wrapped()(*args).numpy()
        torch.onnx.export(Wrapped(), args, tmp_path / "ma.onnx", input_names=names, opset_version=17, dynamo=False)
    session = ort.InferenceSession(str(tmp_path / "ma.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {n: a.numpy() for n, a in zip(names, args)})[0]
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()
