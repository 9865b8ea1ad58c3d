"""EdgeTAM's memory attention: the current frame's tokens attend to themselves (RoPE on the 64x64 grid) and to
the memory bank (RoPE on the queries' grid and on each memory's 16x16 2D latents; global latents and object
pointers are not rotated).

The memory bank is a concatenation, along tokens, of ``num_spatial_mem`` perceiver outputs of
``num_latents + num_latents_2d`` tokens each (global latents first), then ``num_obj_ptr_tokens`` pointer tokens.
The rotation is computed with real ``cos``/``sin`` tables (see :mod:`.position_encoding`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from repvit.models.onednn import linear_act

from .position_encoding import axial_rope, identity_rope
from .transformer import Attention

__all__ = ["MemoryAttentionLayer", "MemoryAttention"]

Rope = tuple[Tensor, Tensor]


class MemoryAttentionLayer(nn.Module):
    """Pre-norm self-attention, cross-attention to memory (keys get the memory's encoding), ReLU FFN."""

    def __init__(self, d_model: int = 256, dim_feedforward: int = 2048, kv_in_dim: int = 64, num_heads: int = 1):
        super().__init__()
        self.self_attn = Attention(d_model, num_heads)
        self.cross_attn_image = Attention(d_model, num_heads, kv_in_dim=kv_in_dim)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(
        self, tgt: Tensor, memory: Tensor, pos: Tensor, q_rope: Rope, k_rope: Rope, memory_mask: Tensor | None = None
    ) -> Tensor:
        """``tgt`` ``(B, N, d_model)``, ``memory``/``pos`` ``(B, M, kv_in_dim)``; RoPE tables for queries and keys;
        ``memory_mask`` ``(B, 1, 1, M)`` bool, True for the memory tokens to attend to."""
        x = self.norm1(tgt)
        tgt = tgt + self.self_attn(x, x, x, q_rope=q_rope, k_rope=q_rope)
        x = self.norm2(tgt)
        tgt = tgt + self.cross_attn_image(x, memory + pos, memory, q_rope=q_rope, k_rope=k_rope, attn_mask=memory_mask)
        x = self.norm3(tgt)
        return tgt + self.linear2(linear_act(self.linear1, "relu", x))


class MemoryAttention(nn.Module):
    """``num_layers`` :class:`MemoryAttentionLayer` and a final LayerNorm; inputs and output sequence-first."""

    def __init__(
        self,
        d_model: int = 256,
        num_layers: int = 2,
        dim_feedforward: int = 2048,
        kv_in_dim: int = 64,
        num_heads: int = 1,
        rope_theta: float = 10000.0,
        memory_latent_sizes: tuple[int, int] = (256, 16),
    ):
        super().__init__()
        self.d_model = d_model
        self.num_heads = num_heads
        self.rope_theta = rope_theta
        # tokens per memory: (global latents without RoPE, side of the 2D latent grid rotated with RoPE)
        self.num_global_latents, self.latent_side = memory_latent_sizes
        self.layers = nn.ModuleList(
            MemoryAttentionLayer(d_model, dim_feedforward, kv_in_dim, num_heads) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model)
        self._rope_cache: dict[tuple[int, int, torch.device, torch.dtype], Rope] = {}

    def _grid_rope(self, side: int, like: Tensor) -> Rope:
        key = (side, side, like.device, like.dtype)
        if key not in self._rope_cache:
            cos, sin = axial_rope(self.d_model // self.num_heads, side, side, self.rope_theta)
            self._rope_cache[key] = (cos.to(like), sin.to(like))
        return self._rope_cache[key]

    def memory_rope(self, num_spatial_mem: int, num_obj_ptr_tokens: int, like: Tensor) -> Rope:
        """RoPE tables for a memory bank: per memory, identity on the global latents and the 16x16 grid on the 2D
        latents; identity on the object-pointer tokens."""
        cos2d, sin2d = self._grid_rope(self.latent_side, like)
        half = cos2d.shape[-1]
        cos1d, sin1d = identity_rope(self.num_global_latents, half, like)
        cos_ptr, sin_ptr = identity_rope(num_obj_ptr_tokens, half, like)
        cos = torch.cat([torch.cat([cos1d, cos2d]).repeat(num_spatial_mem, 1), cos_ptr])
        sin = torch.cat([torch.cat([sin1d, sin2d]).repeat(num_spatial_mem, 1), sin_ptr])
        return cos, sin

    def forward(
        self,
        curr: Tensor | list[Tensor],
        memory: Tensor,
        curr_pos: Tensor | list[Tensor],
        memory_pos: Tensor,
        num_obj_ptr_tokens: int = 0,
        num_spatial_mem: int = 1,
        memory_valid: Tensor | None = None,
    ) -> Tensor:
        """Condition ``curr`` (``(HW, B, d_model)``, a square grid) on ``memory`` (``(M, B, kv_in_dim)``).

        ``memory_valid`` (``(B, M)`` bool, optional) marks the memory tokens to attend to; the others are ignored,
        as if absent. It lets a fixed-size memory bank (an exported graph) hold empty slots.

        Returns ``(HW, B, d_model)``.
        """
        if isinstance(curr, list):
            curr, curr_pos = curr[0], curr_pos[0]
        if curr.shape[1] != memory.shape[1]:
            raise ValueError(f"batch sizes differ: {curr.shape[1]} current frames, {memory.shape[1]} memories.")
        per_mem = self.num_global_latents + self.latent_side**2
        if memory.shape[0] != num_spatial_mem * per_mem + num_obj_ptr_tokens:
            raise ValueError(
                f"memory has {memory.shape[0]} tokens, expected {num_spatial_mem} memories x {per_mem} tokens + "
                f"{num_obj_ptr_tokens} object-pointer tokens."
            )
        side = math.isqrt(curr.shape[0])
        output = (curr + 0.1 * curr_pos).transpose(0, 1)
        memory = memory.transpose(0, 1)
        memory_pos = memory_pos.transpose(0, 1)
        q_rope = self._grid_rope(side, output)
        k_rope = self.memory_rope(num_spatial_mem, num_obj_ptr_tokens, output)
        memory_mask = memory_valid[:, None, None, :] if memory_valid is not None else None
        for layer in self.layers:
            output = layer(output, memory, memory_pos, q_rope, k_rope, memory_mask)
        return self.norm(output).transpose(0, 1)


