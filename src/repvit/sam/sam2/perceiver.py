"""EdgeTAM's 2D spatial perceiver: compresses a frame's 64x64 memory map into 256 global + 256 windowed latents.

Global latents cross-attend to every memory token (with the memory's position encoding added to keys and
values); each 2D latent cross-attends only to its own window of the map (4x4 for a 64x64 map and 16x16 latents)
and gets the sine encoding of its cell in the latent grid. Global latents get a zero position encoding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .position_encoding import PositionEmbeddingSine

__all__ = ["PerceiverResampler", "PerceiverEncoderLayer", "window_partition"]


def feed_forward(dim: int, mult: int = 4) -> nn.Sequential:
    """Pre-norm MLP without biases (``0`` LayerNorm, ``1``/``3`` Linear)."""
    inner = int(dim * mult)
    return nn.Sequential(
        nn.LayerNorm(dim), nn.Linear(dim, inner, bias=False), nn.GELU(), nn.Linear(inner, dim, bias=False)
    )


def _heads(x: Tensor, heads: int) -> Tensor:
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)


class PerceiverAttention(nn.Module):
    """Latents (queries) attend to inputs; keys and values may get a position encoding added after projection."""

    def __init__(self, *, dim: int, dim_head: int = 64, heads: int = 1):
        super().__init__()
        self.heads = heads
        inner = dim_head * heads
        self.norm_x = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, latents: Tensor, x: Tensor, pos: Tensor | None = None) -> Tensor:
        q = _heads(self.to_q(self.norm_latents(latents)), self.heads)
        k, v = (_heads(t, self.heads) for t in self.to_kv(self.norm_x(x)).chunk(2, dim=-1))
        if pos is not None:
            pos = _heads(pos, self.heads)
            k, v = k + pos, v + pos
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).flatten(2))


class SelfAttention(nn.Module):
    """Pre-norm self-attention without biases."""

    def __init__(self, *, dim: int, dim_head: int = 64, heads: int = 1):
        super().__init__()
        self.heads = heads
        inner = dim_head * heads
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm(x)
        q = _heads(self.to_q(x), self.heads)
        k, v = (_heads(t, self.heads) for t in self.to_kv(x).chunk(2, dim=-1))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).flatten(2))


class PerceiverEncoderLayer(nn.Module):
    """Cross-attention to the inputs, feed-forward, then self-attention among latents and another feed-forward."""

    def __init__(self, dim: int, dim_head: int = 64, heads: int = 1, ff_mult: int = 4):
        super().__init__()
        self.attn = PerceiverAttention(dim=dim, dim_head=dim_head, heads=heads)
        self.ff = feed_forward(dim, ff_mult)
        self.self_attn = SelfAttention(dim=dim, dim_head=dim_head, heads=heads)
        self.self_ff = feed_forward(dim, ff_mult)

    def forward(self, latents: Tensor, x: Tensor, pos: Tensor | None = None) -> Tensor:
        latents = self.attn(latents, x, pos) + latents
        latents = self.ff(latents) + latents
        latents = self.self_attn(latents) + latents
        return self.self_ff(latents) + latents


def window_partition(x: Tensor, window_size: int) -> Tensor:
    """``(B, H, W, C)`` -> ``(B * H/ws * W/ws, ws*ws, C)``, windows in row-major order."""
    b, h, w, c = x.shape
    x = x.view(b, h // window_size, window_size, w // window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size * window_size, c)


class PerceiverResampler(nn.Module):
    """Compress ``(B, C, H, W)`` into ``(B, num_latents + num_latents_2d, C)`` latents and their encoding."""

    def __init__(
        self, *, dim: int = 64, depth: int = 2, dim_head: int = 64, heads: int = 1, num_latents: int = 256,
        num_latents_2d: int = 256, ff_mult: int = 4,
    ):
        super().__init__()
        side = math.isqrt(num_latents_2d)
        if side * side != num_latents_2d:
            raise ValueError(f"num_latents_2d must be a square number, got {num_latents_2d}.")
        self.num_latents = num_latents
        self.num_latents_2d = num_latents_2d
        self.latents = nn.Parameter(torch.randn(num_latents, dim))
        self.latents_2d = nn.Parameter(torch.randn(num_latents_2d, dim))
        self.position_encoding = PositionEmbeddingSine(dim)
        self.layers = nn.ModuleList(PerceiverEncoderLayer(dim, dim_head, heads, ff_mult) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, pos: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Latents ``(B, N, C)`` and, when ``pos`` (the map's encoding) is given, their encoding ``(B, N, C)``."""
        latents_1d = self.forward_1d(x, pos)
        latents_2d, pos_2d = self.forward_2d(x)
        latents = torch.cat((latents_1d, latents_2d), dim=1)
        if pos is None:
            return latents, None
        return latents, torch.cat((torch.zeros_like(latents_1d), pos_2d), dim=1)

    def forward_1d(self, x: Tensor, pos: Tensor | None) -> Tensor:
        latents = self.latents.unsqueeze(0).expand(x.shape[0], -1, -1)
        x = x.flatten(2).transpose(1, 2)
        pos = pos.flatten(2).transpose(1, 2) if pos is not None else None
        for layer in self.layers:
            latents = layer(latents, x, pos)
        return self.norm(latents)

    def forward_2d(self, x: Tensor) -> tuple[Tensor, Tensor]:
        b, c, h, _ = x.shape
        side = math.isqrt(self.num_latents_2d)
        latents = self.latents_2d.unsqueeze(0).expand(b, -1, -1).reshape(-1, 1, c)
        windows = window_partition(x.permute(0, 2, 3, 1), h // side)
        for layer in self.layers:
            latents = layer(latents, windows)
        grid = latents.view(b, side, side, c).permute(0, 3, 1, 2)
        pos_2d = self.position_encoding(grid).flatten(2).transpose(1, 2)
        return self.norm(latents.view(b, side * side, c)), pos_2d
