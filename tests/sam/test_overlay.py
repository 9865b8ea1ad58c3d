"""The mask overlay the app and ``repvit sam predict`` draw (a uint8 blend equal to the float formula) and the mask
PNG they write (1-bit, read back by PIL and zlib)."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from repvit.sam.predict import MaskPainter, mask_overlay, mask_png, save_png


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


def test_a_painter_draws_each_mask_of_its_photo_as_a_fresh_blend():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    painter = MaskPainter(img, color=(200, 10, 90), alpha=0.3)
    masks = [rng.random((30, 40)) < f for f in (0.2, 0.0, 0.9, 0.5)]
    for mask in masks:  # the tinted copy is made once and reused; no mask leaks into the next drawing
        out = np.asarray(painter.draw(mask, points=[(3, 3, 0)]))
        ref = 0.7 * img.astype(np.float64) + 0.3 * np.array([200, 10, 90])
        far = np.ones((30, 40), bool)
        far[:9, :9] = False  # away from the point's marker
        assert np.array_equal(out[far & ~mask], img[far & ~mask])
        assert np.abs(out[far & mask] - ref[far & mask]).max(initial=0) <= 1.0
        assert np.array_equal(out, mask_overlay(img, mask, [(3, 3, 0)], color=(200, 10, 90), alpha=0.3))
    assert np.array_equal(np.asarray(painter.photo), img)  # drawing never changes the photo
    with pytest.raises(ValueError, match="draw masks of this photo"):
        painter.draw(np.zeros((40, 30), bool))


@pytest.mark.parametrize("shape", [(1, 1), (3, 9), (5, 16), (37, 100), (768, 1024)])
@pytest.mark.parametrize("fill", [0.0, 0.5, 1.0])
def test_mask_png_reads_back_as_the_mask(shape, fill):
    mask = np.random.default_rng(0).random(shape) < fill
    data = mask_png(mask)
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        assert im.format == "PNG" and im.mode == "1" and im.size == shape[::-1]
        assert np.array_equal(np.asarray(im), mask)
        assert np.array_equal(np.asarray(im.convert("L")), mask * np.uint8(255))
    # the chunks' CRCs and the deflate stream, checked by zlib itself (PIL does not check CRCs by default)
    pos = 8
    while pos < len(data):
        n, tag = struct.unpack(">I4s", data[pos:pos + 8])
        body, crc = data[pos + 8:pos + 8 + n], struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0]
        assert zlib.crc32(tag + body) == crc, tag
        if tag == b"IDAT":
            rows = np.frombuffer(zlib.decompress(body), np.uint8).reshape(shape[0], -1)
            assert (rows[:, 0] == 0).all() and np.array_equal(np.unpackbits(rows[:, 1:], axis=1)[:, :shape[1]], mask)
        pos += 12 + n
    assert tag == b"IEND"


def test_save_png_writes_masks_as_1_bit_and_images_as_they_are(tmp_path):
    rng = np.random.default_rng(0)
    mask, image = rng.random((20, 30)) < 0.3, rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    with Image.open(save_png(mask, tmp_path / "m.png")) as im:
        assert im.mode == "1" and np.array_equal(np.asarray(im), mask)
    with Image.open(save_png(image, tmp_path / "i.png")) as im:
        assert im.mode == "RGB" and np.array_equal(np.asarray(im), image)
    for bad in (np.zeros((2, 3, 1), bool), np.zeros((0, 4), bool)):
        with pytest.raises(ValueError, match="mask"):
            mask_png(bad)
