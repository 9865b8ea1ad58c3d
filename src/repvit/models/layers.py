"""Re-parameterizable layers used by RepViT.

Every layer here has a multi-branch (or conv + BN) training form and a ``fuse()`` method that returns the
equivalent single deploy-form module (``nn.Conv2d`` or ``nn.Linear`` with bias). Fusing computes in the dtype
and on the device of the layer, so a float64 model fuses exactly.

Parameter names follow timm's RepViT port (``c``/``bn``, ``conv``/``conv1``/``bn``, ``l``) so that timm state
dicts load without renaming.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import trunc_normal_

from .onednn import conv_act, conv_add

__all__ = [
    "ConvNorm",
    "NormLinear",
    "RepVGGDW",
    "LegacyRepVGGDW",
    "ConvMlp",
    "fuse_conv_bn_weights",
    "FusableMixin",
    "TwoHeadsMixin",
    "mean_linear",
]


class FusableMixin:
    """Marker for modules whose ``fuse()`` returns their deploy form (see :func:`repvit.fuse_model`)."""

    def fuse(self) -> nn.Module:  # pragma: no cover - interface
        raise NotImplementedError


class TwoHeadsMixin:
    """DeiT-style distillation heads: a classification ``head`` and an optional second ``head_dist`` (None without
    distillation, so that TorchScript compiles both branches) read the same features.

    :meth:`two_heads` gives ``(cls_logits, dist_logits)`` in train mode (the loss supervises each head) and their mean
    in eval mode; :func:`mean_linear` is the deploy form's single Linear layer, the average of both. Used by RepViT's
    classifier and the roadmap's MobileNetV3 classifier. (The two attributes are not annotated here: TorchScript
    would read the annotations as attribute types.)
    """

    def two_heads(self, x: torch.Tensor):
        if self.head_dist is None:
            return self.head(x)
        x1, x2 = self.head(x), self.head_dist(x)
        if self.training and not torch.jit.is_scripting():
            return x1, x2
        return (x1 + x2) / 2


@torch.no_grad()
def mean_linear(a: nn.Linear, b: nn.Linear) -> nn.Linear:
    """One Linear layer computing the mean of ``a`` and ``b`` (same shapes), on their device and in their dtype."""
    out = nn.Linear(a.in_features, a.out_features, device=a.weight.device, dtype=a.weight.dtype)
    out.weight.copy_((a.weight + b.weight) * 0.5)
    out.bias.copy_((a.bias + b.bias) * 0.5)
    return out


def _bn_scale_shift(bn: nn.BatchNorm2d | nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel ``(scale, shift)`` such that ``bn(x) == x * scale + shift`` in eval mode."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    return scale, shift


def fuse_conv_bn_weights(
    weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm2d
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode BatchNorm that follows a convolution into the convolution's weight and bias."""
    scale, shift = _bn_scale_shift(bn)
    w = weight * scale.reshape(-1, *([1] * (weight.dim() - 1)))
    b = shift if bias is None else bias * scale + shift
    return w, b


def _conv_like(conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor) -> nn.Conv2d:
    """A biased ``nn.Conv2d`` with the geometry of ``conv`` holding the given weight and bias."""
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=True,
        device=weight.device,
        dtype=weight.dtype,
    )
    fused.weight.data.copy_(weight)
    fused.bias.data.copy_(bias)
    return fused


class ConvNorm(FusableMixin, nn.Sequential):
    """Convolution without bias followed by BatchNorm (``c``, ``bn``)."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 1,
        stride: int = 1,
        padding: int | None = None,
        groups: int = 1,
        bn_weight_init: float = 1.0,
    ):
        super().__init__()
        if padding is None:
            padding = (kernel_size - 1) // 2
        self.add_module("c", nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(out_chs))
        nn.init.constant_(self.bn.weight, bn_weight_init)
        nn.init.zeros_(self.bn.bias)

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        w, b = fuse_conv_bn_weights(self.c.weight, None, self.bn)
        return _conv_like(self.c, w, b)


class NormLinear(FusableMixin, nn.Sequential):
    """BatchNorm1d followed by a Linear layer (``bn``, ``l``): the RepViT classifier head."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, std: float = 0.02):
        super().__init__()
        self.add_module("bn", nn.BatchNorm1d(in_features))
        self.add_module("l", nn.Linear(in_features, out_features, bias=bias))
        trunc_normal_(self.l.weight, std=std)
        if self.l.bias is not None:
            nn.init.zeros_(self.l.bias)

    @torch.no_grad()
    def fuse(self) -> nn.Linear:
        scale, shift = _bn_scale_shift(self.bn)
        w = self.l.weight * scale[None, :]
        b = self.l.weight @ shift
        if self.l.bias is not None:
            b = b + self.l.bias
        fused = nn.Linear(w.shape[1], w.shape[0], device=w.device, dtype=w.dtype)
        fused.weight.data.copy_(w)
        fused.bias.data.copy_(b)
        return fused


