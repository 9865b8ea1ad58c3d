"""The mask overlay the app and ``repvit sam predict`` draw: a uint8 blend equal to the float formula."""

import numpy as np
import pytest

from repvit.sam.predict import mask_overlay


@pytest.mark.parametrize("shape", [(40, 50, 3), (40, 50), (40, 50, 4)])
def test_overlay_blends_inside_the_mask_only(shape):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    mask = np.zeros((40, 50), bool)
    mask[5:20, 10:30] = True
    mask[33, 2] = True
    out = mask_overlay(img, mask, color=(30, 144, 255), alpha=0.5)
    rgb = np.repeat(img[..., None], 3, -1) if img.ndim == 2 else img[..., :3]
    assert out.shape == (40, 50, 3) and out.dtype == np.uint8
    assert np.array_equal(out[~mask], rgb[~mask])
    ref = 0.5 * rgb[mask].astype(np.float64) + 0.5 * np.array([30, 144, 255])
    assert np.abs(out[mask] - ref).max() <= 1.0


def test_overlay_of_an_empty_mask_is_the_image_and_marks_prompts():
    img = np.full((60, 60, 3), 128, np.uint8)
    out = mask_overlay(img, np.zeros((60, 60), bool))
    assert np.array_equal(out, img)
    marked = mask_overlay(img, np.zeros((60, 60), bool), points=[(30, 30, 1)], box=(5, 5, 50, 50))
    assert tuple(marked[30, 30]) == (0, 200, 0)  # a foreground point is green
    assert tuple(marked[5, 20]) == (255, 215, 0)  # the box is yellow
