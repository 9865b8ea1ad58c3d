"""The per-click SAM decoder (:class:`repvit.sam.click.ClickDecoder`) against segment-anything's ``SamPredictor``:
the same low-resolution logits, predicted IoU, candidate and mask for point and box prompts, and the session's
masks equal the predictor's."""

import copy

import numpy as np
import pytest
import torch

from repvit.sam.click import ClickDecoder
from repvit.sam.session import SamSession

PROMPTS = {  # (points, box, multimask)
    "one point, three candidates": ([(100.0, 80.0, 1)], None, True),
    "one point, one mask": ([(100.0, 80.0, 1)], None, False),
    "two points": ([(100.0, 80.0, 1), (30.0, 40.0, 0)], None, False),
    "a box": ([], (10.0, 20.0, 150.0, 180.0), False),
    "a box and a point": ([(90.0, 70.0, 0)], (10.0, 20.0, 150.0, 180.0), False),
    "twenty points (image-side projections)": ([(i * 11.0, i * 9.0, i % 2) for i in range(20)], None, True),
}


def _image(h: int = 200, w: int = 256) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _reference(predictor, points, box, multimask):
    coords = np.array([p[:2] for p in points], np.float32) if points else None
    labels = np.array([p[2] for p in points]) if points else None
    masks, scores, low = predictor.predict(coords, labels, None if box is None else np.array(box, np.float32),
                                           multimask_output=multimask)
    best = int(np.argmax(scores))
    return masks[best], float(scores[best]), torch.from_numpy(low[best]), best


def _sparse(sam, predictor, points, box):
    tr, size = predictor.transform, predictor.original_size
    pts = None
    if points:
        coords = torch.as_tensor(tr.apply_coords(np.array([p[:2] for p in points], np.float32), size))
        pts = (coords[None], torch.tensor([[p[2] for p in points]]))
    boxes = None if box is None else torch.as_tensor(tr.apply_boxes(np.array(box, np.float32)[None], size))
    with torch.inference_mode():
        return sam.prompt_encoder(points=pts, boxes=boxes, masks=None)[0]


@pytest.fixture(scope="module")
def predictor(small_sam):
    from segment_anything import SamPredictor

    p = SamPredictor(small_sam)
    p.set_image(_image())
    return p


@pytest.mark.parametrize("name", list(PROMPTS))
def test_click_decoder_equals_sam_predictor(small_sam, predictor, name):
    points, box, multimask = PROMPTS[name]
    ref_mask, ref_score, ref_low, ref_best = _reference(predictor, points, box, multimask)
    dec = ClickDecoder(small_sam)
    low, score, index = dec.decode(dec.prepare(predictor.features), _sparse(small_sam, predictor, points, box),
                                   multimask)
    assert index == (ref_best + 1 if multimask else 0)
    assert score == pytest.approx(ref_score, abs=1e-5)
    assert low.shape == (1, 1, *ref_low.shape)
    torch.testing.assert_close(low[0, 0], ref_low, rtol=1e-4, atol=1e-5 * float(ref_low.abs().max()))
    mask = dec.upscale(low, predictor.input_size, predictor.original_size, small_sam.mask_threshold)
    assert mask.shape == ref_mask.shape and mask.dtype == bool
    agree = np.logical_and(mask, ref_mask).sum() / max(1, np.logical_or(mask, ref_mask).sum())
    assert agree >= 0.999


