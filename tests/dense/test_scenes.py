"""DigitScenes: determinism, the held-out split, and targets consistent by torchvision's own box/mask ops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision import tv_tensors
from torchvision.ops import box_iou, masks_to_boxes
from torchvision.transforms import v2

from repvit.data.digits import digits_split_indices
from repvit.dense.scenes import NUM_SCENE_CLASSES, SCENE_CLASSES, DigitScenes


def test_deterministic_by_seed_split_index():
    a, b = DigitScenes("train", num_scenes=20, seed=3), DigitScenes("train", num_scenes=20, seed=3, cache=False)
    for i in (0, 7, 19):
        (ia, ta), (ib, tb) = a[i], b[i]
        assert torch.equal(ia, ib) and torch.equal(ta["masks"], tb["masks"]) and torch.equal(ta["boxes"], tb["boxes"])
    other = DigitScenes("train", num_scenes=20, seed=4)
    assert not torch.equal(a[0][0], other[0][0])
    assert not torch.equal(a[0][0], DigitScenes("val", seed=3)[0][0])


def test_validation_uses_only_held_out_digits():
    val, train = DigitScenes("val"), DigitScenes("train", num_scenes=50)
    assert len(val) >= 200
    held_out, train_ids = set(digits_split_indices()["val"].tolist()), set(digits_split_indices()["train"].tolist())
    from sklearn.datasets import load_digits

    target = load_digits().target
    for i in range(50):
        _, _, digits, glyphs = val.render(i)
        assert set(glyphs.tolist()) <= held_out and np.array_equal(target[glyphs], digits)
        assert set(train.render(i)[3].tolist()) <= train_ids


def test_targets_are_consistent():
    ds = DigitScenes("val", size=80)
    counts = []
    for i in range(40):
        img, t = ds[i]
        assert isinstance(img, tv_tensors.Image) and img.dtype == torch.uint8 and img.shape == (3, 80, 80)
        sem, masks, boxes, labels = t["semantic"], t["masks"], t["boxes"], t["labels"]
        assert isinstance(sem, tv_tensors.Mask) and sem.dtype == torch.int64 and sem.shape == (80, 80)
        assert isinstance(masks, tv_tensors.Mask) and masks.dtype == torch.uint8
        assert isinstance(boxes, tv_tensors.BoundingBoxes) and boxes.format == tv_tensors.BoundingBoxFormat.XYXY
        assert labels.dtype == torch.int64 and ((labels >= 1) & (labels < NUM_SCENE_CLASSES)).all()
        assert t["image_id"] == i and len(labels) >= 1
        # box = tight box of the visible mask (pixel edges), by torchvision's masks_to_boxes
        want = masks_to_boxes(masks.bool()) + torch.tensor([0.0, 0.0, 1.0, 1.0])
        assert torch.equal(boxes.as_subclass(torch.Tensor), want)
        # visible masks are disjoint and paint the semantic map
        assert masks.sum(0).max() <= 1
        painted = (masks.long() * labels[:, None, None]).sum(0)
        assert torch.equal(painted, sem.as_subclass(torch.Tensor))
        iou = box_iou(boxes, boxes) - torch.eye(len(boxes))
        assert iou.max() < 0.5  # mostly non-overlapping
        counts.append(len(labels))
    assert max(counts) > 1 and len(SCENE_CLASSES) == 11


def test_joint_v2_transform_moves_everything_together():
    tf = v2.Compose([v2.RandomHorizontalFlip(p=1.0), v2.RandomResize(96, 97)])
    plain, flipped = DigitScenes("val")[5], DigitScenes("val", transform=tf)[5]
    img, t = flipped
    assert img.shape[-2:] == (96, 96) and t["semantic"].shape == (96, 96) and t["masks"].shape[-2:] == (96, 96)
    back = torch.flip(plain[1]["semantic"], [-1])
    small = torch.nn.functional.interpolate(t["semantic"][None, None].float(), size=(64, 64), mode="nearest")[0, 0]
    assert (small.long() == back).float().mean() > 0.97


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        DigitScenes("test")
    with pytest.raises(ValueError, match="200"):
        DigitScenes("val", num_scenes=50)
    with pytest.raises(ValueError, match="32"):
        DigitScenes("train", size=16)


def test_semantic_only_targets_equal_the_full_ones():
    full, lean = DigitScenes("val", num_scenes=200), DigitScenes("val", num_scenes=200, instances=False)
    for i in (0, 7, 199):
        (img_f, t_f), (img_l, t_l) = full[i], lean[i]
        assert torch.equal(img_f, img_l) and torch.equal(t_f["semantic"], t_l["semantic"])
        assert set(t_l) == {"semantic", "image_id"} and t_l["image_id"] == t_f["image_id"] == i
