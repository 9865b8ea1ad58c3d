"""The built-in digits set: a fixed, stratified held-out split that is never trained on."""

import numpy as np
import pytest
import torch

pytest.importorskip("sklearn", reason="the digits set comes from scikit-learn (pip install 'repvit-pytorch[digits]')")

from sklearn.datasets import load_digits  # noqa: E402

from repvit.data import DigitsDataset, build_datasets, digits_transform, load_digits_split  # noqa: E402
from repvit.data.digits import digits_split_indices  # noqa: E402


def test_split_is_fixed_disjoint_stratified_and_large_enough():
    idx = digits_split_indices()
    tr, va = idx["train"], idx["val"]
    y = load_digits().target
    assert len(tr) + len(va) == len(y) == 1797
    assert not set(tr) & set(va)
    assert len(va) / len(y) >= 0.20
    # stratified: every class holds out 20-30% of its images
    for c in range(10):
        frac = (y[va] == c).sum() / (y == c).sum()
        assert 0.2 <= frac <= 0.3, (c, frac)
    digits_split_indices.cache_clear()
    again = digits_split_indices()
    assert np.array_equal(again["val"], va)


def test_split_and_images_are_scikit_learns():
    from sklearn.model_selection import train_test_split

    from repvit.data.digits import raw_digits

    d = load_digits()
    images, labels = raw_digits()  # read from scikit-learn's file without importing it
    assert np.array_equal(images, d.images.astype(np.float32) / 16.0) and np.array_equal(labels, d.target)
    tr, va = train_test_split(np.arange(len(d.target)), test_size=0.25, stratify=d.target, random_state=0)
    idx = digits_split_indices()
    assert np.array_equal(idx["train"], np.sort(tr)) and np.array_equal(idx["val"], np.sort(va))


def test_tensors_match_sklearn_images():
    d = load_digits()
    va = digits_split_indices()["val"]
    x, y = load_digits_split("val", img_size=8, in_chans=1)
    assert x.shape == (len(va), 1, 8, 8)
    assert torch.equal(y, torch.from_numpy(d.target[va]))
    # at the native size bicubic resize is the identity: the normalised pixels are the raw 0..16 values
    ref = torch.from_numpy(d.images[va] / 16.0).float()
    assert torch.allclose(x[:, 0] * 0.5 + 0.5, ref, atol=1e-6)


def test_datasets_bundle_and_three_channels():
    b = build_datasets("digits", img_size=32)
    assert (len(b.train), len(b.val), b.num_classes) == (1347, 450, 10)
    x, t = b.val[0]
    assert x.shape == (3, 32, 32) and 0 <= t < 10
    assert torch.equal(x[0], x[1])
    with pytest.raises(ValueError, match="split"):
        DigitsDataset("test")


def test_image_file_preprocessing_matches_the_dataset(tmp_path):
    """A digit saved as a PNG and read back by the predict transform gives the data set's tensor."""
    from PIL import Image

    d = load_digits()
    i = int(digits_split_indices()["val"][0])
    arr = np.round(d.images[i] / 16.0 * 255).astype(np.uint8)
    Image.fromarray(255 - arr).resize((64, 64), Image.NEAREST).save(tmp_path / "d.png")  # dark ink on white
    with Image.open(tmp_path / "d.png") as im:
        got = digits_transform(32)(im.convert("RGB"))
    x, _ = load_digits_split("val", img_size=32)
    assert torch.allclose(got, x[0], atol=0.02)
