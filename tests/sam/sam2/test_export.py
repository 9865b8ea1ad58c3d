"""EdgeTAM's ONNX graphs against the PyTorch model in ONNX Runtime: the image path (encoder, prompt decoder) and the
video path (memory encoder with the perceiver, memory attention over a fixed-size bank with validity flags).

The default tests use a 256 px EdgeTAM (the same graphs on a 16x16 embedding) with random weights perturbed so that
mistakes show (see :func:`perturb_edgetam`); the full 1024 px export is a slow test.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from repvit.deploy.parity import ParityError
from repvit.sam.sam2 import EdgeTamConfig, EdgeTamImagePredictor, build_edgetam
from repvit.sam.sam2.export import (
    GRAPHS,
    MANIFEST_NAME,
    MemoryAttentionGraph,
    MemoryEncoderGraph,
    export_edgetam_onnx,
    graph_examples,
)
from repvit.sam.sam2.image_predictor import preprocess_image
from repvit.sam.sam2.onnx_tracker import select_mask
from tests.helpers import cpu_threads
from tests.sam.sam2._helpers import SMALL, sample_image, small_edgetam

pytest.importorskip("onnxruntime", reason="ONNX export checks need onnxruntime: pip install 'repvit-pytorch[onnx]'")

def rel_err(a, b) -> float:
    a, b = (x.detach() if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x)) for x in (a, b))
    a, b = a.float(), b.float()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.set_num_threads(cpu_threads())
    model = small_edgetam()
    out = tmp_path_factory.mktemp("edgetam_onnx")
    result = export_edgetam_onnx(model, out)
    return model, out, result


def session(out, name):
    from repvit.deploy.onnx_export import make_session

    return make_session(out / f"{name}.onnx", threads=cpu_threads(), level="basic")


def test_export_writes_graphs_and_manifest_within_parity(exported):
    model, out, result = exported
    assert result["parity"]["max_rel_diff"] <= 1e-4
    assert len(result["parity"]["checked"]) == 18  # 4 + 2 x 4 + 2 x 2 + 2 outputs checked
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["memory_bank"] == {
        "num_memory_slots": 7, "tokens_per_memory": 512, "mem_dim": 64, "num_obj_ptr_slots": 16,
        "obj_ptr_dim": 256, "num_maskmem": 7, "max_obj_ptrs_in_encoder": 16,
    }
    assert manifest["image_size"] == SMALL and manifest["fused"] is True
    for name, (inputs, outputs) in GRAPHS.items():
        entry = manifest["graphs"][name]
        assert (out / entry["file"]).is_file()
        assert [i["name"] for i in entry["inputs"]] == list(inputs)
        assert [o["name"] for o in entry["outputs"]] == list(outputs)
        sess = session(out, name)
        assert [i.name for i in sess.get_inputs()] == list(inputs)
    shapes = {o["name"]: o["shape"] for o in manifest["graphs"]["memory_encoder"]["outputs"]}
    assert shapes == {"maskmem_features": [1, 512, 64], "maskmem_pos_enc": [1, 512, 64]}
    points = manifest["graphs"]["prompt_decoder"]["inputs"][3]
    assert points["shape"] == [1, "num_points", 2]
    bank = {i["name"]: i for i in manifest["graphs"]["memory_attention"]["inputs"]}
    assert bank["memory"]["shape"] == [7, 512, 64] and bank["memory_valid"]["dtype"] == "bool"
    assert bank["memory_tpos"]["dtype"] == "int64" and bank["obj_ptrs"]["shape"] == [16, 256]


def test_export_leaves_model_unfused_and_rejects_other_models(exported, tmp_path):
    from repvit.sam.sam2 import is_fused_edgetam

    model, _, _ = exported
    assert not is_fused_edgetam(model)
    with pytest.raises(TypeError, match="EdgeTAM"):
        export_edgetam_onnx(torch.nn.Linear(2, 2), tmp_path)
    with pytest.raises(ValueError, match="at least one slot"):
        export_edgetam_onnx(model, tmp_path, num_memory_slots=0)


def test_image_path_matches_image_predictor(exported):
    """Encoder + prompt decoder in ONNX Runtime, then select_mask, give EdgeTamImagePredictor's masks and IoU."""
    model, out, _ = exported
    image = sample_image(2)
    predictor = EdgeTamImagePredictor(model)
    predictor.set_image(image)
    enc = dict(zip(GRAPHS["image_encoder"][1], session(out, "image_encoder").run(
        None, {"image": preprocess_image(image, SMALL).numpy()})))
    torch_emb = predictor.get_image_embedding()
    assert rel_err(enc["image_embeddings"], torch_emb) <= 1e-4
    dec = session(out, "prompt_decoder")
    settings = json.loads((out / MANIFEST_NAME).read_text())["mask_decoder"]
    side = 4 * torch_emb.shape[-1]
    for points, labels, multimask in (([[120, 90]], [1], True), ([[120, 90], [300, 200], [50, 250]], [1, 0, 1], False)):
        _, iou, low_res = predictor.predict(np.array(points), np.array(labels), multimask_output=multimask)
        coords = np.array(points, np.float32)[None] * np.array([SMALL / 400, SMALL / 300], np.float32)
        masks, ious, score, ptr = dec.run(None, {
            "image_embeddings": enc["image_embeddings"], "high_res_feat0": enc["high_res_feat0"],
            "high_res_feat1": enc["high_res_feat1"], "point_coords": coords,
            "point_labels": np.array(labels, np.float32)[None], "mask_input": np.zeros((1, 1, side, side), np.float32),
            "has_mask_input": np.zeros(1, np.float32)})
        if multimask:
            got_masks, got_iou = masks[0, 1:], ious[0, 1:]
        else:
            got_masks, got_iou = (x[0] for x in select_mask(masks, ious, np.ones((1, 1)), ptr, False, settings)[:2])
        assert rel_err(np.clip(got_masks, -32, 32), low_res) <= 1e-4
        assert rel_err(got_iou, iou) <= 1e-4


