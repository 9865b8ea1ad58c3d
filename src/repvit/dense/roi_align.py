"""RoIAlign whose backward on a CPU is a few matrix products instead of torchvision's per-element loop.

torchvision's CPU ``roi_align`` backward visits every element of the output gradient (roi, channel, bin) and
recomputes that bin's sample positions and bilinear weights for each channel, one scalar add at a time: about ten
times its forward, and a fifth of a training step of the digits Mask R-CNN on one thread. The forward here is
torchvision's own; the backward uses that RoIAlign with a fixed number of samples per bin is separable: the
weights of bin ``(p, q)`` on pixel ``(i, j)`` are ``wy[p, i] * wx[q, j]`` (the sum over a bin's samples of the
bilinear corner weights along each axis, zero where a sample falls outside the map), so a roi's input gradient is
``Wy^T G Wx`` over the window of pixels its samples touch, added into the map of its image. The sample positions,
the clamping at the borders and the skipping of samples outside ``[-1, size]`` follow torchvision's kernel, so the
gradients are the same up to float rounding (tests/dense/test_roi_align.py compares them).

:func:`roi_align` takes this path for float CPU inputs that need a gradient, with ``rois`` as a ``(K, 5)`` tensor
and a fixed ``sampling_ratio`` (> 0); anything else (CUDA, adaptive sampling, no gradient, tracing, export) is
torchvision's ``roi_align`` unchanged.
"""

from __future__ import annotations

import torch
import torchvision
from torch import Tensor
from torchvision.ops import roi_align as tv_roi_align

__all__ = ["roi_align", "separable_backward_applies"]

#: rois per block of the backward (bounds its temporaries: block x channels x window pixels floats)
ROI_BLOCK = 128


def separable_backward_applies(input: Tensor, sampling_ratio: int) -> bool:
    """True where :func:`roi_align` uses the separable CPU backward for ``input``."""
    return (input.device.type == "cpu" and input.dtype in (torch.float32, torch.float64) and sampling_ratio > 0
            and torch.is_grad_enabled() and input.requires_grad and input.dim() == 4
            and not torchvision._is_tracing() and not torch.jit.is_scripting()
            and not torch.onnx.is_in_onnx_export() and not torch.compiler.is_compiling())


