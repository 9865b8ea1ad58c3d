"""Blocks of the roadmap networks that RepViT itself does not have.

RepViT's own modules (:class:`~repvit.models.repvit.RepViTBlock`, ``RepViTStem``, ``RepViTDownsample``,
``RepViTClassifier``) are reused as they are; this file only adds MobileNetV3's pieces (inverted residual, stem,
classifier) and the width-changing metaformer block that exists between the two ends of the roadmap. Every
conv + BN is a :class:`~repvit.models.layers.ConvNorm`, so :func:`repvit.fuse_model` folds it.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from timm.layers import DropPath, SqueezeExcite, make_divisible

from repvit.models.config import BlockConfig, RepViTConfig
from repvit.models.layers import ConvNorm, FusableMixin, RepVGGDW, TwoHeadsMixin, mean_linear
from repvit.models.repvit import RepViTBlock, RepViTDownsample

from .config import BlockSpec, DownsampleSpec

__all__ = [
    "act_layer",
    "MobileNetV3SE",
    "InvertedResidual",
    "MetaFormerTransition",
    "MobileNetV3Stem",
    "MobileNetV3Classifier",
    "build_block",
    "build_downsample",
]

_ACTS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU, "hardswish": nn.Hardswish}


def act_layer(name: str) -> type[nn.Module]:
    """The activation class for a design-space name."""
    try:
        return _ACTS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(_ACTS)}.") from None


def _drop_path(rate: float) -> nn.Module:
    return DropPath(rate) if rate > 0 else nn.Identity()


def MobileNetV3SE(channels: int) -> nn.Module:  # noqa: N802 - a layer factory, named like the layer
    """MobileNetV3's squeeze-excite: 1/4 of ``channels`` rounded to a multiple of 8, ReLU, hard-sigmoid gate."""
    return SqueezeExcite(channels, rd_channels=make_divisible(channels * 0.25, 8), gate_layer="hard_sigmoid")


def _plain_dw(dim: int, kernel_size: int, stride: int = 1) -> ConvNorm:
    return ConvNorm(dim, dim, kernel_size, stride=stride, groups=dim)


class InvertedResidual(nn.Module):
    """MobileNetV3 block: 1x1 expand + BN + act (skipped when the ratio is 1), depthwise kxk + BN + act, SE,
    1x1 project + BN; residual when the stride is 1 and the width is kept."""

    def __init__(self, spec: BlockSpec, drop_path: float = 0.0):
        super().__init__()
        act, hidden = act_layer(spec.act), spec.hidden_chs
        self.conv_pw = ConvNorm(spec.in_chs, hidden, 1) if hidden != spec.in_chs else nn.Identity()
        self.act1 = act() if hidden != spec.in_chs else nn.Identity()
        self.conv_dw = ConvNorm(hidden, hidden, spec.kernel_size, stride=spec.stride, groups=hidden)
        self.act2 = act()
        self.se = MobileNetV3SE(hidden) if spec.use_se else nn.Identity()
        self.conv_pwl = ConvNorm(hidden, spec.out_chs, 1)
        self.has_skip = spec.stride == 1 and spec.in_chs == spec.out_chs
        self.drop_path = _drop_path(drop_path) if self.has_skip else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_pwl(self.se(self.act2(self.conv_dw(self.act1(self.conv_pw(x))))))
        return x + self.drop_path(y) if self.has_skip else y


