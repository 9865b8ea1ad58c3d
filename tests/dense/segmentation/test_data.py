"""ADE20K-layout reading (reduce_zero_label as mmseg defines it), v2 joint transforms, metrics vs scikit-learn, and
every bad-input case with an error naming the file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from repvit.dense.segmentation.data import (
    IGNORE_INDEX,
    ADE20KSegmentation,
    SegmentationView,
    eval_transform,
    segment_collate,
    train_transform,
)
from repvit.dense.segmentation.metrics import confusion_matrix, metrics_from_confusion
from tests.dense.segmentation._ade import make_ade_folder


@pytest.fixture
def ade(tmp_path):
    return make_ade_folder(tmp_path / "ade", num_classes=4, n_train=4, n_val=2)


def test_reduce_zero_label(ade):
    ds = ADE20KSegmentation(ade, "validation", num_classes=4)
    raw = np.asarray(Image.open(ds.labels[0])).astype(np.int64)
    _, lab = ds.load(0)
    # mmseg: 0 -> 255, v -> v - 1, 255 stays 255
    want = np.where(raw == 0, 255, np.where(raw == 255, 255, raw - 1))
    assert np.array_equal(lab.numpy(), want) and lab.dtype == torch.int64
    keep = ADE20KSegmentation(ade, "validation", num_classes=5, reduce_zero_label=False)
    assert np.array_equal(keep.load(0)[1].numpy(), raw)


def test_joint_train_transform_keeps_labels_aligned(ade):
    tf = train_transform(32, scale=(0.5, 2.0), photometric=True)
    view = SegmentationView(ADE20KSegmentation(ade, "training", num_classes=4), tf, train=True)
    torch.manual_seed(0)
    for i in range(4):
        x, y = view[i]
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y.shape == (32, 32)
        assert set(y.unique().tolist()) <= {0, 1, 2, 3, IGNORE_INDEX}
    # geometry only (no photometric change): every labelled pixel keeps its class colour after resize+crop+flip
    tf = train_transform(40, scale=(1.0, 1.0001), photometric=False, hflip=1.0, mean=(0, 0, 0), std=(1, 1, 1))
    ds = ADE20KSegmentation(ade, "training", num_classes=4)
    x, y = SegmentationView(ds, tf, train=True)[0]
    img, lab = ds.load(0)
    colour = {int(c): img[:, lab == c].float().mean(1) / 255 for c in lab.unique() if c != IGNORE_INDEX}
    for c, col in colour.items():
        inner = (y == c)
        if inner.sum() > 20:
            assert (x[:, inner].mean(1) - col).abs().max() < 0.08


def test_eval_collate_pads_and_keeps_original_label_size(ade):
    view = SegmentationView(ADE20KSegmentation(ade, "validation", num_classes=4), eval_transform(32), train=False)
    x, y, sizes = segment_collate([view[0], view[1]])
    assert x.shape[0] == 2 and sizes.shape == (2, 4)
    assert tuple(sizes[0, 2:].tolist()) == (48, 64) and tuple(sizes[1, 2:].tolist()) == (56, 56)
    assert min(sizes[0, :2].tolist()) == 32  # shorter side resized to img_size
    assert (y[0, 48:, :] == IGNORE_INDEX).all()  # label padding is ignored


def test_metrics_match_scikit_learn():
    from sklearn.metrics import accuracy_score, jaccard_score

    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 5, (4, 20, 20), generator=g)
    pred = torch.where(torch.rand(4, 20, 20, generator=g) < 0.7, target, torch.randint(0, 5, (4, 20, 20), generator=g))
    target[:, :3] = IGNORE_INDEX
    target[target == 4] = 3  # class 4 never in the labels, only in predictions
    m = metrics_from_confusion(confusion_matrix(pred, target, 6))
    valid = target != IGNORE_INDEX
    t, p = target[valid].numpy(), pred[valid].numpy()
    ref = jaccard_score(t, p, labels=[0, 1, 2, 3, 4], average=None, zero_division=0)
    assert np.allclose(m["per_class_iou"][:5], ref)
    assert m["per_class_iou"][5] is None  # class 5: in neither labels nor predictions
    assert m["miou"] == pytest.approx(ref.mean())
    assert m["pixel_acc"] == pytest.approx(accuracy_score(t, p))


# ------------------------------------------------------------------------------------------------- bad input
def test_label_values_out_of_range_name_the_file(ade):
    bad = ade / "annotations" / "training" / "ADE_0001.png"
    lab = np.asarray(Image.open(bad)).copy()
    lab[5, 5] = 9
    Image.fromarray(lab).save(bad)
    ds = ADE20KSegmentation(ade, "training", num_classes=4)
    with pytest.raises(ValueError, match=r"ADE_0001\.png has values \[9\] outside \[0, 4\]"):
        ds[1]
    ds[0]  # the others still read


def test_image_label_size_mismatch_names_both_files(ade):
    bad = ade / "annotations" / "validation" / "ADE_0000.png"
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(bad)
    with pytest.raises(ValueError, match=r"image .*ADE_0000\.jpg is 64x48 but its label .*ADE_0000\.png is 10x10"):
        ADE20KSegmentation(ade, "validation", num_classes=4)[0]


def test_missing_label_file(ade):
    (ade / "annotations" / "training" / "ADE_0002.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing label file .*ADE_0002\.png for image .*ADE_0002\.jpg"):
        ADE20KSegmentation(ade, "training", num_classes=4)


def test_empty_split(ade):
    for p in (ade / "images" / "validation").iterdir():
        p.unlink()
    with pytest.raises(ValueError, match=r"empty split: .*images/validation"):
        ADE20KSegmentation(ade, "validation", num_classes=4)


def test_not_ade_layout_and_missing_num_classes(tmp_path, ade):
    with pytest.raises(FileNotFoundError, match="ADE20K's layout"):
        ADE20KSegmentation(tmp_path, "training", num_classes=4)
    with pytest.raises(ValueError, match="--num-classes"):
        ADE20KSegmentation(ade, "training", num_classes=None)
