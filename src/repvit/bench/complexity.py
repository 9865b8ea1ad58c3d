"""Parameter and multiply-accumulate (MAC) counts.

MACs are counted with PyTorch's own ``FlopCounterMode`` (convolutions, matmuls and linear layers; FLOPs / 2),
the convention of the published RepViT figures. Element-wise ops, pooling and activations are not counted.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_params", "count_macs"]


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (buffers such as BN running statistics are not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def count_macs(model: nn.Module, img_size: int | tuple[int, int] = 224, in_chans: int | None = None) -> int:
    """MACs of one forward pass on a single ``in_chans x H x W`` image, in eval mode.

    Args:
        model: the model; it is put in eval mode for the count and restored afterwards.
        img_size: ``H`` or ``(H, W)``.
        in_chans: input channels; defaults to ``model.in_chans`` or 3.
    """
    h, w = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    c = in_chans if in_chans is not None else getattr(model, "in_chans", 3)
    ref = next(iter(model.parameters()), None)
    x = torch.zeros(1, c, h, w, dtype=ref.dtype if ref is not None else torch.float32,
                    device=ref.device if ref is not None else "cpu")
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2