def _identity_kernel(channels: int, kernel_size: int, like: torch.Tensor) -> torch.Tensor:
    """Depthwise kernel (``channels, 1, k, k``) that is the identity map."""
    k = torch.zeros(channels, 1, kernel_size, kernel_size, dtype=like.dtype, device=like.device)
    k[:, 0, kernel_size // 2, kernel_size // 2] = 1
    return k


def _pad_to(kernel: torch.Tensor, kernel_size: int) -> torch.Tensor:
    p = (kernel_size - kernel.shape[-1]) // 2
    return F.pad(kernel, [p, p, p, p])


def _depthwise_1x1(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A 1x1 depthwise convolution as the per-channel affine map ``x * w + b``: the same values and gradients, while
    PyTorch runs a 1x1 grouped convolution with a batch under 16 on one thread as one convolution per channel (in
    the digits Mask R-CNN recipe, about a fifth of the training step)."""
    y = x * weight.view(1, -1, 1, 1)
    if bias is not None:
        y = y + bias.view(1, -1, 1, 1)
    return y


class RepVGGDW(FusableMixin, nn.Module):
    """RepViT token mixer: ``BN(DW_kxk_BN(x) + DW_1x1(x) + x)``; fuses into one depthwise ``kxk`` conv."""

    def __init__(self, dim: int, kernel_size: int = 3):
        super().__init__()
        if kernel_size < 3 or kernel_size % 2 == 0:
            raise ValueError(f"RepVGGDW needs an odd kernel size >= 3, got {kernel_size}.")
        self.conv = ConvNorm(dim, dim, kernel_size, groups=dim)
        self.conv1 = nn.Conv2d(dim, dim, 1, groups=dim, bias=True)
        self.bn = nn.BatchNorm2d(dim)
        self.dim = dim
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x) + _depthwise_1x1(x, self.conv1.weight, self.conv1.bias) + x)

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        k = self.kernel_size
        conv = self.conv.fuse()
        w = conv.weight + _pad_to(self.conv1.weight, k) + _identity_kernel(self.dim, k, conv.weight)
        b = conv.bias + self.conv1.bias
        w, b = fuse_conv_bn_weights(w, b, self.bn)
        return _conv_like(conv, w, b)


class LegacyRepVGGDW(FusableMixin, nn.Module):
    """Token mixer of the first RepViT release (m1/m2/m3): ``DW_kxk_BN(x) + DW_1x1_BN(x) + x``, no outer BN."""

    def __init__(self, dim: int, kernel_size: int = 3):
        super().__init__()
        if kernel_size < 3 or kernel_size % 2 == 0:
            raise ValueError(f"LegacyRepVGGDW needs an odd kernel size >= 3, got {kernel_size}.")
        self.conv = ConvNorm(dim, dim, kernel_size, groups=dim)
        self.conv1 = ConvNorm(dim, dim, 1, groups=dim)
        self.dim = dim
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.conv1.bn(_depthwise_1x1(x, self.conv1.c.weight, None)) + x

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        k = self.kernel_size
        conv, conv1 = self.conv.fuse(), self.conv1.fuse()
        w = conv.weight + _pad_to(conv1.weight, k) + _identity_kernel(self.dim, k, conv.weight)
        return _conv_like(conv, w, conv.bias + conv1.bias)


class ConvMlp(nn.Module):
    """RepViT channel mixer body: ``BN(PW(act(BN(PW(x)))))``; the last BN starts at zero so the residual FFN
    starts as the identity. Its two ``ConvNorm`` children fuse into plain 1x1 convs."""

    def __init__(self, dim: int, hidden_dim: int, act_layer: type[nn.Module] = nn.GELU):
        super().__init__()
        self.conv1 = ConvNorm(dim, hidden_dim, 1)
        self.act = act_layer()
        self.conv2 = ConvNorm(hidden_dim, dim, 1, bn_weight_init=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():  # deploy form on a CPU: the 1x1 conv and its activation in one call
            return self.conv2(conv_act(self.conv1, self.act, x))
        return self.conv2(self.act(self.conv1(x)))

    @torch.jit.unused
    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """``x + self(x)`` (eval mode, no drop path): in the deploy form on a CPU both 1x1 convs are single oneDNN
        calls, the first with its activation, the second with the residual add."""
        return conv_add(self.conv2, conv_act(self.conv1, self.act, x), x)