@pytest.mark.parametrize("size", [(200, 256), (256, 256), (500, 333), (90, 700)])
def test_upscale_equals_postprocess_masks(small_sam, size):
    from segment_anything.utils.transforms import ResizeLongestSide

    s = small_sam.image_encoder.img_size
    input_size = ResizeLongestSide(s).get_preprocess_shape(*size, s)
    low = torch.randn(1, 1, s // 4, s // 4, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref = small_sam.postprocess_masks(low, input_size, size)[0, 0]
    got = ClickDecoder(small_sam).upscale(low, input_size, size)
    assert got.shape == size
    assert (got == (ref > 0).numpy()).mean() >= 0.9999  # float rounding at a logit of exactly 0 only


@pytest.mark.parametrize("size", [(200, 256), (90, 256), (256, 90), (256, 256)])
def test_decode_for_an_input_size_is_the_top_left_of_the_full_map(small_sam, size):
    from segment_anything import SamPredictor

    p = SamPredictor(small_sam)
    p.set_image(_image(*size))
    dec = ClickDecoder(small_sam)
    ctx = dec.prepare(p.features)
    sparse = _sparse(small_sam, p, [(size[1] * 0.4, size[0] * 0.6, 1)], None)
    full, score, index = dec.decode(ctx, sparse, True)
    part, part_score, part_index = dec.decode(ctx, sparse, True, p.input_size)
    rh, rw = dec.low_res_extent(p.input_size)
    assert part.shape[-2:] == tuple(4 * -(-r // 4) for r in (rh, rw)) and part_index == index
    assert part_score == score
    torch.testing.assert_close(part[0, 0], full[0, 0, :part.shape[-2], :part.shape[-1]], rtol=1e-5,
                               atol=1e-6 * float(full.abs().max()))
    ref = small_sam.postprocess_masks(full, p.input_size, p.original_size)[0, 0] > 0
    assert (dec.upscale(part, p.input_size, p.original_size) == ref.numpy()).mean() >= 0.9999
    with pytest.raises(ValueError, match="decode with that input_size"):
        dec.upscale(part[..., :rh - 1, :], p.input_size, p.original_size)


def _perturbed(sam, seed: int):
    """A copy of ``sam`` whose mask decoder has random LayerNorm scales and shifts (not 1 and 0)."""
    import copy

    sam = copy.deepcopy(sam)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sam.mask_decoder.named_parameters():
            if "norm" in name or "output_upscaling.1" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3 + (1.0 if name.endswith("weight") else 0.0))
    return sam


def test_click_decoder_with_random_norms_and_after_weight_changes_equals_sam_predictor(small_sam):
    from segment_anything import SamPredictor

    sam = _perturbed(small_sam, seed=3)
    dec = ClickDecoder(sam)
    for _ in range(2):
        p = SamPredictor(sam)
        p.set_image(_image())
        for name in ("one point, three candidates", "a box and a point"):
            points, box, multimask = PROMPTS[name]
            ref_mask, ref_score, ref_low, ref_best = _reference(p, points, box, multimask)
            low, score, index = dec.decode(dec.prepare(p.features), _sparse(sam, p, points, box), multimask)
            assert index == (ref_best + 1 if multimask else 0) and score == pytest.approx(ref_score, abs=1e-5)
            torch.testing.assert_close(low[0, 0], ref_low, rtol=1e-4, atol=1e-5 * float(ref_low.abs().max()))
        # change weights the decoder derives cached tensors from, in place: the next clicks must follow them
        with torch.no_grad():
            sam.mask_decoder.transformer.final_attn_token_to_image.k_proj.weight.mul_(1.5)
            sam.mask_decoder.output_upscaling[0].weight.mul_(0.7)
            sam.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix.mul_(1.3)


def test_session_masks_equal_sam_predictor(small_sam, predictor):
    session = SamSession(small_sam)
    emb, fresh = session.embed(_image())
    assert fresh and emb.context is not None and emb.context.nbytes > emb.features.numel() * 4
    for name, (points, box, _) in PROMPTS.items():
        multimask = len(points) == 1 and box is None
        ref_mask, ref_score, *_ = _reference(predictor, points, box, multimask)
        mask, score = session.decode(emb, points, box)
        assert score == pytest.approx(ref_score, abs=1e-5), name
        assert np.logical_and(mask, ref_mask).sum() / max(1, np.logical_or(mask, ref_mask).sum()) >= 0.999, name


def test_click_decoder_refuses_a_batch(small_sam, predictor):
    dec = ClickDecoder(small_sam)
    with pytest.raises(ValueError, match="one image embedding"):
        dec.prepare(predictor.features.expand(2, -1, -1, -1))
    with pytest.raises(ValueError, match="one prompt set"):
        dec.decode(dec.prepare(predictor.features), torch.zeros(2, 3, 256), False)


def test_click_graph_in_onnx_runtime_equals_the_torch_decoder(small_sam, predictor):
    pytest.importorskip("onnxruntime")
    dec = ClickDecoder(small_sam)
    ctx = dec.prepare(predictor.features)
    sess = dec.onnx_session(ctx.grid, threads=1)  # traced with 2 prompt tokens, run with 2 to 22
    for name in ("one point, three candidates", "a box and a point", "twenty points (image-side projections)"):
        points, box, multimask = PROMPTS[name]
        sparse = _sparse(small_sam, predictor, points, box)
        low, score, index = dec.decode(ctx, sparse, multimask)
        got, got_score, got_index = dec.decode_onnx(sess, ctx, sparse, multimask)
        assert got_index == index and got_score == pytest.approx(score, abs=1e-5), name
        torch.testing.assert_close(got, low, rtol=1e-4, atol=1e-5 * float(low.abs().max()))
        for input_size in ((192, 256), (256, 100)):  # a landscape and a portrait image: only their token rows/columns
            low, _, _ = dec.decode(ctx, sparse, multimask, input_size)
            got, _, _ = dec.decode_onnx(sess, ctx, sparse, multimask, input_size)
            assert got.shape == low.shape and low.shape[-2:] != (4 * ctx.grid[0], 4 * ctx.grid[1]), input_size
            torch.testing.assert_close(got, low, rtol=1e-4, atol=1e-5 * float(low.abs().max()))


def test_session_in_onnx_runtime_masks_equal_sam_predictor(small_sam, predictor, monkeypatch):
    """With ONNX Runtime the session encodes the photo there too (the fused encoder's graph: PyTorch's encoder is not
    run), and its embedding, sizes and masks are SamPredictor's."""
    pytest.importorskip("onnxruntime")
    session = SamSession(small_sam, runtime="onnxruntime")
    with monkeypatch.context() as m:
        m.setattr(small_sam.image_encoder, "forward", lambda *a, **k: pytest.fail("PyTorch's encoder ran"))
        emb, fresh = session.embed(_image())
    assert fresh and emb.original_size == tuple(predictor.original_size)
    assert emb.input_size == tuple(predictor.input_size)
    ref = predictor.features
    torch.testing.assert_close(emb.features, ref, rtol=0, atol=1e-4 * float(ref.abs().max()))
    for name in ("one point, three candidates", "a box"):
        points, box, _ = PROMPTS[name]
        ref_mask, ref_score, *_ = _reference(predictor, points, box, len(points) == 1 and box is None)
        mask, score = session.decode(emb, points, box)
        assert score == pytest.approx(ref_score, abs=1e-5), name
        assert np.logical_and(mask, ref_mask).sum() / max(1, np.logical_or(mask, ref_mask).sum()) >= 0.999, name
    with pytest.raises(ValueError, match="unknown runtime"):
        SamSession(small_sam, runtime="tensorrt")
    with pytest.raises(ValueError, match="runs on the CPU"):  # a model elsewhere (here: no storage at all)
        SamSession(copy.deepcopy(small_sam).to("meta"), runtime="onnxruntime")


def test_onnx_session_keeps_torch_threads_but_runs_pytorch_parts_on_one(small_sam, monkeypatch):
    """With ONNX Runtime, the click's PyTorch parts (prompt encoder, up-sampling) run on one thread, so no OpenMP
    worker spins beside ONNX Runtime's; the exported session still gets PyTorch's thread count and that count is
    restored after the click."""
    pytest.importorskip("onnxruntime")
    seen = []
    for runtime, expected in (("onnxruntime", 1), ("torch", 2)):
        before = torch.get_num_threads()
        torch.set_num_threads(2)
        try:
            session = SamSession(small_sam, runtime=runtime)  # exports with PyTorch's 2 threads
            encoder = session.sam.prompt_encoder
            monkeypatch.setattr(encoder, "forward", lambda *a, _f=encoder.forward, **k: (
                seen.append(torch.get_num_threads()), _f(*a, **k))[1])
            emb, _ = session.embed(_image())
            session.decode(emb, [(100.0, 80.0, 1)])
            assert seen[-1] == expected, runtime
            assert torch.get_num_threads() == 2
            if runtime == "onnxruntime":
                ort = session.onnx_session(tuple(small_sam.prompt_encoder.image_embedding_size))
                assert ort.get_session_options().intra_op_num_threads == 2
        finally:
            torch.set_num_threads(before)
            monkeypatch.undo()


def test_click_graphs_export_from_several_threads_at_once(small_sam):
    """torch.onnx.export keeps its state in globals: sessions made at the same time in several threads (an app's
    requests, a second app in the process) still each get a working graph."""
    pytest.importorskip("onnxruntime")
    from concurrent.futures import ThreadPoolExecutor

    dec = ClickDecoder(small_sam)
    grid = tuple(small_sam.prompt_encoder.image_embedding_size)
    with ThreadPoolExecutor(3) as pool:
        graphs = list(pool.map(lambda _: dec.onnx_graph(grid), range(3)))
    assert len(graphs) == 3 and all(len(g) == len(graphs[0]) for g in graphs)
