"""The training loader: a batch's images and augmentations depend only on ``(seed, epoch, rank, batch index)``."""

import random

import numpy as np
import pytest
import torch
from torch.utils.data import Subset

pytest.importorskip("sklearn", reason="the digits set comes from scikit-learn (pip install 'repvit-pytorch[digits]')")

from repvit.data import DigitsDataset, digits_train_transform  # noqa: E402
from repvit.data.loader import train_loader  # noqa: E402


@pytest.fixture(scope="module")
def ds():
    full = DigitsDataset("train", 16, transform=digits_train_transform(degrees=20, re_prob=0.5))
    return Subset(full, range(80))  # 5 batches of 16


def _batches(ds, **kw):
    return [(x, y) for x, y, _ in train_loader(ds, 16, seed=3, **kw)]


def _same(a, b):
    return len(a) == len(b) and all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))


def test_batches_do_not_depend_on_workers_or_on_resuming(ds):
    ref = _batches(ds, epoch=1)
    assert len(ref) == 5
    assert _same(_batches(ds, epoch=1), ref)  # deterministic
    assert _same(_batches(ds, epoch=1, workers=2), ref)  # whichever worker loads a batch
    # resuming at batch 3 (an odd one: another worker than in the full epoch) gives the epoch's last two batches
    assert _same(_batches(ds, epoch=1, workers=2, skip_batches=3), ref[3:])
    assert _same(_batches(ds, epoch=1, skip_batches=1), ref[1:])
    assert not _same(_batches(ds, epoch=2), ref)


def test_loading_leaves_the_trainers_rngs_alone(ds):
    """Mixup and dropout draw from the trainer's global RNGs; loading batches in-process must not move them."""
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    before = random.random(), np.random.rand(), torch.rand(1).item()
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    _batches(ds, epoch=0)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == before


def test_distributed_shards_resume_and_repeated_copies(ds):
    r0 = _batches(ds, epoch=0, rank=0, world_size=2)
    r1 = _batches(ds, epoch=0, rank=1, world_size=2)
    assert len(r0) == len(r1) == 2  # 40 images per rank, batches of 16, the last incomplete one dropped
    assert _same(_batches(ds, epoch=0, rank=1, world_size=2, workers=2, skip_batches=1), r1[1:])
    # repeated augmentation (timm's RepeatAugSampler): the copies of an image are augmented differently
    loader = train_loader(ds, 16, seed=3, epoch=0, repeated_aug=True)
    idx = [i for b in loader.batch_sampler for i in b.indices]
    x = torch.cat([b[0] for b in loader])
    pairs = [k for k in range(1, len(idx)) if idx[k] == idx[k - 1]]
    assert pairs and all(not torch.equal(x[k], x[k - 1]) for k in pairs)
