"""The engine's gradient clipping against timm's: AGC gives timm's ``adaptive_clip_grad`` results; the other modes
are timm's ``dispatch_clip_grad``."""

from __future__ import annotations

import pytest
import torch
from timm.utils import adaptive_clip_grad, dispatch_clip_grad

from repvit.engine.optim import clip_gradients


@pytest.fixture(scope="module")
def weights_and_grads():
    """Weights of every rank a model has (conv kernels, depthwise kernels, linear weights, norms and biases, a
    scalar) with gradients whose units' norms straddle the clipping threshold."""
    g = torch.Generator().manual_seed(0)
    shapes = [(48, 3, 3, 3), (48, 1, 3, 3), (96, 48, 1, 1), (10, 96), (48,), (96,), (10,), ()]
    out = []
    for shape in shapes:
        w = torch.randn(shape, generator=g)
        grad = torch.randn(shape, generator=g) * float(torch.logspace(-4, 1, 7)[torch.randint(0, 7, (), generator=g)])
        out.append((w, grad))
    return out


def _params(weights_and_grads):
    out = []
    for w, g in weights_and_grads:
        p = torch.nn.Parameter(w.clone())
        p.grad = g.clone()
        out.append(p)
    return out


@pytest.mark.parametrize("clip_factor", [0.02, 0.5])
def test_agc_equals_timms(weights_and_grads, clip_factor):
    ours, ref = _params(weights_and_grads), _params(weights_and_grads)
    clip_gradients(ours, clip_factor, "agc")
    adaptive_clip_grad(ref, clip_factor)
    clipped = 0
    for p, q, (_, g0) in zip(ours, ref, weights_and_grads):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-6, atol=0)
        clipped += int(not torch.equal(p.grad, g0))
    assert 2 <= clipped < len(weights_and_grads)  # the check covers tensors that clip, not only ones left as they were


def test_agc_skips_parameters_without_grad_and_empty_lists():
    lin = torch.nn.Linear(3, 2)
    lin.weight.grad = torch.full((2, 3), 100.0)
    clip_gradients([lin.weight, lin.bias], 0.01, "agc")  # bias has no grad
    assert lin.bias.grad is None and torch.all(lin.weight.grad < 100.0)
    clip_gradients([], 0.01, "agc")


@pytest.mark.parametrize("mode", ["norm", "value"])
def test_other_modes_are_timms(weights_and_grads, mode):
    ours, ref = _params(weights_and_grads), _params(weights_and_grads)
    clip_gradients(ours, 0.5, mode)
    dispatch_clip_grad(ref, 0.5, mode=mode)
    for p, q in zip(ours, ref):
        torch.testing.assert_close(p.grad, q.grad)
