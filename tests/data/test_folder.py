"""ImageFolder data: clear errors for bad trees, unreadable images skipped and counted, the paper's eval transform."""

import numpy as np
import pytest
import torch
from PIL import Image

from repvit.data import BadSample, RobustImageFolder, build_datasets, build_eval_dataset, eval_transform


def make_tree(root, classes=("cat", "dog"), n=3, size=40, splits=("train", "val"), corrupt=0):
    rng = np.random.default_rng(0)
    for s in splits:
        for c in classes:
            d = root / s / c
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (size, size + 8, 3), dtype=np.uint8)).save(d / f"{i}.png")
            for i in range(corrupt):
                (d / f"bad{i}.jpg").write_bytes(b"\xff\xd8\xff this is not a jpeg")
    return root


def test_missing_and_empty_data_dirs(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_datasets(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no train/"):
        build_datasets(tmp_path / "empty")
    (tmp_path / "e2" / "train").mkdir(parents=True)
    (tmp_path / "e2" / "val").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="empty"):
        build_datasets(tmp_path / "e2")
    (tmp_path / "e3" / "train" / "a").mkdir(parents=True)
    (tmp_path / "e3" / "val" / "a").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="holds no images"):
        build_datasets(tmp_path / "e3")


def test_train_val_class_mismatch(tmp_path):
    make_tree(tmp_path, classes=("cat", "dog"), splits=("train",))
    make_tree(tmp_path, classes=("cat", "cow"), splits=("val",))
    with pytest.raises(ValueError, match=r"different classes.*train-only: \['dog'\].*val-only: \['cow'\]"):
        build_datasets(tmp_path, img_size=32)


def test_corrupt_images_skipped_or_strict(tmp_path):
    make_tree(tmp_path, corrupt=1)
    ds = RobustImageFolder(tmp_path / "val", eval_transform(32))
    out = [ds[i] for i in range(len(ds))]
    bad = [o for o in out if isinstance(o, BadSample)]
    assert len(bad) == 2 and all(b.path.endswith("bad0.jpg") for b in bad)
    strict = RobustImageFolder(tmp_path / "val", eval_transform(32), strict=True)
    i = next(i for i, (p, _) in enumerate(strict.samples) if p.endswith("bad0.jpg"))
    with pytest.raises(RuntimeError, match="cannot read image .*bad0.jpg"):
        strict[i]


def test_eval_transform_is_resize256_centercrop224_bicubic():
    """Compare against torchvision's own transforms, written out step by step."""
    from torchvision import transforms as T

    img = Image.fromarray(np.random.default_rng(1).integers(0, 255, (300, 400, 3), dtype=np.uint8))
    ref = T.Compose([T.Resize(256, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(224), T.ToTensor(),
                     T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])(img)
    assert torch.allclose(eval_transform(224)(img), ref, atol=1e-6)
    ref160 = T.Compose([T.Resize(182, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(160)])(img)
    got = eval_transform(160).transforms[:2]
    assert np.array_equal(np.asarray(T.Compose(got)(img)), np.asarray(ref160))


def test_eval_dataset_accepts_root_or_val(tmp_path):
    make_tree(tmp_path)
    a = build_eval_dataset(tmp_path, img_size=32)
    b = build_eval_dataset(tmp_path / "val", img_size=32)
    assert a.class_names == b.class_names == ["cat", "dog"] and len(a.val) == len(b.val) == 6
