"""COCO layout: the digit scenes written to disk (RLE masks, category ids offset so they are not 1..10) train and
evaluate through ``--data PATH``; one checkpoint scores the same AP through both paths; crowd, degenerate boxes and
empty images are handled; bad input gets clear errors. COCOeval (pycocotools) is the reference for AP."""

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

pytest.importorskip("pycocotools", reason="COCO data needs pycocotools (pip install 'repvit-pytorch[dense]')")
pytest.importorskip("sklearn", reason="the digits scenes come from scikit-learn (pip install 'repvit-pytorch[dense]')")

from repvit.data.coco import CocoFormatError  # noqa: E402
from repvit.dense.detection.coco import (  # noqa: E402
    CategoryMap,
    CocoDetectionDataset,
    coco_detection_dataset,
    coco_from_samples,
    make_coco,
    write_coco_split,
)
from repvit.dense.detection.metrics import coco_evaluate, detections_to_coco  # noqa: E402
from repvit.dense.scenes import DigitScenes  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
NAMES = [str(d) for d in range(10)]
OFFSET_IDS = [100 + 7 * d for d in range(10)]  # not 1..10 and not contiguous
SIZE = 32
TINY = ["--set", "fpn_channels=16", "--set", "box_head_dim=32", "--set", "mask_head_channels=8",
        "--set", "mask_head_convs=1", "--set", "plot=false", "--set", "tensorboard=false", "--set", "warmup_steps=1",
        "--set", f"scene_size={SIZE}", "--set", "val_scenes=200", "--set", "val_subset=24"]


def _scenes(split, n):
    from repvit.dense.detection.config import DetectConfig

    cfg = DetectConfig()  # the scenes --data digits builds (the recipe's glyph scale)
    return DigitScenes(split, size=SIZE, num_scenes=n, scale=(cfg.scene_scale_min, cfg.scene_scale_max))


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory):
    """Train (24 scenes) and val (200 scenes) in COCO layout, with a crowd and a degenerate annotation and one image
    without annotations added to the train split."""
    root = tmp_path_factory.mktemp("coco")
    tr = _scenes("train", 24)
    write_coco_split((tr[i] for i in range(len(tr))), root, "train", NAMES, category_ids=OFFSET_IDS)
    va = _scenes("val", 200)
    write_coco_split((va[i] for i in range(len(va))), root, "val", NAMES, category_ids=OFFSET_IDS)
    ann = root / "annotations" / "instances_train2017.json"
    d = json.loads(ann.read_text())
    n = len(d["annotations"])
    d["annotations"].append({**d["annotations"][0], "id": n + 1, "bbox": [3.0, 4.0, 0.0, 5.0]})  # zero width
    d["annotations"].append({**d["annotations"][1], "id": n + 2, "iscrowd": 1})
    shutil.copy(root / "train2017" / "000000000000.png", root / "train2017" / "empty.png")
    d["images"].append({"id": 999, "file_name": "empty.png", "height": SIZE, "width": SIZE})
    ann.write_text(json.dumps(d))
    return root


def test_written_json_has_rle_masks_and_offset_ids(coco_root):
    d = json.loads((coco_root / "annotations" / "instances_val2017.json").read_text())
    assert [c["id"] for c in d["categories"]] == OFFSET_IDS
    assert {a["category_id"] for a in d["annotations"]} <= set(OFFSET_IDS)
    assert all(isinstance(a["segmentation"]["counts"], str) for a in d["annotations"])
    from pycocotools import mask as mask_util

    # the RLE decodes to the scene's own instance mask, and the area is its pixel count
    va = _scenes("val", 200)
    _, t = va[3]
    anns = [a for a in d["annotations"] if a["image_id"] == 3]
    assert len(anns) == len(t["labels"])
    for a, m, lab in zip(anns, t["masks"], t["labels"]):
        assert torch.equal(torch.from_numpy(mask_util.decode(a["segmentation"])), m)
        assert a["area"] == float(m.sum()) and a["category_id"] == OFFSET_IDS[int(lab) - 1]


def test_reader_maps_ids_drops_crowd_and_degenerate_keeps_empty(coco_root, caplog):
    with caplog.at_level(logging.INFO):
        ds = coco_detection_dataset(coco_root, "train", masks=True, train=True)
    assert ds.stats["degenerate_dropped"] == 1 and ds.stats["crowd"] == 1 and ds.stats["empty_images"] == 1
    assert "dropped 1 degenerate boxes" in caplog.text
    assert ds.categories == CategoryMap(tuple(OFFSET_IDS), tuple(NAMES))
    ref = _scenes("train", 24)
    for i in range(len(ref)):
        img, t = ds[i]
        rimg, rt = ref[i]
        n_extra = 1 if i in (0, 1) else 0  # image 0 got the degenerate box, image 1 the crowd one: both left out
        assert torch.equal(img, rimg) and img.dtype == torch.uint8
        assert len(t["labels"]) == len(rt["labels"]), n_extra
        assert torch.equal(t["labels"], rt["labels"])  # offset ids back to 1..10
        assert torch.allclose(t["boxes"], rt["boxes"]) and torch.equal(t["masks"], rt["masks"])
    img, t = ds[ds.ids.index(999)]
    assert t["boxes"].shape == (0, 4) and t["labels"].numel() == 0 and t["masks"].shape == (0, SIZE, SIZE)
    # evaluation keeps crowd regions for COCOeval (they are ignored there, not counted as misses)
    ev = coco_detection_dataset(coco_root, "train", masks=False, train=False)
    assert len(ev[1][1]["labels"]) == len(ref[1][1]["labels"]) + 1


