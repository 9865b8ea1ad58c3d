"""Phase 2's prompts from given masks: tiny COCO-layout and SA-1B-layout folders (RLE made by pycocotools), prompts
that come from the annotated masks (points inside them, boxes = their bbox), the errors for bad annotations, and a
2-step phase-2 run on each layout."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from repvit.sam.distill import SamDistillConfig, distill
from repvit.sam.mask_annotations import MaskAnnotationError, find_mask_annotations, low_res_prompt_masks
from repvit.sam.prompt_distill import SamPromptDistillTask
from repvit.sam.prompt_sampling import sample_mask_prompts

from ._distill_data import tiny_teacher_sam

mask_utils = pytest.importorskip("pycocotools.mask", reason="pycocotools is in the dense extra")

IMG = 64  # the student's input side; images are 96 x 128 (resized by 1/2 into 48 x 64)
H, W = 96, 128


def _objects(seed: int) -> list[np.ndarray]:
    """Three disjoint masks (H, W): a rectangle, a disc and an L shape."""
    yy, xx = np.mgrid[0:H, 0:W]
    rng = np.random.default_rng(seed)
    x0, y0 = rng.integers(4, 30, 2)
    rect = (xx >= x0) & (xx < x0 + 30) & (yy >= y0) & (yy < y0 + 20)
    cx, cy = rng.integers(80, 100), rng.integers(25, 45)
    disc = (xx - cx) ** 2 + (yy - cy) ** 2 < 15 ** 2
    ell = ((xx >= 20) & (xx < 70) & (yy >= 70) & (yy < 80)) | ((xx >= 20) & (xx < 30) & (yy >= 55) & (yy < 80))
    return [rect, disc, ell]


def _image(masks: list[np.ndarray], seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    a = np.full((H, W, 3), 40, np.uint8) + rng.integers(0, 20, (H, W, 3), dtype=np.uint8)
    for m in masks:
        a[m] = rng.integers(80, 255, 3)
    return Image.fromarray(a)


def _rle(m: np.ndarray) -> dict:
    r = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    return {"size": [int(v) for v in r["size"]], "counts": r["counts"].decode()}


def _uncompressed_rle(m: np.ndarray) -> dict:
    """COCO's uncompressed RLE: run lengths of the column-major mask, starting with a run of zeros."""
    flat = m.astype(np.uint8).flatten(order="F")
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    return {"size": [H, W], "counts": ([0] if flat[0] else []) + np.diff(bounds).tolist()}


def _bbox(m: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(m)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1 - xs.min()), float(ys.max() + 1 - ys.min())]


def make_coco(root: Path, n: int = 6) -> tuple[Path, dict[str, list[np.ndarray]]]:
    """COCO layout: ``root/train/imNNN.png`` and ``root/annotations/instances_train.json``. Image 0's rectangle is a
    polygon, its disc uncompressed RLE, everything else compressed RLE; image 0 also has a crowd region. The last
    image is in the file without annotations, so it has no masks."""
    (root / "train").mkdir(parents=True)
    (root / "annotations").mkdir()
    images, anns, truth = [], [], {}
    for i in range(n):
        name = f"im{i:03d}.png"
        masks = _objects(i) if i < n - 1 else []
        _image(masks or _objects(i), i).save(root / "train" / name)
        images.append({"id": i + 1, "file_name": name, "height": H, "width": W})
        truth[f"train/{name}"] = masks
        for j, m in enumerate(masks):
            seg = _rle(m)
            if i == 0 and j == 0:
                ys, xs = np.nonzero(m)
                x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
                seg = [[float(v) for v in (x0, y0, x1, y0, x1, y1, x0, y1)]]
            elif i == 0 and j == 1:
                seg = _uncompressed_rle(m)
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1, "bbox": _bbox(m), "iscrowd": 0,
                         "area": float(m.sum()), "segmentation": seg})
    crowd = np.zeros((H, W), bool)
    crowd[:10, :10] = True
    anns.append({"id": len(anns) + 1, "image_id": 1, "category_id": 1, "bbox": _bbox(crowd), "iscrowd": 1,
                 "area": 100.0, "segmentation": _rle(crowd)})
    coco = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "thing"}]}
    (root / "annotations" / "instances_train.json").write_text(json.dumps(coco))
    return root, truth


def make_sa1b(root: Path, n: int = 5) -> tuple[Path, dict[str, list[np.ndarray]]]:
    """SA-1B layout: ``sa_N.jpg`` with ``sa_N.json`` (RLE masks, bbox) next to it."""
    root.mkdir(parents=True)
    truth = {}
    for i in range(n):
        masks = _objects(100 + i)
        _image(masks, i).save(root / f"sa_{i}.jpg", quality=95)
        anns = [{"id": j, "segmentation": _rle(m), "bbox": _bbox(m), "area": int(m.sum()), "predicted_iou": 0.9,
                 "point_coords": [[0.0, 0.0]], "crop_box": [0, 0, W, H], "stability_score": 0.95}
                for j, m in enumerate(masks)]
        (root / f"sa_{i}.json").write_text(json.dumps({
            "image": {"image_id": i, "width": W, "height": H, "file_name": f"sa_{i}.jpg"}, "annotations": anns}))
        truth[f"sa_{i}.jpg"] = masks
    return root, truth


