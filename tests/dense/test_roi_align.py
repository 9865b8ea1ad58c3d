"""RoIAlign's separable CPU backward (repvit.dense.roi_align) against torchvision's own kernel."""

import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops import roi_align as tv_roi_align

from repvit.dense.detection.model import SeparableMultiScaleRoIAlign
from repvit.dense.roi_align import roi_align


def _rois(n_img: int, k: int, side: float, seed: int, dtype=torch.float32) -> torch.Tensor:
    """Boxes in image pixels, some past the borders, some tiny, some the whole image."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(k, 2, generator=g) * side * 1.2 - 0.1 * side
    wh = torch.rand(k, 2, generator=g) * side * 0.6 + torch.rand(k, 1, generator=g) * 3
    boxes = torch.cat([xy, xy + wh], 1)
    boxes[0] = torch.tensor([0.0, 0.0, side, side])  # the whole image
    boxes[1] = torch.tensor([side - 1.0, side - 1.0, side + 5.0, side + 5.0])  # across the far corner
    boxes[2] = torch.tensor([3.0, 3.0, 3.2, 3.1])  # smaller than a pixel
    idx = torch.randint(0, n_img, (k, 1), generator=g).float()
    return torch.cat([idx, boxes], 1).to(dtype)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [1, 2, 3])
@pytest.mark.parametrize("channels_last", [False, True])
def test_gradient_equals_torchvision(aligned, sampling_ratio, channels_last):
    torch.manual_seed(0)
    x = torch.randn(3, 5, 11, 13, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    rois = _rois(3, 40, 50.0, seed=sampling_ratio, dtype=torch.float64)
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ours = roi_align(a, rois, (4, 3), 0.25, sampling_ratio, aligned)
    ref = tv_roi_align(b, rois, (4, 3), 0.25, sampling_ratio, aligned)
    assert ours.grad_fn is not None and "RoIAlign" in type(ours.grad_fn).__name__ and "Backward" in \
        type(ours.grad_fn).__name__ and type(ours.grad_fn) is not type(ref.grad_fn)
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)
    g = torch.randn_like(ref)
    ours.backward(g)
    ref.backward(g)
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("window_cost", [0.0, 40.0, 1e9])  # every block to torchvision's backward, some, none
def test_float32_and_a_block_boundary(monkeypatch, window_cost):
    from repvit.dense import roi_align as mod

    monkeypatch.setattr(mod, "ROI_BLOCK", 7)  # 50 rois: 8 blocks, the last one short
    monkeypatch.setattr(mod, "WINDOW_COST", window_cost)
    torch.manual_seed(1)
    x = torch.randn(2, 8, 16, 16)
    rois = _rois(2, 50, 64.0, seed=5)
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    g = torch.randn(50, 8, 7, 7)
    roi_align(a, rois, 7, 0.25, 1).backward(g)
    tv_roi_align(b, rois, 7, 0.25, 1).backward(g)
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-5)


def test_adaptive_sampling_and_no_grad_run_torchvision():
    x = torch.randn(1, 2, 8, 8, requires_grad=True)
    rois = _rois(1, 5, 30.0, seed=0)
    adaptive = roi_align(x, rois, 3, 0.25, 0)
    assert type(adaptive.grad_fn) is type(tv_roi_align(x, rois, 3, 0.25, 0).grad_fn)
    with torch.no_grad():
        torch.testing.assert_close(roi_align(x, rois, 3, 0.25, 2), tv_roi_align(x, rois, 3, 0.25, 2))


def test_multiscale_pooler_equals_torchvision_in_training_and_eval():
    torch.manual_seed(2)
    names = ["0", "1", "2", "3"]
    feats = {n: torch.randn(2, 6, 32 >> i, 32 >> i, dtype=torch.float64) for i, n in enumerate(names)}
    g = torch.Generator().manual_seed(3)
    boxes = []
    for _ in range(2):
        xy = torch.rand(30, 2, generator=g) * 100
        boxes.append(torch.cat([xy, xy + 4 + torch.rand(30, 2, generator=g) * 120], 1).double())
    shapes = [(128, 128), (120, 128)]
    ours, ref = SeparableMultiScaleRoIAlign(names, 7, 2), MultiScaleRoIAlign(names, 7, 2)
    fa = {k: v.clone().requires_grad_(True) for k, v in feats.items()}
    fb = {k: v.clone().requires_grad_(True) for k, v in feats.items()}
    out_a, out_b = ours(fa, boxes, shapes), ref(fb, boxes, shapes)
    torch.testing.assert_close(out_a, out_b, rtol=0, atol=0)
    grad = torch.randn_like(out_b)
    out_a.backward(grad)
    out_b.backward(grad)
    for k in names:  # a level no box maps to gets no gradient here (None) and zeros from torchvision
        got = fa[k].grad if fa[k].grad is not None else torch.zeros_like(fa[k])
        torch.testing.assert_close(got, fb[k].grad, rtol=1e-10, atol=1e-12, msg=k)
    assert sum(fa[k].grad is not None for k in names) >= 2  # the boxes span levels
    with torch.no_grad():
        torch.testing.assert_close(ours(feats, boxes, shapes), ref(feats, boxes, shapes), rtol=0, atol=0)