def test_prompt_decoder_graph_gives_sam_heads_outputs(exported):
    """The decoder graph plus select_mask equal EdgeTAM's _forward_sam_heads, with and without a mask input."""
    model, out, _ = exported
    settings = json.loads((out / MANIFEST_NAME).read_text())["mask_decoder"]
    feats, f0, f1, *_ = graph_examples(model, 7, 16, seed=3)["prompt_decoder"]
    dec = session(out, "prompt_decoder")
    mask_in = torch.randn(1, 1, 4 * feats.shape[-1], 4 * feats.shape[-1]) * 3
    for coords, labels, mask, multimask in (
        (torch.zeros(1, 1, 2), -torch.ones(1, 1), None, True),  # a tracked frame: one padding point
        (torch.tensor([[[100.0, 80.0], [30.0, 200.0]]]), torch.tensor([[1.0, 0.0]]), mask_in, False),
    ):
        with torch.no_grad():
            ref = model._forward_sam_heads(feats, {"point_coords": coords, "point_labels": labels}, mask, [f0, f1],
                                           multimask_output=multimask)
        masks, ious, score, ptr = dec.run(None, {
            "image_embeddings": feats.numpy(), "high_res_feat0": f0.numpy(), "high_res_feat1": f1.numpy(),
            "point_coords": coords.numpy(), "point_labels": labels.numpy(),
            "mask_input": (mask if mask is not None else torch.zeros_like(mask_in)).numpy(),
            "has_mask_input": np.array([float(mask is not None)], np.float32)})
        low_res, iou, obj_ptr = select_mask(masks, ious, score, ptr, multimask, settings)
        assert rel_err(low_res, ref[3]) <= 1e-4
        assert rel_err(obj_ptr, ref[5]) <= 1e-4
        assert rel_err(score, ref[6]) <= 1e-4


def test_memory_encoder_graph_equals_model(exported):
    """Low-res logits resized and encoded in the graph equal EdgeTAM's _encode_new_memory of the upsampled
    logits (sigmoid, or binarized as for clicked frames)."""
    model, out, _ = exported
    feats, logits, _ = graph_examples(model, 7, 16, seed=4)["memory_encoder"]
    sess = session(out, "memory_encoder")
    graph = MemoryEncoderGraph(model)
    high_res = F.interpolate(logits, size=(SMALL, SMALL), mode="bilinear", align_corners=False)
    for binarize in (False, True):
        with torch.no_grad():
            ref, ref_pos = model._encode_new_memory([feats.flatten(2).permute(2, 0, 1)], [tuple(feats.shape[-2:])],
                                                    high_res, None, is_mask_from_pts=binarize)
            mine = graph(feats, logits, torch.tensor([float(binarize)]))
        got = sess.run(None, {"vision_features": feats.numpy(), "mask_logits": logits.numpy(),
                              "binarize": np.array([float(binarize)], np.float32)})
        assert rel_err(mine[0], ref) <= 1e-5 and rel_err(got[0], ref) <= 1e-4
        assert rel_err(got[1], ref_pos[0]) <= 1e-4
    assert rel_err(mine[0], graph(feats, logits, torch.zeros(1))[0]) > 1e-3  # binarizing changes the memory


def _valid_bank(model, bank):
    """The memory attention's inputs as EdgeTAM's _prepare_memory_conditioned_features builds them: the valid
    memories (with temporal encodings) and object pointers, concatenated."""
    memory, memory_pos, tpos, valid, ptrs, ptr_valid = bank
    mems = [memory[i][:, None] for i in range(len(valid)) if valid[i]]
    encs = [(memory_pos[i] + model.maskmem_tpos_enc[model.num_maskmem - 1 - tpos[i]][0])[:, None]
            for i in range(len(valid)) if valid[i]]
    ptr_tokens = ptrs[ptr_valid].reshape(-1, 1, 4, 64).permute(0, 2, 1, 3).flatten(0, 1)
    return torch.cat(mems + [ptr_tokens]), torch.cat(encs + [torch.zeros_like(ptr_tokens)]), len(mems), len(ptr_tokens)