def _image_pixel(coords: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Input-frame (x, y) -> (row, col) of the 96 x 128 image (resized 1/2 into the 64 px input)."""
    return (coords[..., 1] * H / 48).floor().long().numpy(), (coords[..., 0] * W / 64).floor().long().numpy()


@pytest.mark.parametrize("layout", ["coco", "sa1b"])
def test_prompts_come_from_the_annotated_masks(tmp_path, layout):
    """Every point lies inside one annotated mask, each object is prompted once when there are enough prompts, and
    the boxes are the annotations' bboxes in the input frame."""
    root, truth = (make_coco if layout == "coco" else make_sa1b)(tmp_path / layout)
    files = sorted(truth)
    ann = find_mask_annotations(root, files)
    assert ann.layout == layout
    for f in files:
        if not truth[f]:
            continue
        masks, boxes = low_res_prompt_masks(ann.masks(f), (H, W), IMG)
        assert masks.shape == (3, 16, 16) and not masks[:, 12:].any()  # 48 of 64 rows are the image, then padding
        ref = torch.tensor([_bbox(m) for m in truth[f]]) / 2  # 128 -> 64
        ref[:, 2:] += ref[:, :2]
        g = torch.Generator().manual_seed(0)
        for _ in range(10):
            points, no_boxes = sample_mask_prompts(masks, boxes, 8, "point", IMG, g)
            assert no_boxes is None and points[0].shape == (3, 1, 2) and points[1].eq(1).all()
            r, c = _image_pixel(points[0][:, 0])
            hit = [[bool(m[r[i], c[i]]) for m in truth[f]] for i in range(3)]
            assert all(sum(h) == 1 for h in hit)  # inside exactly one object
            assert sorted(h.index(True) for h in hit) == [0, 1, 2]  # each object once
            _, got = sample_mask_prompts(masks, boxes, 8, "box", IMG, g)
            assert sorted(got.tolist()) == sorted(ref.tolist())
        _, two = sample_mask_prompts(masks, boxes, 2, "box", IMG, g)  # fewer prompts than objects: a subset
        assert two.shape == (2, 4) and all(b in ref.tolist() for b in two.tolist())


def test_coco_reader_counts_what_gives_no_prompt(tmp_path):
    root, truth = make_coco(tmp_path / "coco")
    Image.new("RGB", (W, H)).save(root / "train" / "extra.png")  # not in the instances file
    files = sorted(truth) + ["train/extra.png"]
    ann = find_mask_annotations(root, files)
    assert ann.sources == [root / "annotations" / "instances_train.json"]
    assert ann.missing == ["train/im005.png", "train/extra.png"]
    assert ann.left_out == {"crowd": 1, "no_segmentation": 0, "images_without_masks": 1}
    with pytest.raises(MaskAnnotationError, match=r"extra\.png has no annotated masks.*instances_train\.json"):
        ann.masks("train/extra.png")
    assert find_mask_annotations(tmp_path / "nothing", ["a.png"]) is None


def test_bad_annotations_are_errors_naming_the_file(tmp_path):
    root, truth = make_coco(tmp_path / "coco")
    path = root / "annotations" / "instances_train.json"
    d = json.loads(path.read_text())
    for a in d["annotations"]:
        del a["segmentation"]
    path.write_text(json.dumps(d))
    with pytest.raises(MaskAnnotationError, match=r"instances_train\.json has annotations but no masks"):
        find_mask_annotations(root, sorted(truth))
    from repvit.engine.distributed import DistInfo

    with pytest.raises(MaskAnnotationError, match="no masks"):  # before the teacher embeds a single image
        SamPromptDistillTask(tiny_teacher_sam(IMG)).build_data(_cfg(tmp_path, root), DistInfo())
    assert not list((tmp_path / "cache").rglob("shard_*"))

    sa, truth = make_sa1b(tmp_path / "sa")
    no_masks = {"image": {"width": W, "height": H}, "annotations": [{"bbox": [0, 0, 1, 1]}]}
    (sa / "sa_1.json").write_text(json.dumps(no_masks))
    ann = find_mask_annotations(sa, sorted(truth))
    with pytest.raises(MaskAnnotationError, match=r"sa_1\.json holds no masks"):
        ann.masks("sa_1.jpg")
    (sa / "sa_2.json").write_text("{not json")
    with pytest.raises(MaskAnnotationError, match=r"cannot read annotation file .*sa_2\.json"):
        ann.masks("sa_2.jpg")
    (sa / "sa_3.json").unlink()  # an image without its JSON is counted, and asking for its masks names the fix
    ann = find_mask_annotations(sa, sorted(truth))
    assert ann.missing == ["sa_3.jpg"]
    with pytest.raises(MaskAnnotationError, match=r"sa_3\.jpg has no annotated masks .*sa_3\.json"):
        ann.masks("sa_3.jpg")
    with pytest.raises(MaskAnnotationError, match=r"sa_0\.json gives image .* the size 96x128, but it is 48x64"):
        low_res_prompt_masks(ann.masks("sa_0.jpg"), (48, 64), IMG, sa / "sa_0.jpg")
    (sa / "instances_x.json").write_text("{}")
    with pytest.raises(MaskAnnotationError, match="both COCO instances files"):
        find_mask_annotations(sa, sorted(truth))
    (sa / "instances_x.json").unlink()
    (sa / "sa_0.json").write_text(json.dumps({"annotations": []}))  # the first JSON is read at once
    with pytest.raises(MaskAnnotationError, match=r"sa_0\.json is not an SA-1B annotation file"):
        find_mask_annotations(sa, sorted(truth))


def _cfg(tmp_path, images, **kw):
    base = dict(model="repvit_m0_9", data=str(images), output_dir=str(tmp_path / "run"), img_size=IMG, epochs=1,
                batch_size=2, cache_dir=str(tmp_path / "cache"), cache_dtype="float32", shard_size=4,
                val_fraction=0.25, warmup_epochs=0, tensorboard=False, plot=False, progress=False, workers=0,
                max_prompts=3, eval_prompts=2, refine_iters=1, phase="prompt", iters=2)
    return SamDistillConfig(**{**base, **kw})


@pytest.mark.parametrize("layout", ["coco", "sa1b"])
def test_two_phase_two_steps_on_annotated_masks(tmp_path, layout, caplog):
    """`distill --phase prompt` on an annotated folder: the log and the checkpoint say the prompts came from the
    annotations, the image without masks is left out (COCO), and training and the held-out pass run on them."""
    from repvit.engine.checkpoint import load_train_checkpoint

    root, truth = (make_coco if layout == "coco" else make_sa1b)(tmp_path / layout)
    with caplog.at_level(logging.INFO, logger="repvit.sam"):
        res = distill(_cfg(tmp_path, root), tiny_teacher_sam(IMG))
    assert res["steps"] == 2 and 0 < res["eval"]["mask_loss"] < 20 and res["eval"]["images"] >= 1
    assert f"phase 2 prompts: from the annotated masks ({layout} layout" in caplog.text
    meta = load_train_checkpoint(res["last_checkpoint"])["meta"]
    assert meta["prompt_masks"]["source"] == "annotations" and meta["prompt_masks"]["layout"] == layout
    n_without = sum(not m for m in truth.values())
    assert meta["prompt_masks"]["images_without_masks"] == n_without
    if n_without:
        assert "1 images have no annotated masks and are left out (train/im005.png)" in caplog.text


def test_prompt_masks_setting(tmp_path, caplog):
    """'teacher' ignores the annotations (and says so); 'annotations' without any is an error naming the folder."""
    from repvit.engine.distributed import DistInfo

    root, _ = make_sa1b(tmp_path / "sa", n=4)
    teacher = tiny_teacher_sam(IMG)
    cfg = _cfg(tmp_path, root)
    task = SamPromptDistillTask(teacher, prompt_masks="teacher")
    with caplog.at_level(logging.INFO, logger="repvit.sam"):
        data = task.build_data(cfg, DistInfo())
    assert data.meta["prompt_masks"] == {"source": "teacher"} and data.train[0][4] is None
    assert "from the teacher's masks (prompt_masks='teacher')" in caplog.text
    for f in root.glob("*.json"):
        f.unlink()
    with pytest.raises(FileNotFoundError, match=r"prompt_masks='annotations' but .*sa has no annotations"):
        SamPromptDistillTask(teacher, prompt_masks="annotations").build_data(cfg, DistInfo())
    with pytest.raises(ValueError, match="prompt_masks must be one of auto, teacher, annotations"):
        SamPromptDistillTask(teacher, prompt_masks="gt")


def test_cli_prompt_masks_reaches_the_config_and_bad_values_are_refused(tmp_path, capsys):
    from repvit.cli.main import main

    assert main(["sam", "distill", "--images", str(tmp_path), "--phase", "prompt", "--prompt-masks", "teacher",
                 "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["prompt_masks"] == "teacher"
    assert main(["sam", "distill", "--images", str(tmp_path), "--set", "prompt_masks=everything",
                 "--print-config"]) != 0
    assert "auto, teacher, annotations" in capsys.readouterr().err