def test_cocoeval_scores_perfect_detections_one_and_shifted_ones_lower():
    va = _scenes("val", 200)
    samples = [va[i] for i in range(20)]
    gt = make_coco(coco_from_samples(samples, NAMES, category_ids=OFFSET_IDS))
    cats = CategoryMap(tuple(OFFSET_IDS), tuple(NAMES))
    outs = [{"boxes": t["boxes"].as_subclass(torch.Tensor), "labels": t["labels"],
             "scores": torch.ones(len(t["labels"])), "masks": t["masks"][:, None].float()} for _, t in samples]
    ids = [t["image_id"] for _, t in samples]
    res = coco_evaluate(gt, detections_to_coco(outs, ids, cats), ids, masks=True)
    assert res["bbox_ap"] == pytest.approx(1.0) and res["mask_ap"] == pytest.approx(1.0) and res["images"] == 20
    for o in outs:
        o["boxes"] = o["boxes"] + torch.tensor([2.0, 2.0, 2.0, 2.0])
    res2 = coco_evaluate(gt, detections_to_coco(outs, ids, cats), ids, masks=True)
    assert res2["bbox_ap"] < 0.9 and res2["mask_ap"] == pytest.approx(1.0)
    assert coco_evaluate(gt, [], ids, masks=True)["bbox_ap"] == 0.0


def _repvit(capsys, *args) -> str:
    """Run the CLI in this process (no interpreter start-up) and return what it printed."""
    from repvit.cli.main import main

    capsys.readouterr()
    rc = main(list(args))
    out = capsys.readouterr()
    assert rc == 0, out.err[-3000:]
    return out.out


def test_train_and_eval_through_path_and_same_ap_through_both_paths(coco_root, tmp_path, capsys):
    out = tmp_path / "run"
    _repvit(capsys, "detect", "train", "--data", str(coco_root), "--output-dir", str(out), "--seed", "0",
            "--img-size", str(SIZE), "--batch-size", "4", "--iters", "3", "--threads", "1", "--no-progress", *TINY)
    ck = torch.load(out / "best.pt", weights_only=True)
    assert ck["meta"]["category_ids"] == OFFSET_IDS and ck["meta"]["class_names"] == NAMES
    assert ck["meta"]["data_stats"]["train"]["degenerate_dropped"] == 1
    # a low score threshold so the barely trained detector reports detections and AP is not trivially 0
    common = ["--checkpoint", str(out / "best.pt"), "--json", "--set", "val_subset=16", "--set",
              "box_score_thresh=0.0", "--set", "detections_per_img=30"]
    a = json.loads(_repvit(capsys, "detect", "eval", "--data", str(coco_root), *common))
    b = json.loads(_repvit(capsys, "detect", "eval", "--data", "digits", *common))
    assert a == b
    assert a["images"] == 16 and a["bbox_ap50"] > 0 and set(a) >= {"mask_ap", "mask_ap50", "mask_ap75",
                                                                     "bbox_ap_small", "bbox_ap_medium"}
    # predictions use the data set's own category ids
    pred = tmp_path / "pred"
    _repvit(capsys, "detect", "predict", str(coco_root / "val2017" / "000000000005.png"), "--checkpoint",
            str(out / "best.pt"), "--output-dir", str(pred), "--score-threshold", "0.0")
    results = json.loads((pred / "predictions.json").read_text())
    assert results and {r["category_id"] for r in results} <= set(OFFSET_IDS)
    from torchvision.io import decode_image

    drawn = decode_image(str(pred / "000000000005.png"))
    assert drawn.shape[-1] >= 256  # small images are enlarged for the drawing
    # export: the whole detector, its parity with ONNX Runtime reported
    pytest.importorskip("onnxruntime")
    rep = json.loads(_repvit(capsys, "detect", "export", "--checkpoint", str(out / "best.pt"), "--output",
                             str(tmp_path / "d.onnx"), "--image", str(coco_root / "val2017" / "000000000005.png"),
                             "--json"))
    assert rep["parity_ok"] and rep["parity"]["same_count"] and (tmp_path / "d.onnx").stat().st_size > 0