def test_memory_attention_graph_equals_attention_over_valid_slots(exported):
    model, out, _ = exported
    feats, *bank = graph_examples(model, 7, 16, seed=5)["memory_attention"]
    mem, enc, n_mem, n_ptr = _valid_bank(model, bank)
    curr = feats.flatten(2).permute(2, 0, 1)
    pos = model.image_encoder.neck.position_encoding(feats).flatten(2).permute(2, 0, 1)
    with torch.no_grad():
        ref = model.memory_attention(curr, mem, pos, enc, num_obj_ptr_tokens=n_ptr, num_spatial_mem=n_mem)
        ref = ref.permute(1, 2, 0).reshape(feats.shape)
        mine = MemoryAttentionGraph(model)(feats, *bank)
    names = GRAPHS["memory_attention"][0]
    got = session(out, "memory_attention").run(None, {n: t.numpy() for n, t in zip(names, (feats, *bank))})[0]
    assert rel_err(mine, ref) <= 1e-5
    assert rel_err(got, ref) <= 1e-4
    every_slot = [*bank[:3], torch.ones_like(bank[3]), *bank[4:]]  # the masked slots did matter
    with torch.no_grad():
        assert rel_err(MemoryAttentionGraph(model)(feats, *every_slot), ref) > 1e-3
    bank[0] = bank[0].masked_fill(~bank[3].view(-1, 1, 1), float("nan"))  # garbage in the empty slots is ignored
    bank[4] = bank[4].masked_fill(~bank[5].view(-1, 1), float("nan"))
    got = session(out, "memory_attention").run(None, {n: t.numpy() for n, t in zip(names, (feats, *bank))})[0]
    assert rel_err(got, ref) <= 1e-4


@pytest.mark.slow
def test_full_size_export_parity(tmp_path):
    """The published model's size (1024 px, 64x64 embedding): every graph within 1e-4 of PyTorch."""
    torch.set_num_threads(cpu_threads())
    model = small_edgetam(1024)
    result = export_edgetam_onnx(model, tmp_path)
    assert result["parity"]["max_rel_diff"] <= 1e-4
    assert result["graphs"]["image_encoder"]["outputs"][1]["shape"] == [1, 256, 64, 64]


class _NoTemporalEncoding(MemoryAttentionGraph):
    """A wrong memory attention: the temporal encodings of the slots in reverse order."""

    def forward(self, vision_features, memory, memory_pos, memory_tpos, *rest):
        return super().forward(vision_features, memory, memory_pos, memory_tpos.flip(0), *rest)


def test_parity_check_catches_a_wrong_graph(exported):
    from repvit.deploy.onnx_export import export_onnx_bytes
    from repvit.deploy.parity import ParityReport
    from repvit.sam.sam2.export import _check_examples, _check_graph

    model, _, _ = exported
    examples = _check_examples(model, "memory_attention", 7, 16)
    inputs, outputs = GRAPHS["memory_attention"]
    wrong = export_onnx_bytes(_NoTemporalEncoding(model), examples[0], dynamic_batch=False, input_names=inputs,
                              output_names=outputs)
    with pytest.raises(ParityError, match="pix_feat"):
        _check_graph("memory_attention", MemoryAttentionGraph(model), wrong, examples, 1e-4, ParityReport())


@pytest.mark.slow
def test_image_encoder_coreml_package_spec(tmp_path):
    pytest.importorskip("coremltools", reason="Core ML export needs coremltools: pip install 'repvit-pytorch[coreml]'")
    from repvit.sam.sam2.export import export_edgetam_image_encoder_coreml

    model = build_edgetam(config=EdgeTamConfig(image_size=SMALL))
    result = export_edgetam_image_encoder_coreml(model, tmp_path / "encoder.mlpackage")
    spec = result["spec"]
    assert spec["is_ml_program"]
    (inp,) = spec["inputs"]
    assert inp["name"] == "input" and inp["kind"] == "multiArrayType" and inp["shape"] == [1, 3, SMALL, SMALL]
    side = SMALL // 16
    assert {o["name"]: o["shape"] for o in spec["outputs"]} == {
        "vision_features": [1, 256, side, side], "image_embeddings": [1, 256, side, side],
        "high_res_feat0": [1, 32, 4 * side, 4 * side], "high_res_feat1": [1, 64, 2 * side, 2 * side],
    }
    assert spec["metadata"]["model"] == "edgetam" and spec["metadata"]["fused"] == "True"
