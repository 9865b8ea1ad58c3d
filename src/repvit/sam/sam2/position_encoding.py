"""Position encodings of SAM 2 / EdgeTAM: 2D sine maps, random Fourier features for prompts, and axial RoPE.

RoPE is written in real arithmetic: a token's channels are taken in pairs ``(a, b)`` and rotated by an angle
``t`` to ``(a cos t - b sin t, a sin t + b cos t)``, which equals SAM 2's complex product ``(a + ib) e^{it}`` but
uses only ``cos``/``sin``/multiply/add, so it traces to ONNX.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["PositionEmbeddingSine", "PositionEmbeddingRandom", "axial_rope", "apply_rope", "identity_rope"]


class PositionEmbeddingSine(nn.Module):
    """DETR's sine encoding of a ``(H, W)`` grid, normalized to ``[0, 2π]``: ``num_pos_feats`` channels (y then x).

    The map depends only on the grid size, so it is computed once per size and device and reused.
    """

    def __init__(self, num_pos_feats: int, temperature: int = 10000) -> None:
        super().__init__()
        if num_pos_feats % 2:
            raise ValueError(f"num_pos_feats must be even, got {num_pos_feats}.")
        self.num_pos_feats = num_pos_feats // 2
        self.temperature = temperature
        self.scale = 2 * math.pi
        self._cache: dict[tuple[int, int, torch.device], torch.Tensor] = {}

    def _grid(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        eps = 1e-6
        y = torch.arange(1, h + 1, dtype=torch.float32, device=device).view(-1, 1).expand(h, w)
        x = torch.arange(1, w + 1, dtype=torch.float32, device=device).view(1, -1).expand(h, w)
        y = y / (h + eps) * self.scale
        x = x / (w + eps) * self.scale
        dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32, device=device)
        dim_t = self.temperature ** (2 * (dim_t // 2) / self.num_pos_feats)
        pos_x = x[:, :, None] / dim_t
        pos_y = y[:, :, None] / dim_t
        pos_x = torch.stack((pos_x[:, :, 0::2].sin(), pos_x[:, :, 1::2].cos()), dim=3).flatten(2)
        pos_y = torch.stack((pos_y[:, :, 0::2].sin(), pos_y[:, :, 1::2].cos()), dim=3).flatten(2)
        return torch.cat((pos_y, pos_x), dim=2).permute(2, 0, 1).contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The encoding for ``x``'s grid, ``(B, num_pos_feats, H, W)`` (a broadcast view; do not write into it)."""
        key = (x.shape[-2], x.shape[-1], x.device)
        if key not in self._cache:
            self._cache[key] = self._grid(x.shape[-2], x.shape[-1], x.device)
        return self._cache[key].unsqueeze(0).expand(x.shape[0], -1, -1, -1).to(x.dtype)


class PositionEmbeddingRandom(nn.Module):
    """Random Fourier features of ``[0, 1]²`` coordinates (SAM's prompt and dense image encoding)."""

    def __init__(self, num_pos_feats: int = 64, scale: float | None = None) -> None:
        super().__init__()
        scale = 1.0 if scale is None or scale <= 0.0 else scale
        self.register_buffer("positional_encoding_gaussian_matrix", scale * torch.randn((2, num_pos_feats)))

    def _pe_encoding(self, coords: torch.Tensor) -> torch.Tensor:
        coords = 2 * coords - 1
        coords = coords @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """The encoding of every cell centre of a ``size`` grid, ``(C, H, W)``."""
        h, w = size
        device = self.positional_encoding_gaussian_matrix.device
        grid = torch.ones((h, w), device=device, dtype=torch.float32)
        y_embed = (grid.cumsum(dim=0) - 0.5) / h
        x_embed = (grid.cumsum(dim=1) - 0.5) / w
        return self._pe_encoding(torch.stack([x_embed, y_embed], dim=-1)).permute(2, 0, 1)

    def forward_with_coords(self, coords_input: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """Encode ``(B, N, 2)`` pixel coordinates ``(x, y)`` of an image of ``image_size`` (H, W)."""
        scale = coords_input.new_tensor([1.0 / image_size[1], 1.0 / image_size[0]])
        return self._pe_encoding(coords_input.float() * scale)


def axial_rope(dim: int, end_x: int, end_y: int, theta: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos`` and ``sin`` of SAM 2's axial RoPE angles for an ``end_y × end_x`` grid, each ``(end_x*end_y, dim//2)``.

    Token ``i`` sits at ``(x, y) = (i mod end_x, i // end_x)``; the first ``dim/4`` channel pairs rotate with ``x``,
    the last ``dim/4`` with ``y``, at frequencies ``theta^(-4k/dim)``.
    """
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 4)[: dim // 4].float() / dim))
    t = torch.arange(end_x * end_y, dtype=torch.float32)
    t_x = t % end_x
    t_y = torch.div(t, end_x, rounding_mode="floor")
    angles = torch.cat([torch.outer(t_x, freqs), torch.outer(t_y, freqs)], dim=-1)
    return angles.cos(), angles.sin()


def identity_rope(n: int, half_dim: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A rotation by zero for ``n`` tokens (``cos`` 1, ``sin`` 0): tokens that RoPE leaves as they are."""
    return like.new_ones(n, half_dim), like.new_zeros(n, half_dim)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the channel pairs of ``x`` (``(..., N, D)``) by the angles whose ``cos``/``sin`` are ``(N, D/2)``."""
    pairs = x.unflatten(-1, (-1, 2))
    a, b = pairs[..., 0], pairs[..., 1]
    return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2)
