"""SAM 2's mask clean-up on the CPU: connected components, hole filling, sprinkle removal."""

import numpy as np
import pytest
import torch

from repvit.sam.sam2.postprocess import connected_components, fill_holes_in_mask_scores, postprocess_mask_logits

pytest.importorskip("scipy.ndimage")


def test_connected_components_match_skimage():
    measure = pytest.importorskip("skimage.measure")
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(3, 1, 17, 23, generator=g) > 0.55
    labels, areas = connected_components(mask)
    assert labels.dtype == areas.dtype == torch.int32 and labels.shape == mask.shape
    for i in range(3):
        want = measure.label(mask[i, 0].numpy(), connectivity=2, background=0)
        # the same partition into components (labels may be numbered differently)
        pairs = {(int(a), int(b)) for a, b in zip(labels[i, 0].flatten(), want.flatten())}
        assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs})
        sizes = np.bincount(want.ravel())
        sizes[0] = 0
        assert torch.equal(areas[i, 0], torch.from_numpy(sizes[want].astype(np.int32)))
    assert torch.all((labels == 0) == ~mask) and torch.all((areas == 0) == ~mask)


def test_diagonal_pixels_are_one_component():
    mask = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    mask[0, 0, 1, 1] = mask[0, 0, 2, 2] = True
    labels, areas = connected_components(mask)
    assert labels[0, 0, 1, 1] == labels[0, 0, 2, 2] > 0
    assert areas[0, 0, 1, 1] == 2


def test_fill_holes_fills_small_background_regions_only():
    logits = torch.full((2, 1, 12, 12), 5.0)
    logits[0, 0, 2:4, 2:4] = -3.0  # an enclosed hole of 4 pixels
    logits[0, 0, 6:9, 6:9] = -3.0  # an enclosed hole of 9 pixels
    logits[1, 0, 0, 0:3] = -1.0  # a background region of 3 pixels on the border: SAM 2 fills it too
    logits[1, 0, :, 8:] = -2.0  # a large background region stays
    out = fill_holes_in_mask_scores(logits, max_area=8)
    assert torch.all(out[0, 0, 2:4, 2:4] == 0.1)
    assert torch.all(out[0, 0, 6:9, 6:9] == -3.0)
    assert torch.all(out[1, 0, 0, 0:3] == 0.1)
    assert torch.all(out[1, 0, :, 8:] == -2.0)
    unchanged = torch.ones_like(logits, dtype=torch.bool)
    unchanged[0, 0, 2:4, 2:4] = unchanged[1, 0, 0, 0:3] = False
    assert torch.equal(out[unchanged], logits[unchanged])
    assert out.dtype == logits.dtype


def test_fill_holes_treats_zero_as_background():
    logits = torch.full((1, 1, 5, 5), 1.0)
    logits[0, 0, 2, 2] = 0.0
    assert fill_holes_in_mask_scores(logits, 1)[0, 0, 2, 2] == pytest.approx(0.1)


def test_fill_holes_rejects_non_positive_area():
    with pytest.raises(ValueError, match="positive"):
        fill_holes_in_mask_scores(torch.zeros(1, 1, 4, 4), 0)


def test_connected_components_checks_shape():
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        connected_components(torch.zeros(4, 4, dtype=torch.bool))


def test_postprocess_mask_logits_holes_and_sprinkles():
    logits = torch.full((1, 2, 10, 10), -4.0)
    logits[0, 0, 1:8, 1:8] = 3.0
    logits[0, 0, 4, 4] = -1.0  # a 1-pixel hole in mask 0
    logits[0, 1, 0, 9] = 2.0  # a 1-pixel sprinkle in mask 1
    logits[0, 1, 5:10, 0:5] = 2.0  # a large region in mask 1
    out = postprocess_mask_logits(logits, max_hole_area=2, max_sprinkle_area=2)
    assert out[0, 0, 4, 4] == 10.0 and out[0, 1, 0, 9] == -10.0
    assert torch.all(out[0, 1, 5:10, 0:5] == 2.0) and torch.all(out[0, 0, 1:8, 1:4] == 3.0)
    assert torch.equal(postprocess_mask_logits(logits), logits)  # both areas 0: nothing changes
