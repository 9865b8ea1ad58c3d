"""``repvit segment`` end to end on the shared engine: ADE20K layout (ignore label honoured) and digits scenes,
eval JSON, predict PNGs, ONNX export, backbone checkpoints, fine-tuning with another class count."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from repvit.cli.main import main
from tests.dense._ade import make_ade_folder
from tests.helpers import run_cli

pytest.importorskip("sklearn", reason="the digits scenes come from scikit-learn (pip install 'repvit-pytorch[dense]')")

FAST = ["--no-progress", "--threads", "1", "--workers", "0", "--set", "plot=false", "--set", "tensorboard=false",
        "--set", "fpn_channels=16", "--set", "head_channels=16"]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("seg") / "run"
    rc = main(["segment", "train", "--data", "digits", "--output-dir", str(out), "--seed", "0", "--iters", "3",
               "--batch-size", "4", "--img-size", "64", "--set", "train_scenes=12", "--set", "val_scenes=200",
               "--set", "eval_batch_size=50", *FAST])
    assert rc == 0
    return out


def test_ade_layout_trains_and_evaluates_with_the_ignore_label(tmp_path, capsys):
    root = make_ade_folder(tmp_path / "ade", num_classes=4, n_train=8, n_val=4)
    out = tmp_path / "run"
    run_cli(capsys, "segment", "train", "--data", root, "--num-classes", 4, "--output-dir", out, "--iters", 4,
            "--batch-size", 4, "--img-size", 32, "--seed", 0, *FAST)
    ck = torch.load(out / "best.pt", weights_only=True)
    assert ck["task"] == "segment" and ck["meta"]["num_classes"] == 4 and ck["step"] == 4
    assert ck["model"]["head.classifier.weight"].shape[0] == 4
    assert (out / "metrics.jsonl").exists()
    res = json.loads(run_cli(capsys, "segment", "eval", "--checkpoint", out / "best.pt", "--data", root, "--json"))
    assert set(res) >= {"miou", "pixel_acc", "per_class_iou", "images"}
    assert 0 <= res["miou"] <= 1 and 0 <= res["pixel_acc"] <= 1 and res["images"] == 4
    assert len(res["per_class_iou"]) == 4
    # only labels 1..4 count: "other" (0) and 255 are ignored, at the labels' own resolution
    raw = [np.asarray(Image.open(p)) for p in sorted((root / "annotations" / "validation").iterdir())]
    assert res["pixels"] == sum(int(((r >= 1) & (r <= 4)).sum()) for r in raw)
    capsys.readouterr()
    rc = main(["segment", "eval", "--checkpoint", str(out / "best.pt"), "--data", str(root), "--num-classes", "7"])
    assert rc == 1 and "does not match" in capsys.readouterr().err


def test_digits_eval_predict_export(digits_run, tmp_path, capsys):
    res = json.loads(run_cli(capsys, "segment", "eval", "--checkpoint", digits_run / "best.pt", "--data", "digits",
                             "--json"))
    assert res["images"] == 200 and len(res["per_class_iou"]) == 11 and 0 <= res["miou"] <= 1
    from repvit.dense.scenes import DigitScenes

    img = DigitScenes("val", size=64)[0][0]
    Image.fromarray(img.permute(1, 2, 0).numpy()).save(tmp_path / "scene.png")
    run_cli(capsys, "segment", "predict", tmp_path / "scene.png", "--checkpoint", digits_run / "best.pt",
            "--output-dir", tmp_path / "pred")
    label = np.asarray(Image.open(tmp_path / "pred" / "scene_label.png"))
    overlay = Image.open(tmp_path / "pred" / "scene_overlay.png")
    assert label.shape == (64, 64) and label.max() < 11 and overlay.size == (64, 64) and overlay.mode == "RGB"
    pytest.importorskip("onnxruntime")
    rep = json.loads(run_cli(capsys, "segment", "export", "--checkpoint", digits_run / "best.pt", "--output",
                             tmp_path / "seg.onnx", "--json"))
    assert rep["max_rel_diff"] < 1e-4 and len(rep["checked"]) == 2 and (tmp_path / "seg.onnx").exists()


def test_finetune_with_another_class_count_resets_the_classifier(digits_run):
    from repvit.dense.segmentation.model import build_semantic_fpn, load_segmentation_weights

    model = build_semantic_fpn("repvit_m0_6", num_classes=4, frozen_bn=False, fpn_channels=16, head_channels=16)
    with pytest.warns(UserWarning, match=r"best\.pt has a 11-class head .* 4 classes: the classifier is re-init"):
        load_segmentation_weights(model, digits_run / "best.pt")
    sd = torch.load(digits_run / "best.pt", weights_only=True)["model"]
    assert torch.equal(model.state_dict()["neck.backbone.stem.conv1.c.weight"], sd["neck.backbone.stem.conv1.c.weight"])
    assert model.head.classifier.out_channels == 4


def test_backbone_checkpoint_flag_loads_a_classifier(tmp_path):
    import repvit
    from repvit.dense.segmentation.config import SegmentConfig
    from repvit.dense.segmentation.task import SegmentTask
    from repvit.engine.task import TaskData

    clf = repvit.create_model("repvit_m0_6", num_classes=10)
    torch.nn.init.normal_(clf.stem.conv1.c.weight)
    torch.save({"model": clf.state_dict()}, tmp_path / "clf.pth")
    task = SegmentTask()
    cfg = SegmentConfig(backbone_checkpoint=str(tmp_path / "clf.pth"), fpn_channels=16, head_channels=16)
    model = task.build_model(cfg, TaskData([], [], meta={"num_classes": 3}))
    assert torch.equal(model.backbone.stem.conv1.c.weight, clf.stem.conv1.c.weight)
