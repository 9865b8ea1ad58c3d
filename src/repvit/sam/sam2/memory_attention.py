"""EdgeTAM's memory attention: the current frame's tokens attend to themselves (RoPE on the 64x64 grid) and to
the memory bank (RoPE on the queries' grid and on each memory's 16x16 2D latents; global latents and object
pointers are not rotated).

The memory bank is a concatenation, along tokens, of ``num_spatial_mem`` perceiver outputs of
``num_latents + num_latents_2d`` tokens each (global latents first), then ``num_obj_ptr_tokens`` pointer tokens.
The rotation is computed with real ``cos``/``sin`` tables (see :mod:`.position_encoding`).

In eager CPU inference the cross-attention splits the memory in two (:func:`split_cross_attention`): the rotated 2D
latents are attended to as usual, and the tokens that RoPE leaves alone are attended to at the memory's width (64)
instead of the model's (256), which is the same product in another order. With a full bank that is about half the
cross-attention's multiply-adds.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from repvit.models.onednn import mlp, plain_cpu_inference

from .position_encoding import apply_rope, axial_rope, identity_rope
from .transformer import Attention

__all__ = ["MemoryAttentionLayer", "MemoryAttention", "split_cross_attention"]

Rope = tuple[Tensor, Tensor]


def _has_cpu_flash_lse() -> bool:
    try:
        return callable(torch.ops.aten._scaled_dot_product_flash_attention_for_cpu)
    except (AttributeError, RuntimeError):
        return False


_HAS_CPU_FLASH_LSE = _has_cpu_flash_lse()


def _flash_cpu(q: Tensor, k: Tensor, v: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """Attention output and the log-sum-exp of each query's scaled scores (torch's CPU flash-attention kernel)."""
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, False, scale=scale)
    return out, lse


def split_cross_attention(
    attn: Attention, x: Tensor, rotated: tuple[Tensor, Tensor], plain: tuple[Tensor, Tensor], q_rope: Rope, k_rope: Rope
) -> Tensor:
    """``attn(x, keys, values, q_rope, k_rope)`` over a memory whose tokens come in two groups: ``rotated``
    (``(keys, values)``, each ``(B, Mr, C_kv)``, rotated by ``k_rope``) and ``plain`` (``(B, Mp, C_kv)``, not rotated).

    For a plain key ``m`` the score is ``q . (W_k m + b_k) = (W_k^T q) . m + q . b_k``: the product runs at the key's
    width ``C_kv`` and the per-query ``q . b_k`` shifts the group's log-sum-exp. Values enter as
    ``softmax(S) (M W_v^T + b_v) = (softmax(S) M) W_v^T + b_v``, so the plain group's values stay at ``C_kv`` too.
    The groups' partial attentions are merged by their log-sum-exps (as in split-key flash attention).
    Eager CPU inference only (torch's CPU flash-attention kernel with its log-sum-exp).
    """
    b, n, _ = x.shape
    h, dh = attn.num_heads, attn.internal_dim // attn.num_heads
    scale = dh**-0.5
    q = apply_rope(attn._heads(attn.q_proj(x)), *q_rope)  # (B, h, N, dh)
    k_rot = apply_rope(attn._heads(attn.k_proj(rotated[0])), *k_rope)
    out_rot, lse_rot = _flash_cpu(q, k_rot, attn._heads(attn.v_proj(rotated[1])), scale)
    w_k = attn.k_proj.weight.view(h, dh, -1)  # (h, dh, C_kv)
    q_kv = torch.matmul(q, w_k)  # (B, h, N, C_kv)
    shift = torch.matmul(q, attn.k_proj.bias.view(h, dh, 1)).squeeze(-1) * scale  # (B, h, N)
    k_plain = plain[0].unsqueeze(1).expand(b, h, -1, -1)
    v_plain = plain[1].unsqueeze(1).expand(b, h, -1, -1)
    out_plain, lse_plain = _flash_cpu(q_kv, k_plain, v_plain, scale)
    w_v = attn.v_proj.weight.view(h, dh, -1)
    out_plain = torch.matmul(out_plain, w_v.transpose(1, 2)) + attn.v_proj.bias.view(h, 1, dh)
    lse_plain = lse_plain + shift
    lse = torch.logaddexp(lse_rot, lse_plain)
    out = out_rot * (lse_rot - lse).exp_().unsqueeze(-1) + out_plain * (lse_plain - lse).exp_().unsqueeze(-1)
    return attn.out_proj(out.transpose(1, 2).reshape(b, n, h * dh))


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
        self,
        tgt: Tensor,
        memory: Tensor,
        pos: Tensor,
        q_rope: Rope,
        k_rope: Rope,
        memory_mask: Tensor | None = None,
        split: tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor], Rope] | None = None,
    ) -> Tensor:
        """``tgt`` ``(B, N, d_model)``, ``memory``/``pos`` ``(B, M, kv_in_dim)``; RoPE tables for queries and keys;
        ``memory_mask`` ``(B, 1, 1, M)`` bool, True for the memory tokens to attend to. ``split`` (eager CPU
        inference): the memory as ``(rotated keys, values)``, ``(plain keys, values)`` and the rotated keys' RoPE
        tables, for :func:`split_cross_attention`."""
        x = self.norm1(tgt)
        tgt = tgt + self.self_attn(x, x, x, q_rope=q_rope, k_rope=q_rope)
        x = self.norm2(tgt)
        if split is not None:
            tgt = tgt + split_cross_attention(self.cross_attn_image, x, split[0], split[1], q_rope, split[2])
        else:
            tgt = tgt + self.cross_attn_image(
                x, memory + pos, memory, q_rope=q_rope, k_rope=k_rope, attn_mask=memory_mask
            )
        x = self.norm3(tgt)
        return tgt + mlp(self.linear1, "relu", self.linear2, x)


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

    def _split_pays(self, output: Tensor, memory: Tensor) -> bool:
        if not _HAS_CPU_FLASH_LSE or torch.jit.is_scripting():
            return False
        attn = self.layers[0].cross_attn_image
        return attn.kv_in_dim < attn.internal_dim // attn.num_heads and plain_cpu_inference(
            output, memory, attn.k_proj.weight
        )

    def _split_memory(
        self, memory: Tensor, memory_pos: Tensor, num_spatial_mem: int, num_obj_ptr_tokens: int, k_rope: Rope
    ) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor], Rope]:
        """The memory's rotated 2D latents and its other tokens (global latents, object pointers), as
        ``(keys, values)`` each, and the rotated tokens' RoPE tables."""
        g = self.num_global_latents
        b, _, c = memory.shape
        keys = memory + memory_pos
        spatial = num_spatial_mem * (g + self.latent_side**2)

        def groups(t: Tensor) -> tuple[Tensor, Tensor]:
            per_mem = t[:, :spatial].view(b, num_spatial_mem, -1, c)
            rotated = per_mem[:, :, g:].reshape(b, -1, c)
            plain = torch.cat([per_mem[:, :, :g].reshape(b, -1, c), t[:, spatial:]], dim=1)
            return rotated, plain

        k_rot, k_plain = groups(keys)
        v_rot, v_plain = groups(memory)
        cos, sin = (t[:spatial].view(num_spatial_mem, -1, t.shape[-1])[:, g:].reshape(-1, t.shape[-1]) for t in k_rope)
        return (k_rot, v_rot), (k_plain, v_plain), (cos, sin)

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
        split = None
        if memory_mask is None and self._split_pays(output, memory):
            split = self._split_memory(memory, memory_pos, num_spatial_mem, num_obj_ptr_tokens, k_rope)
        for layer in self.layers:
            output = layer(output, memory, memory_pos, q_rope, k_rope, memory_mask, split)
        return self.norm(output).transpose(0, 1)


