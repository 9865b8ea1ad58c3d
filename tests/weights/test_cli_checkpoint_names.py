"""``--checkpoint NAME_OR_PATH`` on the ``segment``, ``detect`` and ``sam`` commands: a published weights name is
fetched through ``repvit.weights`` from the local stand-in hosts (conftest.py), an authors'-layout file is read as it
is; both give the same results.

The authors' files are written here with random weights, in their layouts (mmseg Semantic FPN, mmdet Mask R-CNN,
EdgeSAM's bare state dict), by the independent helpers of ``tests/dense/test_authors_checkpoints.py`` and
``tests/sam/test_edge_sam.py``.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

import repvit
from repvit.cli.main import main
from tests.helpers import run_cli

timm = pytest.importorskip("timm")


def _bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def authors_backbone_sd():
    from tests.dense.test_authors_checkpoints import MODEL, _randomize_bn, _to_authors

    torch.manual_seed(0)
    m = timm.create_model(MODEL, pretrained=False, num_classes=0)
    _randomize_bn(m, torch.Generator().manual_seed(1))
    return {f"backbone.{k}": v for k, v in _to_authors(m.eval().state_dict()).items()}


@pytest.fixture(scope="module")
def mmseg_bytes(authors_backbone_sd) -> bytes:
    from tests.dense.test_authors_checkpoints import _fpn_neck_sd, _mmseg_head_sd

    g = torch.Generator().manual_seed(2)
    return _bytes({"meta": {"CLASSES": tuple(f"c{i}" for i in range(150))},
                   "state_dict": {**authors_backbone_sd, **_fpn_neck_sd(g), **_mmseg_head_sd(g)}})


@pytest.fixture(scope="module")
def mmdet_bytes(authors_backbone_sd) -> bytes:
    from tests.dense.test_authors_checkpoints import _mmdet_heads_sd

    heads = _mmdet_heads_sd(torch.Generator().manual_seed(4))
    return _bytes({"meta": {}, "state_dict": {**authors_backbone_sd, **heads}})


def _image(path, size=(40, 56)):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
    return path


# ---------------------------------------------------------------------------------------------- segment


def test_segment_predict_by_name_uses_the_authors_pipeline(hosts, mmseg_bytes, tmp_path, capsys):
    from repvit.dense.segmentation.data import AlignResize
    from repvit.weights import manual_path

    hosts.add_github("repvit_m1_1_ade20k.pth", mmseg_bytes)
    img = _image(tmp_path / "a.png")
    res = json.loads(run_cli(capsys, "segment", "predict", img, "--checkpoint", "repvit_m1_1_ade20k",
                             "--output-dir", tmp_path / "out", "--device", "auto", "--json"))
    path = manual_path("repvit_m1_1_ade20k")  # downloaded into torch.hub's checkpoints folder
    assert path.read_bytes() == mmseg_bytes
    label = np.asarray(Image.open(res[0]["label_png"]))
    assert all(k.startswith("c") for k in res[0]["classes"])  # the file's class names
    # the authors' test resize, then the logits back at the image size (as mmseg's whole-image inference)
    model = repvit.load_segmenter(path)
    x = torch.from_numpy(np.array(Image.open(img))).permute(2, 0, 1)
    with torch.no_grad():
        logits = model(AlignResize((2048, 512), 32)(x)[None])
        ref = torch.nn.functional.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
    assert label.shape == (40, 56) and np.array_equal(label, ref[0].argmax(0).numpy().astype(np.uint8))


def test_segment_export_and_eval_by_name(hosts, mmseg_bytes, tmp_path, capsys, monkeypatch):
    import repvit.dense.segmentation.export as export_mod
    from tests.dense.segmentation._ade import make_ade_folder

    hosts.add_github("repvit_m1_1_ade20k.pth", mmseg_bytes)
    seen = {}

    def fake_export(model, output, **kw):  # the (slow) export itself is tested elsewhere: the model is checked
        seen.update(model=model, **kw)
        raise RuntimeError("stopped by the test")

    monkeypatch.setattr(export_mod, "export_segmenter_onnx", fake_export)
    assert main(["segment", "export", "--checkpoint", "repvit_m1_1_ade20k", "--output", str(tmp_path / "m.onnx")]) == 1
    assert "stopped by the test" in capsys.readouterr().err
    assert seen["model"].num_classes == 150 and seen["example_size"] == (512, 512)
    assert seen["metadata"]["model_name"] == "repvit_m1_1" and seen["metadata"]["class_names"][:2] == ["c0", "c1"]
    root = make_ade_folder(tmp_path / "ade", num_classes=150, n_train=1, n_val=1, size=(40, 56))
    res = json.loads(run_cli(capsys, "segment", "eval", "--checkpoint", "repvit_m1_1_ade20k", "--data", root,
                             "--device", "auto", "--json"))
    assert res["images"] == 1 and "AlignResize" in res["pipeline"]
    assert main(["segment", "predict", str(tmp_path), "--checkpoint", "repvit_m1_1_coco",
                 "--output-dir", str(tmp_path / "x")]) == 1  # not served: a one-line download error
    err = capsys.readouterr().err
    assert "repvit_m1_1_coco" in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------------------- detect


def test_detect_export_by_name_builds_the_authors_detector(hosts, mmdet_bytes, tmp_path, capsys, monkeypatch):
    import repvit.dense.detection.export as export_mod

    hosts.add_github("repvit_m1_1_coco.pth", mmdet_bytes)
    seen = {}

    def fake_export(model, output, **kw):
        seen.update(model=model, **kw)
        raise RuntimeError("stopped by the test")

    monkeypatch.setattr(export_mod, "export_detector_onnx", fake_export)
    assert main(["detect", "export", "--checkpoint", "repvit_m1_1_coco", "--output", str(tmp_path / "d.onnx")]) == 1
    assert "stopped by the test" in capsys.readouterr().err
    assert (seen["height"], seen["width"]) == (800, 800)  # the authors' test size
    md = seen["metadata"]
    assert (md["detector"], md["model"], len(md["class_names"])) == ("maskrcnn", "repvit_m1_1", 80)
    assert md["class_names"][0] == "person" and md["category_ids"][:3] == [1, 2, 3]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in seen["model"].backbone.backbone.modules())


@pytest.mark.slow  # the authors' Mask R-CNN at its 800-pixel test size, twice
def test_detect_predict_by_name_and_by_authors_file(hosts, mmdet_bytes, tmp_path, capsys):
    from repvit.weights import manual_path

    hosts.add_github("repvit_m1_1_coco.pth", mmdet_bytes)
    img = _image(tmp_path / "a.png", (48, 64))
    by_name = json.loads(run_cli(capsys, "detect", "predict", img, "--checkpoint", "repvit_m1_1_coco",
                                 "--output-dir", tmp_path / "name", "--score-threshold", "0", "--device", "auto",
                                 "--json"))
    by_file = json.loads(run_cli(capsys, "detect", "predict", img, "--checkpoint", manual_path("repvit_m1_1_coco"),
                                 "--output-dir", tmp_path / "file", "--score-threshold", "0", "--json"))
    assert by_name["images"][0]["detections"] == by_file["images"][0]["detections"]
    a = json.loads((tmp_path / "name" / "predictions.json").read_text())
    b = json.loads((tmp_path / "file" / "predictions.json").read_text())
    assert a == b and all(r["category_id"] in range(1, 91) for r in a)


# ---------------------------------------------------------------------------------------------- sam


@pytest.fixture(scope="module")
def edge_sam_bytes() -> bytes:
    pytest.importorskip("segment_anything", reason="RepViT-SAM needs: pip install 'repvit-pytorch[sam]'")
    from tests.sam.test_edge_sam import reference_sam

    return _bytes(reference_sam().state_dict())  # a bare state dict, as EdgeSAM releases it


@pytest.mark.parametrize("name", ["edge_sam", "edge_sam_3x"])
def test_sam_predict_by_name_and_by_file(hosts, edge_sam_bytes, name, tmp_path, capsys):
    from tests.sam.test_edge_sam import IMG

    hosts.add_hf("chongzhou/EdgeSAM", f"weights/{name}.pth", edge_sam_bytes, repo_type="space")
    img = _image(tmp_path / "a.png", (100, 128))
    local = tmp_path / f"{name}.pth"
    local.write_bytes(edge_sam_bytes)
    masks = {}
    for label, ckpt in (("name", name), ("file", local)):
        run_cli(capsys, "sam", "predict", img, "--checkpoint", ckpt, "--img-size", IMG, "--point", "60,45",
                "--device", "auto", "--output-dir", tmp_path / label)
        masks[label] = np.asarray(Image.open(tmp_path / label / "a_mask.png"))
    assert masks["name"].shape == (100, 128) and np.array_equal(masks["name"], masks["file"])


# ------------------------------------------------------------------------------------- --backbone-pretrained


@pytest.mark.parametrize("command", ["segment", "detect"])
def test_backbone_pretrained_by_name_sets_the_backbone_file_and_model(hosts, mmseg_bytes, tmp_path, capsys, command):
    from repvit.weights import manual_path

    hosts.add_github("repvit_m1_1_ade20k.pth", mmseg_bytes)
    cfg = json.loads(run_cli(capsys, command, "train", "--data", "digits", "--backbone-pretrained",
                             "repvit_m1_1_ade20k", "--print-config"))
    path = manual_path("repvit_m1_1_ade20k")
    assert path.read_bytes() == mmseg_bytes  # fetched from the stand-in host into the cache
    assert (cfg["backbone_checkpoint"], cfg["model"]) == (str(path), "repvit_m1_1")
    assert main([command, "train", "--data", "digits", "--backbone-pretrained", "repvit_m1_1_ade20k", "--model",
                 "repvit_m0_9", "--print-config"]) != 0
    assert "repvit_m1_1 backbone, not --model repvit_m0_9" in capsys.readouterr().err
    assert main([command, "train", "--data", "digits", "--backbone-pretrained", "edge_sam", "--print-config"]) != 0
    assert "sam weights" in capsys.readouterr().err
