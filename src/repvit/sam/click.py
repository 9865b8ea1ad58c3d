"""SAM's prompt-to-mask decoding split into a per-image part, run once when an image is embedded, and a per-click part.

``segment_anything``'s ``MaskDecoder`` runs a two-way transformer over the 64 x 64 image tokens and the prompt tokens
and then up-samples the image tokens to a 256 x 256 mask. :class:`ClickDecoder` computes the same mask with the same
modules and weights, reorganized:

* once per image (:meth:`ClickDecoder.prepare`): the image tokens plus ``no_mask_embed`` (no mask prompt), in the
  first ``TwoWayAttentionBlock`` the image-side projections, which see no prompt yet (token-to-image attention's
  ``k_proj(keys + key_pe)`` and ``v_proj(keys)``, image-to-token attention's ``q_proj(keys + key_pe)``), and the
  image tokens through the first transposed convolution with every block's ``norm4`` scale folded in: a block's
  image tokens are the previous ones plus a rank-``H T`` update, normalized per token, so the up-sampling's first
  product on the last block's tokens is that per-image product scaled per token plus a product with ``L H T + 2 L``
  columns for ``L`` blocks (116 instead of 256 for SAM's two blocks and one point; :class:`_Derived`);
* once per decoder (image independent, recomputed only when the weights change): the dense positional encoding
  ``pe`` projected by the later attentions' image-side ``k_proj`` / ``q_proj`` (``W pe^T``), and the transposed
  convolutions as matrices, so that no click adds ``pe`` to the 4096 image tokens;
* per click (:meth:`ClickDecoder.decode`), the cross attentions on image tokens that already depend on the prompt
  move their projections to the few prompt tokens: with ``T`` tokens and ``H`` heads, ``softmax(q W_k (x + pe)^T)``
  needs ``q W_k`` (``H T x C``) times ``x`` plus ``q`` times the cached ``W_k pe^T`` instead of ``W_k`` applied to
  all 4096 image tokens, the values ``x W_v^T`` leave the sum over image tokens (softmax rows sum to 1), and
  image-to-token attention folds ``out_proj`` into the token values and adds its update to the image tokens in
  place. Each of those costs ``4096 x C x H T`` multiply-adds instead of ``4096 x C x C/2`` (half or less for the
  app's prompts, ``H T <= 64``); with more tokens the plain projections are used;
* only the output tokens that are used pass the final token-to-image attention: the IoU token first, then the chosen
  candidate's mask token (with one mask, both at once); only its hypernetwork and mask are computed;
* the two 2 x 2-stride transposed convolutions run as matrix products on the tokens, 512 tokens at a time so that
  their intermediates (``LayerNorm2d`` as ``layer_norm`` over the channels, GELU in place) stay in the CPU caches
  and in reused buffers, only on the tokens whose mask pixels lie in the resized image (not its padding), and only
  the chosen mask is put in image order.

Masks equal ``SamPredictor.predict``'s up to float rounding (tests/sam/test_click.py compares them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ImageContext", "ClickDecoder", "ClickGraph"]

_CONTEXT = ("keys", "k0", "v0", "q0")
_ONNX_INPUTS = ("sparse", *_CONTEXT, "multimask", "keep")  # the exported click graph's inputs, in order
TILE = 512  # image tokens per step of the mask up-sampling (its intermediates stay in the CPU caches)


@dataclass
class ImageContext:
    """What the mask decoder needs from one image embedding, computed once (:meth:`ClickDecoder.prepare`).

    ``keys`` (N, C): the image tokens plus ``no_mask_embed``; ``k0``, ``v0`` (H, N, C/2H): the first block's
    token-to-image keys and values by head; ``q0`` (H, C/2H, N): its image-to-token queries by head, transposed;
    ``grid``: (h, w) tokens; ``p`` (N, 4 c1): the image tokens through every block's ``norm4`` scale and the first
    transposed convolution (``keys @ W^(0)``, see :class:`_Derived`), or None.
    """

    keys: torch.Tensor
    k0: torch.Tensor
    v0: torch.Tensor
    q0: torch.Tensor
    grid: tuple[int, int]
    p: torch.Tensor | None = None

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.keys, self.k0, self.v0, self.q0, self.p)
                   if t is not None)


def _heads(x: torch.Tensor, h: int) -> torch.Tensor:
    """(N, h * d) -> (h, N, d)."""
    return x.view(x.shape[0], h, -1).transpose(0, 1)


def _stamp(tensors: list[torch.Tensor]) -> tuple:
    """Where each tensor lives and its version counter (bumped by in-place updates); -1 for inference tensors."""
    out = []
    for t in tensors:
        try:
            v = t._version
        except RuntimeError:  # an inference tensor has no version counter
            v = -1
        out.append((t.data_ptr(), v))
    return tuple(out)


def _scores(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``g @ x^T`` for a few rows ``g`` (R, C) and image tokens ``x`` (N, C), as the transpose of ``x @ g^T``: with
    the image tokens as the long side of the product, MKL runs it 1.2-1.5x faster at 1-2 threads and without the
    stalls ``addmm(., g, x.t())`` shows at 2 threads on a busy machine."""
    return torch.mm(x, g.t()).t()


