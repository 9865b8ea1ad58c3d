"""SAM 2's memory encoder: a mask downsampler, the frame's projected features, two ConvNeXt fuser blocks and a
projection to the memory width (64 for EdgeTAM), with a sine encoding of the result."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from repvit.models.onednn import mlp

from .common import LayerNorm2d
from .position_encoding import PositionEmbeddingSine

__all__ = ["MaskDownSampler", "CXBlock", "Fuser", "MemoryEncoder"]


class MaskDownSampler(nn.Module):
    """Four stride-2 3x3 convolutions (channels x4 each: 1 -> 4 -> 16 -> 64 -> 256) with LayerNorm2d and GELU, then
    a 1x1 convolution to ``embed_dim``: a 1024x1024 mask becomes a 64x64 map."""

    def __init__(
        self, embed_dim: int = 256, kernel_size: int = 3, stride: int = 2, padding: int = 1, num_layers: int = 4
    ):
        super().__init__()
        self.encoder = nn.Sequential()
        chans = 1
        for _ in range(num_layers):
            out = chans * stride**2
            self.encoder.append(nn.Conv2d(chans, out, kernel_size=kernel_size, stride=stride, padding=padding))
            self.encoder.append(LayerNorm2d(out))
            self.encoder.append(nn.GELU())
            chans = out
        self.encoder.append(nn.Conv2d(chans, embed_dim, kernel_size=1))

    def forward(self, x: Tensor) -> Tensor:
        return self.encoder(x)


class CXBlock(nn.Module):
    """ConvNeXt block: 7x7 depthwise conv, LayerNorm, pointwise MLP (x4, GELU), layer scale ``gamma``, residual."""

    def __init__(self, dim: int, kernel_size: int = 7, padding: int = 3, layer_scale_init_value: float = 1e-6):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=kernel_size, padding=padding, groups=dim)
        self.norm = LayerNorm2d(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(layer_scale_init_value * torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm(self.dwconv(x)).permute(0, 2, 3, 1)
        y = self.gamma * mlp(self.pwconv1, "gelu", self.pwconv2, y)
        return x + y.permute(0, 3, 1, 2)


class Fuser(nn.Module):
    """A stack of :class:`CXBlock`."""

    def __init__(self, dim: int = 256, num_layers: int = 2, layer_scale_init_value: float = 1e-6):
        super().__init__()
        self.layers = nn.ModuleList(
            CXBlock(dim, layer_scale_init_value=layer_scale_init_value) for _ in range(num_layers)
        )

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class MemoryEncoder(nn.Module):
    """Fuse a frame's features ``(B, 256, H, W)`` with its mask ``(B, 1, 16H, 16W)`` into a ``out_dim`` memory."""

    def __init__(self, out_dim: int = 64, in_dim: int = 256, num_fuser_layers: int = 2):
        super().__init__()
        self.mask_downsampler = MaskDownSampler(in_dim)
        self.pix_feat_proj = nn.Conv2d(in_dim, in_dim, kernel_size=1)
        self.fuser = Fuser(in_dim, num_fuser_layers)
        self.position_encoding = PositionEmbeddingSine(out_dim)
        self.out_proj = nn.Conv2d(in_dim, out_dim, kernel_size=1) if out_dim != in_dim else nn.Identity()

    def forward(self, pix_feat: Tensor, masks: Tensor, skip_mask_sigmoid: bool = False) -> dict[str, object]:
        """``{"vision_features": (B, out_dim, H, W), "vision_pos_enc": [(B, out_dim, H, W)]}``.

        ``masks`` are logits (a sigmoid is applied) unless ``skip_mask_sigmoid``.
        """
        if not skip_mask_sigmoid:
            masks = torch.sigmoid(masks)
        masks = self.mask_downsampler(masks)
        x = self.pix_feat_proj(pix_feat.to(masks.device)) + masks
        x = self.out_proj(self.fuser(x))
        return {"vision_features": x, "vision_pos_enc": [self.position_encoding(x)]}