def _axis(start: Tensor, bin_size: Tensor, bins: int, samples: int, size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per roi, the window of pixels its samples touch along one axis and the weights on it.

    Returns ``(first, weights, length)``: the window's first pixel (R,), the weights (R, bins, length) of each bin
    on each window pixel (the sum over the bin's samples of their two bilinear corner weights), and ``length``.
    """
    dtype = start.dtype
    p = torch.arange(bins, dtype=dtype, device=start.device).view(1, bins, 1)
    i = torch.arange(samples, dtype=dtype, device=start.device).view(1, 1, samples)
    b = bin_size.view(-1, 1, 1)
    pos = start.view(-1, 1, 1) + p * b + (i + 0.5) * b / samples  # (R, bins, samples), torchvision's order
    valid = ((pos >= -1.0) & (pos <= size)).to(dtype)
    pos = pos.clamp(min=0)
    low = pos.floor().long()
    edge = low >= size - 1
    low = torch.where(edge, torch.full_like(low, size - 1), low)
    high = torch.where(edge, low, low + 1)
    frac = torch.where(edge, torch.zeros_like(pos), pos - low.to(dtype))
    first = low.amin(dim=(1, 2))
    length = int((high.amax(dim=(1, 2)) - first).max().item()) + 1 if low.numel() else 1
    w = pos.new_zeros(pos.shape[0], bins, length)
    off = first.view(-1, 1, 1)
    w.scatter_add_(2, low - off, (1 - frac) * valid)
    w.scatter_add_(2, high - off, frac * valid)
    return first, w, length


def _extent(start: Tensor, bin_size: Tensor, bins: int, size: int) -> Tensor:
    """Per roi, how many pixels along one axis its samples touch (an upper bound: the span of its positions + 2)."""
    first = start.clamp(min=0, max=size - 1).floor()
    last = (start + bin_size * bins).clamp(min=0, max=size - 1).floor() + 1
    return (last.clamp(max=size - 1) - first + 1).clamp(min=1)


#: the separable backward of a block of rois costs about ``window pixels x (bins along y + 1)`` multiply-adds per roi
#: and channel, torchvision's per-element loop about ``bins x samples`` scalar steps of ~40 multiply-adds' time;
#: blocks whose windows cost more than this many times torchvision's samples go to torchvision's backward (AMD Zen 3,
#: 1 thread: the digits rois' backward in 10 ms against ~50 ms; 512 COCO-like rois at stride 4 of an 800 px image
#: 0.95x torchvision's time, 1.36x with every block on the separable path)
WINDOW_COST = 40.0


class _RoIAlign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input: Tensor, rois: Tensor, output_size: tuple[int, int], spatial_scale: float,
                sampling_ratio: int, aligned: bool) -> Tensor:
        ctx.save_for_backward(rois)
        ctx.args = (tuple(input.shape), output_size, spatial_scale, sampling_ratio, aligned)
        return tv_roi_align(input, rois, output_size, spatial_scale, sampling_ratio, aligned)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (rois,) = ctx.saved_tensors
        (n, c, h, w), (ph, pw), scale, s, aligned = ctx.args
        grad_in = grad.new_zeros(n * h * w, c)
        offset = 0.5 if aligned else 0.0
        r = rois.to(grad.dtype)
        x0, y0 = r[:, 1] * scale - offset, r[:, 2] * scale - offset
        rw, rh = r[:, 3] * scale - offset - x0, r[:, 4] * scale - offset - y0
        if not aligned:
            rw, rh = rw.clamp(min=1.0), rh.clamp(min=1.0)
        # rois in order of the window they touch, so that a block's windows are alike
        order = torch.argsort(_extent(y0, rh / ph, ph, h) * _extent(x0, rw / pw, pw, w))
        for lo in range(0, r.shape[0], ROI_BLOCK):
            i = order[lo:lo + ROI_BLOCK]
            k, g = i.numel(), grad[i]
            fy, wy, ly = _axis(y0[i], rh[i] / ph, ph, s, h)
            fx, wx, lx = _axis(x0[i], rw[i] / pw, pw, s, w)
            if ly * lx * (ph + 1) > WINDOW_COST * ph * pw * s * s:
                part = torch.ops.torchvision._roi_align_backward(g.contiguous(), rois[i], scale, ph, pw, n, c, h, w,
                                                                s, aligned)
                grad_in.view(n, h, w, c).add_(part.permute(0, 2, 3, 1))
                continue
            # (K, C ph, pw) @ (K, pw, lx) -> (K, C, ph, lx), then as (K, ph, lx C): rows of channels
            t = torch.bmm((g / (s * s)).reshape(k, c * ph, pw), wx).view(k, c, ph, lx)
            t = t.permute(0, 2, 3, 1).reshape(k, ph, lx * c)
            u = torch.bmm(wy.transpose(1, 2), t)  # (K, ly, lx C): the window's pixels, channels last
            rows = (fy.view(-1, 1) + torch.arange(ly, device=grad.device)).clamp(max=h - 1)  # past the map: weight 0
            cols = (fx.view(-1, 1) + torch.arange(lx, device=grad.device)).clamp(max=w - 1)
            img = r[i, 0].long().view(-1, 1, 1)
            flat = img * (h * w) + rows.view(-1, ly, 1) * w + cols.view(-1, 1, lx)
            grad_in.index_add_(0, flat.reshape(-1), u.view(-1, c))
        return grad_in.view(n, h, w, c).permute(0, 3, 1, 2), None, None, None, None, None


def roi_align(input: Tensor, rois: Tensor, output_size: int | tuple[int, int], spatial_scale: float = 1.0,
              sampling_ratio: int = -1, aligned: bool = False) -> Tensor:
    """torchvision's ``roi_align`` (same arguments, ``rois`` as ``(K, 5)``: batch index, x1, y1, x2, y2), with the
    separable backward on a CPU where it applies (see the module doc)."""
    if not (isinstance(rois, Tensor) and rois.dim() == 2 and rois.shape[1] == 5
            and separable_backward_applies(input, sampling_ratio)):
        return tv_roi_align(input, rois, output_size, spatial_scale, sampling_ratio, aligned)
    size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    return _RoIAlign.apply(input, rois, (int(size[0]), int(size[1])), float(spatial_scale), int(sampling_ratio),
                           bool(aligned))