def _softmax_tokens(s: torch.Tensor) -> torch.Tensor:
    """``softmax(s, 1)`` for scores (h, T, N). In an ONNX export it is written as its max, exp and sum over dim 1:
    ONNX Runtime runs ``Softmax`` on an axis that is not the last by transposing to it and back, 4x slower than these
    reductions at (8, 7, 4096) on 2 threads."""
    if torch.onnx.is_in_onnx_export():
        e = torch.exp(s - s.amax(1, keepdim=True))
        return e / e.sum(1, keepdim=True)
    return torch.softmax(s, 1)


def _affine(norm: nn.LayerNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """A LayerNorm's scale and shift (ones and zeros without them)."""
    c = norm.normalized_shape[-1]
    w = norm.weight if norm.weight is not None else torch.ones(c)
    return w, norm.bias if norm.bias is not None else torch.zeros(c, dtype=w.dtype, device=w.device)


def _activate(act: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``act(x)``, in place for GELU and ReLU."""
    if isinstance(act, nn.GELU):
        return torch.ops.aten.gelu_(x, approximate=act.approximate)
    if isinstance(act, nn.ReLU):
        return x.relu_()
    return act(x)


@dataclass
class _Derived:
    """What a click needs from the decoder's weights alone (image independent): the dense positional encoding
    ``pe`` as tokens (N, C); per block (index 0: None, the context has it) and, last, for the final attention,
    token-to-image attention's ``W_k pe^T`` by head (h, d, N); per block image-to-token attention's ``W_q pe^T``
    (index 0: None); the transposed convolutions as matrices over (sub-pixel, channel) columns, ``w1`` (C, 4 c1),
    ``w2`` (c1, 4 c2), with their biases repeated per sub-pixel.

    And what folds the blocks' ``norm4`` into the first transposed convolution. Block ``i`` ends with
    ``x_i = LN_i(x_{i-1} + A_i^T M_i)`` (``x_{-1}`` the context's keys; ``A_i`` (H T, N) image-to-token attention's
    softmax, ``M_i`` (H T, C) its values through ``out_proj``; per token ``LN(u) = g (u - mean) rstd + b``), so
    with ``W^(i) = diag(g_i ... g_{L-1}) w1`` and ``s_i = rstd_i ... rstd_{L-1}`` per token,
    ``x_{L-1} w1 + b1 = s_0 (keys W^(0)) + sum_i s_i A_i^T (M_i W^(i)) - sum_i s_i mean_i (1^T W^(i))
    + sum_{i < L-1} s_{i+1} (b_i W^(i+1)) + (b_{L-1} w1 + b1)``: ``keys W^(0)`` is per image (the context's ``p``)
    and a click's first up-sampling is one product with ``L H T + 2 L`` columns instead of ``C``. ``wfold``: the
    ``W^(i)``; ``qfold`` (2 L, 4 c1): the rows ``1^T W^(i)``, ``b_i W^(i+1)`` and the constant."""

    stamp: tuple
    pe: torch.Tensor
    kpe: list[torch.Tensor | None]
    qpe: list[torch.Tensor | None]
    w1: torch.Tensor
    b1: torch.Tensor
    w2: torch.Tensor
    b2: torch.Tensor
    wfold: list[torch.Tensor]
    qfold: torch.Tensor

    @classmethod
    def compute(cls, dec: nn.Module, prompt_encoder: nn.Module, device: torch.device, stamp: tuple) -> _Derived:
        pe = prompt_encoder.get_dense_pe().to(device)[0].flatten(1).t().contiguous()
        tf = dec.transformer

        def by_head(att: nn.Module, lin: nn.Linear) -> torch.Tensor:
            return F.linear(pe, lin.weight).t().reshape(att.num_heads, -1, pe.shape[0]).contiguous()

        kpe = [None] + [by_head(b.cross_attn_token_to_image, b.cross_attn_token_to_image.k_proj)
                        for b in tf.layers[1:]]
        kpe.append(by_head(tf.final_attn_token_to_image, tf.final_attn_token_to_image.k_proj))
        qpe = [None] + [by_head(b.cross_attn_image_to_token, b.cross_attn_image_to_token.q_proj)
                        for b in tf.layers[1:]]
        up1, up2 = dec.output_upscaling[0], dec.output_upscaling[3]
        w1 = up1.weight.permute(0, 2, 3, 1).reshape(up1.weight.shape[0], -1).contiguous()
        w2 = up2.weight.permute(0, 2, 3, 1).reshape(up2.weight.shape[0], -1).contiguous()
        b1 = up1.bias.repeat(4)
        norms = [(_affine(b.norm4)) for b in tf.layers]
        wfold = [w1]  # W^(L), then W^(L-1) ... W^(0)
        for g, _ in reversed(norms):
            wfold.append(g[:, None] * wfold[-1])
        wfold = wfold[::-1]  # W^(0) ... W^(L)
        rows = [w.sum(0) for w in wfold[:-1]]  # 1^T W^(i)
        rows += [norms[i][1] @ wfold[i + 1] for i in range(len(norms) - 1)]  # b_i W^(i+1)
        rows.append(norms[-1][1] @ w1 + b1)
        return cls(stamp, pe, kpe, qpe, w1, b1, w2, up2.bias.repeat(4), wfold[:-1], torch.stack(rows))


class ClickDecoder:
    """SAM's prompt encoder output -> the chosen low-resolution mask logits and IoU, on a :class:`ImageContext`.

    Holds references to ``sam.mask_decoder`` (a ``segment_anything`` ``MaskDecoder`` with a ``TwoWayTransformer``
    of depth >= 1) and ``sam.prompt_encoder``; nothing is copied. What the clicks derive from the weights alone
    (:class:`_Derived`) is cached per device and recomputed when one of the weights it comes from changes (in-place
    updates such as ``load_state_dict`` bump the tensors' version counters).
    """

    def __init__(self, sam: nn.Module, tile: int = TILE):
        self.dec = sam.mask_decoder
        self.prompt_encoder = sam.prompt_encoder
        self.img_size = int(sam.image_encoder.img_size)
        self.tile = int(tile)
        t = self.dec.transformer
        if not hasattr(t, "layers") or len(t.layers) < 1 or not hasattr(t, "final_attn_token_to_image"):
            raise TypeError(f"expected segment_anything's TwoWayTransformer in the mask decoder, got "
                            f"{type(t).__name__}.")
        up = self.dec.output_upscaling
        if (len(up) != 5 or any(not isinstance(up[i], nn.ConvTranspose2d) or up[i].kernel_size != (2, 2)
                                or up[i].stride != (2, 2) for i in (0, 3))):
            raise TypeError("expected SAM's output upscaling: two transposed convolutions of kernel 2, stride 2, with "
                            "a LayerNorm2d and activations between.")
        if self.tile < 1:
            raise ValueError(f"tile must be a positive number of image tokens, got {tile}.")
        self._derived: _Derived | None = None
        self._sources = [self.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix,
                         *(b.cross_attn_token_to_image.k_proj.weight for b in t.layers[1:]),
                         *(b.cross_attn_image_to_token.q_proj.weight for b in t.layers[1:]),
                         t.final_attn_token_to_image.k_proj.weight, *up[0].parameters(), *up[3].parameters(),
                         *(p for b in t.layers for p in b.norm4.parameters())]

    def derived(self, device: torch.device) -> _Derived:
        """What the per-click part needs from the weights alone, on ``device`` (cached; see the class doc)."""
        stamp = (str(device), _stamp(self._sources))
        if self._derived is None or self._derived.stamp != stamp:
            with torch.inference_mode():
                self._derived = _Derived.compute(self.dec, self.prompt_encoder, device, stamp)
        return self._derived

    @torch.inference_mode()
    def prepare(self, features: torch.Tensor) -> ImageContext:
        """The per-image part of the decoder for ``features`` (1, C, h, w), the image encoder's output."""
        if features.dim() != 4 or features.shape[0] != 1:
            raise ValueError(f"expected one image embedding (1, C, h, w), got shape {tuple(features.shape)}.")
        dense = self.prompt_encoder.no_mask_embed.weight.reshape(-1, 1, 1)
        keys = (features[0] + dense).flatten(1).t().contiguous()
        kp = keys + self.derived(keys.device).pe
        blk = self.dec.transformer.layers[0]
        ti, it = blk.cross_attn_token_to_image, blk.cross_attn_image_to_token
        k0 = _heads(F.linear(kp, ti.k_proj.weight, ti.k_proj.bias), ti.num_heads).contiguous()
        v0 = _heads(F.linear(keys, ti.v_proj.weight, ti.v_proj.bias), ti.num_heads).contiguous()
        q0 = F.linear(kp, it.q_proj.weight, it.q_proj.bias).t().reshape(it.num_heads, -1, kp.shape[0])
        p = torch.mm(keys, self.derived(keys.device).wfold[0])
        return ImageContext(keys, k0, v0, q0, tuple(features.shape[-2:]), p)

    # ---- attention between the prompt tokens and the image tokens
    @staticmethod
    def _token_to_image(att: nn.Module, q: torch.Tensor, x: torch.Tensor, kpe: torch.Tensor) -> torch.Tensor:
        """``att(q=q, k=x + pe, v=x)`` for tokens ``q`` (T, C) and image tokens ``x`` (N, C); ``kpe``: ``W_k pe^T``
        by head (h, d, N). ``k_proj``'s bias adds a constant to each softmax row, which leaves it unchanged."""
        h, t = att.num_heads, q.shape[0]
        d = att.internal_dim // h
        qp = _heads(F.linear(q, att.q_proj.weight, att.q_proj.bias) * d**-0.5, h)  # (h, T, d)
        spe = torch.bmm(qp, kpe)  # (h, T, N): the positional part of the scores
        if h * t >= att.internal_dim:  # many tokens: project the image tokens
            k = _heads(F.linear(x, att.k_proj.weight), h)
            o = torch.softmax(torch.baddbmm(spe, qp, k.transpose(1, 2)), -1) @ _heads(
                F.linear(x, att.v_proj.weight, att.v_proj.bias), h)
        else:  # q_h . W_k,h x = (q_h W_k,h) . x
            g = torch.bmm(qp, att.k_proj.weight.view(h, d, -1)).view(h * t, -1)  # (h T, C)
            p = torch.softmax(spe.view(h * t, -1).add_(_scores(x, g)), -1)  # (h T, N)
            r = torch.mm(p, x).view(h, t, -1)  # (h, T, C): softmax-weighted image tokens
            o = torch.baddbmm(att.v_proj.bias.view(h, 1, d), r, att.v_proj.weight.view(h, d, -1).transpose(1, 2))
        return F.linear(o.transpose(0, 1).reshape(t, -1), att.out_proj.weight, att.out_proj.bias)

    @staticmethod
    def _add_image_to_token(att: nn.Module, x: torch.Tensor, xq: torch.Tensor | None, qpe: torch.Tensor | None,
                            k: torch.Tensor, v: torch.Tensor, inplace: bool,
                            terms: list | None = None) -> torch.Tensor:
        """``x + att(q=x + pe, k=k, v=v)`` for image tokens ``x`` (N, C) and tokens ``k``, ``v`` (T, C), added into
        ``x`` when ``inplace``. ``xq``: ``att.q_proj(x + pe)`` by head, transposed (h, d, N), when already computed;
        else ``qpe``: ``W_q pe^T`` by head (h, d, N). ``terms``: gets the update as ``(A, M)``, ``A^T M`` with ``A``
        (h T, N), ``M`` (h T, C) (None with many tokens)."""
        h, t = att.num_heads, k.shape[0]
        d = att.internal_dim // h
        kh = _heads(F.linear(k, att.k_proj.weight, att.k_proj.bias) * d**-0.5, h)  # (h, T, d)
        vh = _heads(F.linear(v, att.v_proj.weight, att.v_proj.bias), h)
        many = h * t >= att.internal_dim
        if xq is None and many:  # many tokens: project the image tokens
            xq = F.linear(x, att.q_proj.weight, att.q_proj.bias).t().reshape(h, d, -1) + qpe
        # scores (h, T, N), softmax over each head's T tokens (dim 1: rows of N, not of T, for speed)
        if xq is not None:  # from the projected image tokens, head by head
            s = torch.bmm(kh, xq)
        else:  # q_proj folded into the keys: (k_h W_q,h) x^T + k_h (W_q,h pe^T + b_q,h)
            e = torch.bmm(kh, att.q_proj.weight.view(h, d, -1)).view(h * t, -1)  # (h T, C)
            s = torch.baddbmm(torch.bmm(kh, att.q_proj.bias.view(h, d, 1)), kh, qpe)
            s = s.view(h * t, -1).add_(_scores(x, e))
        a = _softmax_tokens(s.view(h, t, -1))
        if many:
            o = torch.bmm(a.transpose(1, 2), vh).transpose(0, 1).reshape(-1, att.internal_dim)
            o = F.linear(o, att.out_proj.weight, att.out_proj.bias)
            if terms is not None:
                terms.append(None)
            return x.add_(o) if inplace else x + o
        # out_proj folded into the values, sum_h a_h (v_h W_o,h^T), and its bias too: each head's weights sum to 1
        m = torch.bmm(vh, att.out_proj.weight.view(-1, h, d).permute(1, 2, 0)).reshape(h * t, -1)  # (h T, C)
        m = m + att.out_proj.bias / h
        a = a.view(h * t, -1)
        if terms is not None:
            terms.append((a, m))
        return x.addmm_(a.t(), m) if inplace else torch.addmm(x, a.t(), m)

    # ---- the decoder
    def _transformer(self, ctx: ImageContext, tokens: torch.Tensor, derived: _Derived, inplace: bool = True,
                     terms: list | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``TwoWayTransformer.forward`` on the context's image tokens and ``tokens`` (T, C) (queries and their
        positional encoding) up to its final attention: the tokens and the image tokens after the last block.
        ``inplace``: image-to-token attention adds into image tokens it made (never into ``ctx``). ``terms``: gets
        per block the image-to-token update ``(A, M)`` (or None) and ``norm4``'s mean and rstd per token."""
        tf = self.dec.transformer
        q, x = tokens, ctx.keys
        for i, blk in enumerate(tf.layers):
            if blk.skip_first_layer_pe:
                q = blk.norm1(blk.self_attn(q=q[None], k=q[None], v=q[None])[0])
            else:
                qp = (q + tokens)[None]
                q = blk.norm1(q + blk.self_attn(q=qp, k=qp, v=q[None])[0])
            if i == 0:  # the image side of the first block is in the context
                att = blk.cross_attn_token_to_image
                qh = _heads(F.linear(q + tokens, att.q_proj.weight, att.q_proj.bias), att.num_heads)
                o = torch.softmax(qh @ ctx.k0.transpose(1, 2) * (att.internal_dim // att.num_heads) ** -0.5,
                                  -1) @ ctx.v0
                a = F.linear(o.transpose(0, 1).reshape(q.shape[0], -1), att.out_proj.weight, att.out_proj.bias)
                xq = ctx.q0
            else:
                a = self._token_to_image(blk.cross_attn_token_to_image, q + tokens, x, derived.kpe[i])
                xq = None
            q = blk.norm2(q + a)
            q = blk.norm3(q + blk.mlp(q))
            x = self._add_image_to_token(blk.cross_attn_image_to_token, x, xq, derived.qpe[i], q + tokens, q,
                                         inplace and i > 0, terms)
            if terms is None:
                x = blk.norm4(x)
            else:
                x, mean, rstd = torch.native_layer_norm(x, blk.norm4.normalized_shape, blk.norm4.weight,
                                                        blk.norm4.bias, blk.norm4.eps)
                terms[-1] = (terms[-1], mean, rstd)
        return q, x

    @staticmethod
    def _fold(ctx: ImageContext, terms: list, derived: _Derived) -> tuple[torch.Tensor, ...] | None:
        """``(p, s_0, L^T, Q)`` with ``x_{L-1} w1 + b1 = s_0 p + L Q`` (:class:`_Derived`) from :meth:`_transformer`'s
        ``terms``; None when a block had many tokens or the context has no ``p``."""
        if ctx.p is None or any(t[0] is None for t in terms):
            return None
        n, nb = ctx.keys.shape[0], len(terms)
        s = [None] * nb  # s_i = rstd_i ... rstd_{L-1}, (1, N)
        acc = None
        for i in reversed(range(nb)):
            acc = terms[i][2].view(1, n) if acc is None else acc * terms[i][2].view(1, n)
            s[i] = acc
        rows = [a * s[i] for i, ((a, _), _, _) in enumerate(terms)]
        rows += [-(s[i] * terms[i][1].view(1, n)) for i in range(nb)]
        rows += [s[i + 1] for i in range(nb - 1)] + [torch.ones_like(s[0])]
        q = [m @ derived.wfold[i] for i, ((_, m), _, _) in enumerate(terms)]
        return ctx.p, s[0].view(n, 1), torch.cat(rows), torch.cat([*q, derived.qfold])

    def _final(self, q: torch.Tensor, tokens: torch.Tensor, x: torch.Tensor, rows: slice,
               derived: _Derived) -> torch.Tensor:
        """The transformer's output tokens ``rows``: their final token-to-image attention and ``norm_final_attn``
        (each output token depends only on its own row and the image tokens)."""
        tf = self.dec.transformer
        q = q[rows]
        return tf.norm_final_attn(q + self._token_to_image(tf.final_attn_token_to_image, q + tokens[rows], x,
                                                           derived.kpe[-1]))

    def _mask(self, x: torch.Tensor, grid: tuple[int, int], w: torch.Tensor, derived: _Derived,
              tile: int | None, keep: tuple[int, int] | None = None,
              fold: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
        """``w @ output_upscaling(x)`` (``w``: a hypernetwork's output) as a (4h, 4w) map for image tokens ``x``
        (N, C) on ``grid`` (h, w), or only its top-left (4 keep[0], 4 keep[1]): the two transposed convolutions
        (kernel 2, stride 2) as per-token matrix products, ``tile`` tokens at a time in reused buffers (None: all at
        once, for export), the sub-pixel positions kept in the last dimensions until the single mask is put in
        image order. ``fold``: :meth:`_fold`'s ``(p, s_0, L^T, Q)``, the first product as ``s_0 p + L Q``. In an
        exported graph (:class:`ClickGraph`) ``keep`` is a (2,) int64 tensor, an input."""
        if isinstance(keep, torch.Tensor):  # traced for export: the kept token rows and columns are a graph input
            x = x.view(*grid, -1).index_select(0, torch.arange(keep[0])).index_select(1, torch.arange(keep[1]))
            grid = x.shape[:2]
            x = x.reshape(-1, x.shape[-1])
        elif keep is not None and tuple(keep) != tuple(grid):  # views when only rows are dropped
            kh, kw = keep
            x = x.view(*grid, -1)[:kh, :kw].reshape(-1, x.shape[-1])
            if fold is not None:
                p, s0, lt, q = fold
                fold = (p.view(*grid, -1)[:kh, :kw].reshape(kh * kw, -1), s0.view(*grid)[:kh, :kw].reshape(-1, 1),
                        lt.view(-1, *grid)[:, :kh, :kw].reshape(lt.shape[0], -1), q)
            grid = (kh, kw)
        _, ln, act1, _, act2 = self.dec.output_upscaling
        w1, b1, w2, b2 = derived.w1, derived.b1, derived.w2, derived.b2
        c1, c2 = w2.shape[0], w2.shape[1] // 4
        n = x.shape[0]
        if tile is None:
            y = act1(F.layer_norm(torch.addmm(b1, x, w1).view(-1, c1), (c1,), ln.weight, ln.bias, ln.eps))
            # a (c2, 1) matrix, not a vector: ONNX Runtime's MatMul with a 1-D operand is 25x slower here
            m = torch.mm(act2(torch.addmm(b2, y, w2)).view(-1, c2), w.view(-1, 1)).view(-1)
        else:
            m = x.new_empty(16 * n)  # token, (a, b), (a2, b2)
            t = min(tile, n)
            ybuf, zbuf = x.new_empty(t, 4 * c1), x.new_empty(4 * t, 4 * c2)
            for s in range(0, n, t):
                e = min(n, s + t)
                if fold is None:
                    y = torch.addmm(b1, x[s:e], w1, out=ybuf[:e - s])  # (b, (a, b) c1)
                else:
                    p, s0, lt, q = fold
                    y = torch.mul(p[s:e], s0[s:e], out=ybuf[:e - s]).addmm_(lt[:, s:e].t(), q)
                y = _activate(act1, F.layer_norm(y.view(-1, c1), (c1,), ln.weight, ln.bias, ln.eps))  # LayerNorm2d
                z = _activate(act2, torch.addmm(b2, y, w2, out=zbuf[:4 * (e - s)]))
                torch.mv(z.view(-1, c2), w, out=m[16 * s:16 * e])
        # (gh, gw, a, b, a2, b2) -> rows (gh, a, a2), columns (gw, b, b2), in two 4-d permutations (one 6-d
        # permutation is several times slower in PyTorch)
        gh, gw = grid
        m = m.view(gh * gw * 2, 2, 2, 2).permute(0, 2, 1, 3).reshape(gh, gw, 4, 4)  # (.., a, b, a2, b2) -> a2 before b
        return m.permute(0, 2, 1, 3).reshape(4 * gh, 4 * gw)

    @torch.inference_mode()
    def decode(self, ctx: ImageContext, sparse: torch.Tensor, multimask: bool,
               input_size: tuple[int, int] | None = None) -> tuple[torch.Tensor, float, int]:
        """The chosen candidate's low-resolution mask logits (1, 1, 4h, 4w), its predicted IoU and its index among
        the decoder's mask tokens (0: the single mask; 1..3: the best-scoring of the three).

        Args:
            ctx: :meth:`prepare` of the image embedding.
            sparse: the prompt encoder's sparse embeddings (1, n, C) (points and boxes; no mask prompt).
            multimask: choose among the three multimask candidates (as ``multimask_output=True`` followed by the
                argmax of the IoUs), else the single mask.
            input_size: the resized image's size (``SamPredictor.input_size``): only the image tokens whose mask
                pixels :meth:`upscale` uses are up-sampled (the rows below a landscape image and the columns right
                of a portrait one are padding), and the logits are the top-left (1, 1, 4h', 4w') of the full map.
        """
        dec = self.dec
        if sparse.dim() != 3 or sparse.shape[0] != 1:
            raise ValueError(f"expected the sparse embeddings of one prompt set (1, n, C), got {tuple(sparse.shape)}.")
        derived = self.derived(ctx.keys.device)
        tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight, sparse[0]], 0)
        terms: list = []
        q, x = self._transformer(ctx, tokens, derived, terms=terms)
        if multimask:  # the IoU token decides which mask token to finish
            iou = dec.iou_prediction_head(self._final(q, tokens, x, slice(0, 1), derived)[0])
            best = 1 + int(torch.argmax(iou[1:]))
            token = self._final(q, tokens, x, slice(1 + best, 2 + best), derived)[0]
        else:
            out = self._final(q, tokens, x, slice(0, 2), derived)
            iou, best, token = dec.iou_prediction_head(out[0]), 0, out[1]
        keep = self._keep(ctx.grid, input_size)
        mask = self._mask(x, ctx.grid, dec.output_hypernetworks_mlps[best](token), derived, self.tile, keep,
                          self._fold(ctx, terms, derived))
        return mask[None, None], float(iou[best]), best

    def onnx_graph(self, grid: tuple[int, int]) -> bytes:
        """:class:`ClickGraph` for image tokens on ``grid`` exported to ONNX (any number of prompts), serialized; it
        holds a copy of the decoder's weights. Inputs in order: ``sparse``, the context's ``keys``, ``k0``, ``v0``,
        ``q0``, ``multimask``, ``keep`` (:meth:`onnx_feed`)."""
        from repvit.deploy.onnx_export import export_onnx_bytes

        g = torch.Generator().manual_seed(0)
        ctx = self.prepare(torch.randn(1, self.dec.transformer_dim, *grid, generator=g))
        sparse = torch.randn(1, 2, self.dec.transformer_dim, generator=g)
        args = (sparse, *(getattr(ctx, k) for k in _CONTEXT), torch.ones(1), torch.tensor(grid) - 1)
        with torch.no_grad():
            return export_onnx_bytes(ClickGraph(self, grid).eval(), args, dynamic_batch=False,
                                     input_names=list(_ONNX_INPUTS), output_names=["low_res_mask", "iou", "index"],
                                     dynamic_axes={"sparse": {1: "num_prompt_tokens"}})

    def onnx_session(self, grid: tuple[int, int], threads: int = 2) -> Any:
        """:meth:`onnx_graph` loaded in ONNX Runtime (:func:`repvit.deploy.onnx_export.make_session`, ``threads``
        intra-op threads); run it with :meth:`decode_onnx`."""
        from repvit.deploy.onnx_export import make_session

        return make_session(self.onnx_graph(grid), threads=threads, level="all")

    def onnx_feed(self, ctx: ImageContext, sparse: torch.Tensor, multimask: bool,
                  input_size: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
        """The inputs of :meth:`onnx_graph` for one decode (arguments as :meth:`decode`), by name in graph order."""
        feed = {k: getattr(ctx, k).cpu().numpy() for k in _CONTEXT}
        feed |= {"sparse": sparse.detach().cpu().numpy(), "multimask": np.array([float(multimask)], np.float32),
                 "keep": np.array(self._keep(ctx.grid, input_size), np.int64)}
        return {k: feed[k] for k in _ONNX_INPUTS}

    def decode_onnx(self, session: Any, ctx: ImageContext, sparse: torch.Tensor, multimask: bool,
                    input_size: tuple[int, int] | None = None) -> tuple[torch.Tensor, float, int]:
        """:meth:`decode` through an :meth:`onnx_session` of the context's grid (``input_size`` as there)."""
        low, iou, index = session.run(None, self.onnx_feed(ctx, sparse, multimask, input_size))
        return torch.from_numpy(low).to(ctx.keys.device), float(iou), int(index)

    def _keep(self, grid: tuple[int, int], input_size: tuple[int, int] | None) -> tuple[int, int]:
        """The image tokens' rows and columns that cover :meth:`low_res_extent`'s (all without ``input_size``)."""
        if input_size is None:
            return tuple(grid)
        return tuple(min(g, -(-r // 4)) for g, r in zip(grid, self.low_res_extent(input_size)))

    def low_res_extent(self, input_size: tuple[int, int]) -> tuple[int, int]:
        """The rows and columns of the low-resolution mask (the decoder's 4x the embedding grid) that
        ``Sam.postprocess_masks`` uses for an image resized to ``input_size``: those its crop keeps, plus one for the
        bilinear interpolation's neighbour."""
        gh, gw = self.prompt_encoder.image_embedding_size
        n = 4 * gh
        f = self.img_size // n
        if f * n != self.img_size or gh != gw:
            raise ValueError(f"the low-resolution mask side {n} does not divide the input size {self.img_size}.")
        h, w = input_size
        return min(n, -(-h // f) + 1), min(n, -(-w // f) + 1)

    @torch.inference_mode()
    def upscale(self, low: torch.Tensor, input_size: tuple[int, int], original_size: tuple[int, int],
                threshold: float = 0.0) -> np.ndarray:
        """``Sam.postprocess_masks`` of one mask's logits ``low`` (1, 1, l, l), or its top-left part that
        :meth:`decode` computes for ``input_size``, thresholded at ``threshold``: the (H, W) bool mask at
        ``original_size``.

        Only the low-resolution rows and columns the crop to ``input_size`` keeps are up-sampled
        (:meth:`low_res_extent`; the same interpolation weights: the scale stays ``img_size / l``), and the second
        up-sampling is skipped when the image was not resized (at scale 1 it is the identity).
        """
        rh, rw = self.low_res_extent(input_size)
        if low.shape[-2] < rh or low.shape[-1] < rw:
            raise ValueError(f"the low-resolution logits {tuple(low.shape[-2:])} do not cover the {rh} x {rw} that an "
                             f"input of {tuple(input_size)} needs: decode with that input_size.")
        f = self.img_size // (4 * self.prompt_encoder.image_embedding_size[0])
        h, w = input_size
        up = F.interpolate(low[..., :rh, :rw], (rh * f, rw * f), mode="bilinear", align_corners=False)
        up = up[..., :h, :w]
        if tuple(original_size) != (h, w):
            up = F.interpolate(up, tuple(original_size), mode="bilinear", align_corners=False)
        up = up[0, 0]
        if up.device.type == "cpu":  # numpy's comparison: a third of torch's time for a bool array on the CPU
            return up.numpy() > threshold
        return (up > threshold).cpu().numpy()


class ClickGraph(nn.Module):
    """:meth:`ClickDecoder.decode` as one traceable module, for ONNX export: inputs the sparse prompt embeddings
    (1, n, C), the :class:`ImageContext` tensors, ``multimask`` (1,) (> 0: choose among the three candidates) and
    ``keep`` (2,) int64, the token rows and columns to up-sample (those covering the resized image, as
    :meth:`ClickDecoder.decode` with ``input_size``); outputs the chosen low-resolution logits (1, 1, 4 keep[0],
    4 keep[1]), the top-left of the full map, its IoU and its index. The IoU token and the four mask
    tokens pass the final attention, all four hypernetworks run (a few thousand multiply-adds each) and the chosen
    output is gathered in the graph; the image-independent :class:`_Derived` tensors become constants."""

    def __init__(self, clicks: ClickDecoder, grid: tuple[int, int]):
        super().__init__()
        self.clicks, self.grid = clicks, tuple(grid)
        self.decoder = clicks.dec  # registered: its weights become the graph's initializers
        self.derived = clicks.derived(next(clicks.dec.parameters()).device)

    def forward(self, sparse: torch.Tensor, keys: torch.Tensor, k0: torch.Tensor, v0: torch.Tensor, q0: torch.Tensor,
                multimask: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        dec, cd, derived = self.decoder, self.clicks, self.derived
        tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight, sparse[0]], 0)
        q, x = cd._transformer(ImageContext(keys, k0, v0, q0, self.grid), tokens, derived, inplace=False)
        q = cd._final(q, tokens, x, slice(0, 1 + dec.num_mask_tokens), derived)
        iou = dec.iou_prediction_head(q[0])
        best = torch.where(multimask[0] > 0, torch.argmax(iou[1:]) + 1, torch.zeros((), dtype=torch.long))
        hyper = torch.stack([mlp(q[1 + i]) for i, mlp in enumerate(dec.output_hypernetworks_mlps)])
        return cd._mask(x, self.grid, hyper[best], derived, None, keep)[None, None], iou[best], best
