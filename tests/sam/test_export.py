"""Exports: encoder ONNX (fused, optionally with SAM's preprocessing in the graph), SAM's ONNX decoder against Sam's
own predictions, and the Core ML encoder checked by its spec."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from repvit.cli.main import main
from repvit.sam import save_repvit_sam
from tests.helpers import rel_err

ort = pytest.importorskip("onnxruntime", reason="ONNX export needs: pip install 'repvit-pytorch[onnx]'")


@pytest.fixture(scope="module")
def exported(small_sam, tmp_path_factory):
    """``repvit sam export`` of the small model (default: no preprocessing in the encoder graph)."""
    d = tmp_path_factory.mktemp("sam_export")
    ckpt = save_repvit_sam(small_sam, d / "sam.safetensors")
    assert main(["sam", "export", "--checkpoint", str(ckpt), "--output-dir", str(d / "onnx")]) == 0
    return d / "onnx"


def _session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def test_encoder_onnx_matches_pytorch(exported, small_sam):
    sess = _session(exported / "encoder.onnx")
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
    assert (inp.name, inp.shape, out.name) == ("image", [1, 3, 256, 256], "image_embeddings")
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ref = small_sam.image_encoder(x)  # the unfused model: the export is fused, the numbers must not move
    got = torch.from_numpy(sess.run(None, {"image": x.numpy()})[0])
    assert got.shape == (1, 256, 16, 16) and rel_err(got, ref) < 1e-4


def _spatial_reduce_means(proto) -> int:
    """ReduceMean nodes over H and W (opset 17: axes as an attribute)."""
    axes = [next((list(a.ints) for a in n.attribute if a.name == "axes"), []) for n in proto.graph.node
            if n.op_type == "ReduceMean"]
    return sum(1 for ax in axes if sorted(a % 4 for a in ax) == [2, 3])


def test_default_encoder_graph_is_the_optimized_one(exported):
    """``repvit sam export`` writes the graph after repvit's passes: squeeze-excite pooling as GlobalAveragePool
    (kept in ONNX Runtime's NCHWc layout), the neck's LayerNorm2d as LayerNormalization (no ReduceMean left), no
    Identity nodes, still standard ONNX."""
    import onnx

    proto = onnx.load(str(exported / "encoder.onnx"))
    onnx.checker.check_model(proto)
    ops = {n.op_type for n in proto.graph.node}
    assert "GlobalAveragePool" in ops and "Identity" not in ops and "BatchNormalization" not in ops
    assert "ReduceMean" not in ops and [n.op_type for n in proto.graph.node].count("LayerNormalization") == 2
    assert all(n.domain in ("", "ai.onnx") for n in proto.graph.node)


def test_edge_sam_export_replaces_bicubic_resize_and_matches_pytorch(tmp_path):
    """EdgeSAM's bicubic x2 upsampling is written as nearest upsampling + depthwise convs by the encoder export's
    defaults (those of ``repvit sam export``), and ONNX Runtime still gives the bicubic PyTorch encoder's
    embedding."""
    import onnx

    from repvit.sam import build_repvit_sam
    from repvit.sam.export import export_encoder_onnx
    from tests.helpers import randomize_bn

    torch.manual_seed(0)
    sam = randomize_bn(build_repvit_sam(variant="edge_sam", img_size=128), seed=2).eval()
    assert sam.image_encoder.cfg.upsample_mode == "bicubic"
    export_encoder_onnx(sam, tmp_path / "encoder.onnx")
    proto = onnx.load(str(tmp_path / "encoder.onnx"))
    modes = [next((a.s.decode() for a in n.attribute if a.name == "mode"), "nearest")
             for n in proto.graph.node if n.op_type == "Resize"]
    assert modes == ["nearest"] and _spatial_reduce_means(proto) == 0
    assert "LayerNormalization" in {n.op_type for n in proto.graph.node}
    x = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = sam.image_encoder(x)
    got = torch.from_numpy(_session(tmp_path / "encoder.onnx").run(None, {"image": x.numpy()})[0])
    assert rel_err(got, ref) < 1e-4


def test_encoder_onnx_with_preprocessing(small_sam, astronaut, tmp_path):
    """With preprocessing in the graph the input is raw 0..255 pixels of any size: for an image whose longest side
    is already img_size it equals segment_anything's ``Sam.preprocess`` (normalize, pad) + the encoder."""
    from repvit.sam.export import export_encoder_onnx

    res = export_encoder_onnx(small_sam, tmp_path / "enc.onnx", preprocess=True)
    assert res["parity"]["max_rel_diff"] < 1e-4
    sess = _session(tmp_path / "enc.onnx")
    assert sess.get_inputs()[0].shape[2:] == ["height", "width"]
    crop = torch.from_numpy(astronaut[:256, 100:292].copy()).permute(2, 0, 1)[None].float()  # 256 x 192
    with torch.no_grad():
        ref = small_sam.image_encoder(small_sam.preprocess(crop))
    got = torch.from_numpy(sess.run(None, {"image": crop.numpy()})[0])
    assert rel_err(got, ref) < 1e-4
    # a larger, non-square photo: resized inside the graph (bilinear, as F.interpolate), normalized, padded
    big = torch.from_numpy(astronaut[:, :400].copy()).permute(2, 0, 1)[None].float()  # 512 x 400 -> 256 x 200
    with torch.no_grad():
        ref = small_sam.image_encoder(small_sam.preprocess(F.interpolate(big, size=(256, 200), mode="bilinear")))
    got = torch.from_numpy(sess.run(None, {"image": big.numpy()})[0])
    assert rel_err(got, ref) < 1e-4


def _onnx_prompt(predictor, image_shape, points=None, labels=None, box=None):
    """SAM's ONNX decoder convention: box corners are points with labels 2 and 3; without a box a padding point
    (0, 0) with label -1 is appended; coordinates go through the predictor's ResizeLongestSide."""
    coords, labs = [], []
    if points is not None:
        coords.append(points)
        labs.append(labels)
    if box is not None:
        coords.append(np.asarray(box, np.float64).reshape(2, 2))
        labs.append(np.array([2, 3]))
    else:
        coords.append(np.zeros((1, 2)))
        labs.append(np.array([-1]))
    c = predictor.transform.apply_coords(np.concatenate(coords), image_shape[:2])
    return c[None].astype(np.float32), np.concatenate(labs)[None].astype(np.float32)


@pytest.mark.parametrize("prompt", ["point", "three_points", "box"])
def test_decoder_onnx_matches_sam(exported, small_sam, astronaut, prompt):
    """decoder.onnx gives the masks and IoU predictions SamPredictor gives for the same prompts (one point or a box:
    SAM's best of three; several points: its single-mask output)."""
    from segment_anything import SamPredictor

    from repvit.sam.export import DECODER_INPUTS, run_decoder_onnx

    image = astronaut[:400, 50:350]  # 400 x 300, not the export example's aspect ratio
    predictor = SamPredictor(small_sam)
    predictor.set_image(image)
    pts = {"point": np.array([[150.0, 120.0]]), "three_points": np.array([[150.0, 120.0], [60, 300], [250, 50]])}
    kw = dict(points=pts.get(prompt), labels=np.array([1, 0, 1])[: len(pts.get(prompt, []))] if prompt in pts else None,
              box=np.array([40.0, 20.0, 260.0, 380.0]) if prompt == "box" else None)
    multimask = prompt != "three_points"
    masks, scores, _ = predictor.predict(point_coords=kw["points"], point_labels=kw["labels"], box=kw["box"],
                                         multimask_output=multimask, return_logits=True)
    best = int(np.argmax(scores))
    coords, labels = _onnx_prompt(predictor, image.shape, **kw)
    sess = _session(exported / "decoder.onnx")
    assert [i.name for i in sess.get_inputs()] == DECODER_INPUTS
    out = run_decoder_onnx(sess, {"image_embeddings": predictor.get_image_embedding(), "point_coords": coords,
                                  "point_labels": labels, "mask_input": np.zeros((1, 1, 64, 64)),
                                  "has_mask_input": np.zeros(1), "orig_im_size": np.array(image.shape[:2])})
    onnx_masks, onnx_iou = out[0][0, 0].numpy(), out[1][0, 0].item()
    assert onnx_masks.shape == image.shape[:2]
    assert rel_err(torch.from_numpy(onnx_masks), torch.from_numpy(masks[best])) < 1e-4
    assert onnx_iou == pytest.approx(float(scores[best]), abs=1e-5)
    assert np.mean((onnx_masks > 0) == (masks[best] > 0)) > 0.999


@pytest.mark.slow
def test_coreml_encoder_spec(small_sam, tmp_path):
    pytest.importorskip("coremltools", reason="Core ML export needs coremltools: pip install 'repvit-pytorch[coreml]'")
    from repvit.sam.export import export_encoder_coreml

    res = export_encoder_coreml(small_sam, tmp_path / "encoder.mlpackage")
    spec = res["spec"]
    assert spec["is_ml_program"] and (tmp_path / "encoder.mlpackage" / "Manifest.json").exists()
    (inp,), (out,) = spec["inputs"], spec["outputs"]
    assert (inp["name"], inp["kind"], inp["shape"]) == ("input", "multiArrayType", [1, 3, 256, 256])
    assert out["name"] == "image_embeddings" and out["kind"] == "multiArrayType"
    assert spec["metadata"]["variant"] == "repvit_m0_9" and spec["metadata"]["img_size"] == "256"