def test_missing_images_are_listed(coco_root, tmp_path):
    root = tmp_path / "c"
    shutil.copytree(coco_root, root)
    for i in range(7):
        (root / "val2017" / f"{i:012d}.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"7 of the 200 images .*000000000000\.png, .*000000000004\.png \.\.\."):
        coco_detection_dataset(root, "val", masks=False, train=False)


def test_malformed_json_and_missing_masks_are_clear_errors(coco_root, tmp_path):
    ann = tmp_path / "bad.json"
    ann.write_text((coco_root / "annotations" / "instances_val2017.json").read_text()[:500])
    with pytest.raises(CocoFormatError, match="not valid JSON"):
        CocoDetectionDataset(coco_root / "val2017", ann, masks=False, train=False)
    ann.write_text(json.dumps({"images": []}))
    with pytest.raises(CocoFormatError, match="lacks the list"):
        CocoDetectionDataset(coco_root / "val2017", ann, masks=False, train=False)
    d = json.loads((coco_root / "annotations" / "instances_val2017.json").read_text())
    del d["annotations"][3]["segmentation"]
    ann.write_text(json.dumps(d))
    with pytest.raises(CocoFormatError, match="Mask R-CNN needs instance masks.*fasterrcnn"):
        CocoDetectionDataset(coco_root / "val2017", ann, masks=True, train=True)
    ds = CocoDetectionDataset(coco_root / "val2017", ann, masks=False, train=True)  # boxes only: fine
    assert len(ds) == 200
    with pytest.raises(FileNotFoundError, match="does not exist"):
        coco_detection_dataset(tmp_path / "nowhere", "val", masks=False, train=False)


def test_checkpoint_with_another_class_count_reinitializes_the_heads(tmp_path, caplog):
    from repvit.dense.detection import DetectorSpec, build_detector
    from repvit.dense.detection.model import init_detector

    spec = DetectorSpec(model="repvit_m0_6", fpn_channels=16, box_head_dim=32, mask_head_channels=8,
                        mask_head_convs=1)
    torch.manual_seed(1)
    src = build_detector(spec, 4)
    torch.save({"task": "detect", "model": src.state_dict()}, tmp_path / "d.pt")
    torch.manual_seed(2)
    dst = build_detector(spec, 11)
    before = dst.roi_heads.box_predictor.cls_score.weight.clone()
    with caplog.at_level(logging.WARNING):
        init_detector(dst, tmp_path / "d.pt")
    assert "another class count" in caplog.text and "roi_heads.box_predictor.cls_score" in caplog.text
    assert torch.equal(dst.roi_heads.box_predictor.cls_score.weight, before)  # re-initialized, not loaded
    assert torch.equal(dst.backbone.fpn.inner_blocks[0][0].weight, src.backbone.fpn.inner_blocks[0][0].weight)
    assert torch.equal(dst.roi_heads.box_head.fc6.weight, src.roi_heads.box_head.fc6.weight)
    # a classification checkpoint initializes the backbone only
    import repvit

    cls = repvit.create_model("repvit_m0_6", num_classes=10)
    torch.save({"model": cls.state_dict()}, tmp_path / "c.pt")
    init_detector(dst, tmp_path / "c.pt")
    assert torch.equal(dst.backbone.backbone.stem.conv1.c.weight, cls.stem.conv1.c.weight)


def test_paper_recipe_trains_an_iteration_on_coco_layout(coco_root, tmp_path, capsys):
    """The Mask R-CNN 1x recipe (full heads) runs on a COCO-layout folder (a small backbone and size here)."""
    out = tmp_path / "paper"
    _repvit(capsys, "detect", "train", "--config", "detect_maskrcnn_coco_1x", "--data", str(coco_root),
            "--model", "repvit_m0_6", "--img-size", "32", "--set", "max_size=48", "--iters", "1", "--batch-size", "2",
            "--output-dir", str(out), "--no-progress", "--set", "workers=0", "--set", "val_subset=2",
            "--set", "detections_per_img=10", "--set", "rpn_post_nms_top_n_test=50",
            "--set", "plot=false", "--set", "tensorboard=false")
    ck = torch.load(out / "last.pt", weights_only=True)
    assert ck["config"]["box_head_dim"] == 1024 and ck["config"]["decay_milestones"] == [8, 11]
    assert ck["config"]["hflip"] == 0.5 and ck["step"] == 1


def test_polygon_masks_are_read_like_pycocotools_decodes_them(coco_root, tmp_path):
    from pycocotools import mask as mask_util

    d = json.loads((coco_root / "annotations" / "instances_val2017.json").read_text())
    poly = [[2.0, 3.0, 20.0, 3.0, 20.0, 15.0, 2.0, 15.0]]
    ann = next(a for a in d["annotations"] if a["image_id"] == 0)
    ann["segmentation"] = poly
    (tmp_path / "poly.json").write_text(json.dumps(d))
    ds = CocoDetectionDataset(coco_root / "val2017", tmp_path / "poly.json", masks=True, train=False)
    _, t = ds[ds.ids.index(0)]
    ref = mask_util.decode(mask_util.merge(mask_util.frPyObjects(poly, SIZE, SIZE)))
    assert torch.equal(t["masks"][0], torch.from_numpy(ref)) and ref.sum() > 100