class MetaFormerTransition(nn.Module):
    """A metaformer block that changes resolution or width before RepViT's deeper downsampling exists: the
    MobileNetV3 block with its depthwise conv first. Depthwise kxk (stride 2: conv + BN; stride 1: the
    block's token mixer), SE, then a non-residual FFN ``in → hidden → out``."""

    def __init__(self, spec: BlockSpec):
        super().__init__()
        if spec.stride == 2 or not spec.reparam:
            self.token_mixer = _plain_dw(spec.in_chs, spec.kernel_size, spec.stride)
        else:
            self.token_mixer = RepVGGDW(spec.in_chs, spec.kernel_size)
        self.se = SqueezeExcite(spec.in_chs, rd_ratio=0.25) if spec.use_se else nn.Identity()
        self.channel_mixer = nn.Sequential(
            ConvNorm(spec.in_chs, spec.hidden_chs, 1),
            act_layer(spec.act)(),
            ConvNorm(spec.hidden_chs, spec.out_chs, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.channel_mixer(self.se(self.token_mixer(x)))


def _repvit_block(spec: BlockSpec, se_ratio: float, drop_path: float) -> RepViTBlock:
    block = RepViTBlock(
        BlockConfig(spec.in_chs, spec.use_se, spec.kernel_size, spec.expand_ratio),
        "repvggdw",
        se_ratio,
        act_layer(spec.act),
        drop_path,
    )
    if not spec.reparam:
        block.token_mixer = _plain_dw(spec.in_chs, spec.kernel_size)
    return block


def build_block(spec: BlockSpec, se_ratio: float = 0.25, drop_path: float = 0.0) -> nn.Module:
    """The module for one :class:`BlockSpec` (a stride-1 same-width metaformer block is RepViT's own block)."""
    if spec.kind == "inverted_residual":
        return InvertedResidual(spec, drop_path)
    if spec.is_repvit_block:
        return _repvit_block(spec, se_ratio, drop_path)
    return MetaFormerTransition(spec)


def build_downsample(spec: DownsampleSpec, se_ratio: float = 0.25,
                     drop_path: tuple[float, float] = (0.0, 0.0)) -> RepViTDownsample:
    """RepViT's deeper downsampling layer for a :class:`DownsampleSpec`."""
    rcfg = RepViTConfig((spec.in_chs, spec.out_chs), (0, 0), kernel_size=spec.kernel_size,
                        mlp_ratio=spec.expand_ratio, se_ratio=se_ratio)
    ds = RepViTDownsample(spec.in_chs, spec.out_chs, rcfg, act_layer(spec.act), drop_path)
    if not spec.reparam:
        ds.pre_block.token_mixer = _plain_dw(spec.in_chs, spec.kernel_size)
    return ds


class MobileNetV3Stem(nn.Module):
    """MobileNetV3's stem: one stride-2 3x3 conv + BN + act (output stride 2)."""

    def __init__(self, in_chans: int, out_chs: int, act: str = "gelu"):
        super().__init__()
        self.conv = ConvNorm(in_chans, out_chs, 3, stride=2)
        self.act = act_layer(act)()
        self.stride = 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class MobileNetV3Classifier(TwoHeadsMixin, FusableMixin, nn.Module):
    """MobileNetV3's head after global pooling: Linear to ``hidden`` (with bias, no BN) + act, dropout, Linear.

    (Its 1x1 conv + BN + act before the pooling lives in the network's ``final_conv``.) With distillation a second
    final Linear reads the same hidden features; train mode returns both logits, eval mode their mean, and the
    deploy form averages the two Linear layers into one.
    """

    def __init__(self, in_features: int, hidden: int, num_classes: int, act: str = "gelu",
                 drop_rate: float = 0.0, distillation: bool = False):
        super().__init__()
        self.num_classes = num_classes
        self.distillation = distillation
        self.fc = nn.Linear(in_features, hidden)
        self.act = act_layer(act)()
        # not "drop": torchvision's FX node naming confuses "head.drop" with the model's "head_drop"
        self.dropout = nn.Dropout(drop_rate)
        self.head = nn.Linear(hidden, num_classes) if num_classes > 0 else nn.Identity()
        # None without distillation: TorchScript compiles both branches of forward
        self.head_dist = nn.Linear(hidden, num_classes) if distillation and num_classes > 0 else None

    def forward(self, x: torch.Tensor):
        return self.two_heads(self.dropout(self.act(self.fc(x))))

    @torch.no_grad()
    def fuse(self) -> nn.Sequential:
        head = self.head
        if self.head_dist is not None and self.num_classes > 0:
            head = mean_linear(self.head, self.head_dist)
        return nn.Sequential(self.fc, self.act, head).eval()
