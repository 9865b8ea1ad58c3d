"""SAM's prompt-to-mask decoding split into a per-image part, run once when an image is embedded, and a per-click part.

``segment_anything``'s ``MaskDecoder`` runs a two-way transformer over the 64 x 64 image tokens and the prompt tokens
and then up-samples the image tokens to a 256 x 256 mask. :class:`ClickDecoder` computes the same mask with the same
modules and weights, reorganized:

* once per image (:meth:`ClickDecoder.prepare`): the image tokens plus ``no_mask_embed`` (no mask prompt), the dense
  positional encoding, and in the first ``TwoWayAttentionBlock`` the image-side projections, which see no prompt yet
  (token-to-image attention's ``k_proj(keys + key_pe)`` and ``v_proj(keys)``, image-to-token attention's
  ``q_proj(keys + key_pe)``);
* per click (:meth:`ClickDecoder.decode`), the cross attentions on image tokens that already depend on the prompt
  move their projections to the few prompt tokens: with ``T`` tokens and ``H`` heads, ``softmax(q W_k (x + pe)^T)``
  needs ``q W_k`` (``H T x C``) instead of ``W_k`` applied to all 4096 image tokens, the values ``x W_v^T`` leave the
  sum over image tokens (softmax rows sum to 1), and image-to-token attention folds ``out_proj`` into the token
  values. Each of those costs ``4096 x C x H T`` multiply-adds instead of ``4096 x C x C/2`` (half or less for the
  app's prompts, ``H T <= 64``); with more tokens the plain projections are used;
* the predicted IoUs come first, so only the chosen candidate's hypernetwork and mask are computed; the two
  2 x 2-stride transposed convolutions run as matrix products on the tokens (no pixel shuffle of the feature maps;
  ``LayerNorm2d`` as ``layer_norm`` over the channels), and only the chosen mask is put in image order.

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


@dataclass
class ImageContext:
    """What the mask decoder needs from one image embedding, computed once (:meth:`ClickDecoder.prepare`).

    ``keys`` (N, C): the image tokens plus ``no_mask_embed``; ``k0``, ``v0`` (H, N, C/2H): the first block's
    token-to-image keys and values by head; ``q0`` (H, C/2H, N): its image-to-token queries by head, transposed;
    ``grid``: (h, w) tokens.
    """

    keys: torch.Tensor
    k0: torch.Tensor
    v0: torch.Tensor
    q0: torch.Tensor
    grid: tuple[int, int]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.keys, self.k0, self.v0, self.q0))


def _heads(x: torch.Tensor, h: int) -> torch.Tensor:
    """(N, h * d) -> (h, N, d)."""
    return x.view(x.shape[0], h, -1).transpose(0, 1)


class ClickDecoder:
    """SAM's prompt encoder output -> the chosen low-resolution mask logits and IoU, on a :class:`ImageContext`.

    Holds references to ``sam.mask_decoder`` (a ``segment_anything`` ``MaskDecoder`` with a ``TwoWayTransformer``
    of depth >= 1) and ``sam.prompt_encoder``; nothing is copied, so weight changes take effect at once, except
    the dense positional encoding, cached per device on first use.
    """

    def __init__(self, sam: nn.Module):
        self.dec = sam.mask_decoder
        self.prompt_encoder = sam.prompt_encoder
        self.img_size = int(sam.image_encoder.img_size)
        t = self.dec.transformer
        if not hasattr(t, "layers") or len(t.layers) < 1 or not hasattr(t, "final_attn_token_to_image"):
            raise TypeError(f"expected segment_anything's TwoWayTransformer in the mask decoder, got "
                            f"{type(t).__name__}.")
        self._pe: torch.Tensor | None = None

    def pe(self, device: torch.device) -> torch.Tensor:
        """The dense positional encoding as tokens (N, C) (the same for every image)."""
        if self._pe is None or self._pe.device != device:
            pe = self.prompt_encoder.get_dense_pe().to(device)
            self._pe = pe[0].flatten(1).t().contiguous()
        return self._pe

    @torch.inference_mode()
    def prepare(self, features: torch.Tensor) -> ImageContext:
        """The per-image part of the decoder for ``features`` (1, C, h, w), the image encoder's output."""
        if features.dim() != 4 or features.shape[0] != 1:
            raise ValueError(f"expected one image embedding (1, C, h, w), got shape {tuple(features.shape)}.")
        dense = self.prompt_encoder.no_mask_embed.weight.reshape(-1, 1, 1)
        keys = (features[0] + dense).flatten(1).t().contiguous()
        kp = keys + self.pe(keys.device)
        blk = self.dec.transformer.layers[0]
        ti, it = blk.cross_attn_token_to_image, blk.cross_attn_image_to_token
        k0 = _heads(F.linear(kp, ti.k_proj.weight, ti.k_proj.bias), ti.num_heads).contiguous()
        v0 = _heads(F.linear(keys, ti.v_proj.weight, ti.v_proj.bias), ti.num_heads).contiguous()
        q0 = F.linear(kp, it.q_proj.weight, it.q_proj.bias).t().reshape(it.num_heads, -1, kp.shape[0])
        return ImageContext(keys, k0, v0, q0, tuple(features.shape[-2:]))

    # ---- attention between the prompt tokens and the image tokens
    @staticmethod
    def _token_to_image(att: nn.Module, q: torch.Tensor, x: torch.Tensor, xp: torch.Tensor) -> torch.Tensor:
        """``att(q=q, k=xp, v=x)`` for tokens ``q`` (T, C) and image tokens ``x``, ``xp = x + pe`` (N, C)."""
        h = att.num_heads
        d = att.internal_dim // h
        qp = F.linear(q, att.q_proj.weight, att.q_proj.bias)
        if h * q.shape[0] >= att.internal_dim:  # many tokens: project the image tokens
            k = _heads(F.linear(xp, att.k_proj.weight, att.k_proj.bias), h)
            v = _heads(F.linear(x, att.v_proj.weight, att.v_proj.bias), h)
            o = torch.softmax(_heads(qp, h) @ k.transpose(1, 2) * d**-0.5, -1) @ v
            return F.linear(o.transpose(0, 1).reshape(q.shape[0], -1), att.out_proj.weight, att.out_proj.bias)
        # q_h . (W_k,h xp + b_k,h) = (q_h W_k,h) . xp + const: the bias shifts a softmax row by a constant
        g = torch.bmm(_heads(qp * d**-0.5, h), att.k_proj.weight.view(h, d, -1)).reshape(-1, x.shape[1])  # (hT, C)
        p = torch.softmax(torch.mm(g, xp.t()), -1)  # (h T, N)
        r = torch.mm(p, x).view(h, q.shape[0], -1)  # (h, T, C): softmax-weighted image tokens
        o = torch.baddbmm(att.v_proj.bias.view(h, 1, d), r, att.v_proj.weight.view(h, d, -1).transpose(1, 2))
        return F.linear(o.transpose(0, 1).reshape(q.shape[0], -1), att.out_proj.weight, att.out_proj.bias)

    @staticmethod
    def _add_image_to_token(att: nn.Module, x: torch.Tensor, xq: torch.Tensor | None, xp: torch.Tensor,
                            k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``x + att(q=xp, k=k, v=v)`` for image tokens ``x``, ``xp = x + pe`` (N, C) and tokens ``k``, ``v``
        (T, C); ``xq`` is ``att.q_proj(xp)`` by head, transposed (h, d, N), when already computed."""
        h, t = att.num_heads, k.shape[0]
        d = att.internal_dim // h
        kh = _heads(F.linear(k, att.k_proj.weight, att.k_proj.bias), h) * d**-0.5  # (h, T, d)
        vh = _heads(F.linear(v, att.v_proj.weight, att.v_proj.bias), h)
        if xq is None and h * t >= att.internal_dim:  # many tokens: project the image tokens
            xq = F.linear(xp, att.q_proj.weight, att.q_proj.bias).t().reshape(h, d, -1)
        # scores (h T, N), softmax over each head's T tokens (dim 1 of (h, T, N): rows of N, not of T, for speed)
        if xq is not None:  # from the projected image tokens, head by head
            s = torch.bmm(kh, xq).view(h * t, -1)
        else:  # q_proj folded into the keys: k_h W_q,h xp^T + k_h b_q,h
            e = torch.bmm(kh, att.q_proj.weight.view(h, d, -1)).reshape(h * t, -1)  # (h T, C)
            s = torch.addmm(torch.bmm(kh, att.q_proj.bias.view(h, d, 1)).view(h * t, 1), e, xp.t())
        a = torch.softmax(s.view(h, t, -1), 1)
        if h * t >= att.internal_dim:
            o = torch.bmm(a.transpose(1, 2), vh).transpose(0, 1).reshape(-1, att.internal_dim)
            return x + F.linear(o, att.out_proj.weight, att.out_proj.bias)
        # out_proj folded into the values, sum_h a_h (v_h W_o,h^T), and its bias too: each head's weights sum to 1
        m = torch.bmm(vh, att.out_proj.weight.view(-1, h, d).permute(1, 2, 0)).reshape(h * t, -1)  # (h T, C)
        return torch.addmm(x, a.view(h * t, -1).t(), m + att.out_proj.bias / h)

    # ---- the decoder
    def _transformer(self, ctx: ImageContext, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``TwoWayTransformer.forward`` on the context's image tokens and ``tokens`` (T, C) (queries and their
        positional encoding)."""
        tf = self.dec.transformer
        pe = self.pe(ctx.keys.device)
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
                xp, xq = None, ctx.q0
            else:
                xp, xq = x + pe, None
                a = self._token_to_image(blk.cross_attn_token_to_image, q + tokens, x, xp)
            q = blk.norm2(q + a)
            q = blk.norm3(q + blk.mlp(q))
            x = blk.norm4(self._add_image_to_token(blk.cross_attn_image_to_token, x, xq, xp, q + tokens, q))
        q = tf.norm_final_attn(q + self._token_to_image(tf.final_attn_token_to_image, q + tokens, x, x + pe))
        return q, x

    def _mask(self, x: torch.Tensor, grid: tuple[int, int], w: torch.Tensor) -> torch.Tensor:
        """``w @ output_upscaling(x)`` (``w``: a hypernetwork's output) as a (4h, 4w) map for image tokens ``x``
        (N, C): the two transposed convolutions (kernel 2, stride 2) as per-token matrix products, the sub-pixel
        positions kept in the last dimensions until the single mask is put in image order."""
        up1, ln, act1, up2, act2 = self.dec.output_upscaling
        c1, c2 = up1.weight.shape[1], up2.weight.shape[1]
        if up1.kernel_size != (2, 2) or up1.stride != (2, 2) or up2.kernel_size != (2, 2) or up2.stride != (2, 2):
            raise TypeError("expected SAM's output upscaling: two transposed convolutions of kernel 2, stride 2.")
        y = torch.addmm(up1.bias.repeat(4), x, up1.weight.permute(0, 2, 3, 1).reshape(x.shape[1], 4 * c1))
        y = act1(F.layer_norm(y.view(-1, c1), (c1,), ln.weight, ln.bias, ln.eps))  # (N 4, c1), LayerNorm2d
        z = act2(torch.addmm(up2.bias.repeat(4), y, up2.weight.permute(0, 2, 3, 1).reshape(c1, 4 * c2)))
        m = torch.mv(z.view(-1, c2), w)  # (N 4 4,): token, (a, b), (a2, b2)
        gh, gw = grid
        return m.view(gh, gw, 2, 2, 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(4 * gh, 4 * gw)

    @torch.inference_mode()
    def decode(self, ctx: ImageContext, sparse: torch.Tensor, multimask: bool) -> tuple[torch.Tensor, float, int]:
        """The chosen candidate's low-resolution mask logits (1, 1, 4h, 4w), its predicted IoU and its index among
        the decoder's mask tokens (0: the single mask; 1..3: the best-scoring of the three).

        Args:
            ctx: :meth:`prepare` of the image embedding.
            sparse: the prompt encoder's sparse embeddings (1, n, C) (points and boxes; no mask prompt).
            multimask: choose among the three multimask candidates (as ``multimask_output=True`` followed by the
                argmax of the IoUs), else the single mask.
        """
        dec = self.dec
        if sparse.dim() != 3 or sparse.shape[0] != 1:
            raise ValueError(f"expected the sparse embeddings of one prompt set (1, n, C), got {tuple(sparse.shape)}.")
        tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight, sparse[0]], 0)
        q, x = self._transformer(ctx, tokens)
        iou = dec.iou_prediction_head(q[0])
        best = 1 + int(torch.argmax(iou[1:])) if multimask else 0
        mask = self._mask(x, ctx.grid, dec.output_hypernetworks_mlps[best](q[1 + best]))
        return mask[None, None], float(iou[best]), best

    def onnx_session(self, grid: tuple[int, int], threads: int = 2) -> Any:
        """:class:`ClickGraph` for image tokens on ``grid`` exported to ONNX (any number of prompts) and loaded in
        ONNX Runtime (:func:`repvit.deploy.onnx_export.make_session`, ``threads`` intra-op threads); run it with
        :meth:`decode_onnx`. The graph holds a copy of the decoder's weights."""
        from repvit.deploy.onnx_export import export_onnx_bytes, make_session

        g = torch.Generator().manual_seed(0)
        ctx = self.prepare(torch.randn(1, self.dec.transformer_dim, *grid, generator=g))
        sparse = torch.randn(1, 2, self.dec.transformer_dim, generator=g)
        args = (sparse, *(getattr(ctx, k) for k in _CONTEXT), torch.ones(1))
        with torch.no_grad():
            data = export_onnx_bytes(ClickGraph(self, grid).eval(), args, dynamic_batch=False,
                                     input_names=["sparse", *_CONTEXT, "multimask"],
                                     output_names=["low_res_mask", "iou", "index"],
                                     dynamic_axes={"sparse": {1: "num_prompt_tokens"}})
        return make_session(data, threads=threads, level="all")

    def decode_onnx(self, session: Any, ctx: ImageContext, sparse: torch.Tensor,
                    multimask: bool) -> tuple[torch.Tensor, float, int]:
        """:meth:`decode` through an :meth:`onnx_session` of the context's grid."""
        feed = {k: getattr(ctx, k).cpu().numpy() for k in _CONTEXT}
        feed |= {"sparse": sparse.detach().cpu().numpy(), "multimask": np.array([float(multimask)], np.float32)}
        low, iou, index = session.run(None, feed)
        return torch.from_numpy(low).to(ctx.keys.device), float(iou), int(index)

    @torch.inference_mode()
    def upscale(self, low: torch.Tensor, input_size: tuple[int, int], original_size: tuple[int, int],
                threshold: float = 0.0) -> np.ndarray:
        """``Sam.postprocess_masks`` of one mask's logits ``low`` (1, 1, l, l) thresholded at ``threshold``: the
        (H, W) bool mask at ``original_size``.

        Only the low-resolution rows and columns the crop to ``input_size`` keeps are up-sampled (the same
        interpolation weights: the scale stays ``img_size / l``), and the second up-sampling is skipped when the
        image was not resized (at scale 1 it is the identity).
        """
        n = low.shape[-1]
        f = self.img_size // n
        if f * n != self.img_size:
            raise ValueError(f"the low-resolution mask side {n} does not divide the input size {self.img_size}.")
        h, w = input_size
        rh, rw = min(n, -(-h // f) + 1), min(n, -(-w // f) + 1)
        up = F.interpolate(low[..., :rh, :rw], (rh * f, rw * f), mode="bilinear", align_corners=False)
        up = up[..., :h, :w]
        if tuple(original_size) != (h, w):
            up = F.interpolate(up, tuple(original_size), mode="bilinear", align_corners=False)
        return (up[0, 0] > threshold).cpu().numpy()


class ClickGraph(nn.Module):
    """:meth:`ClickDecoder.decode` as one traceable module, for ONNX export: inputs the sparse prompt embeddings
    (1, n, C), the :class:`ImageContext` tensors and ``multimask`` (1,) (> 0: choose among the three candidates);
    outputs the chosen low-resolution logits (1, 1, 4h, 4w), its IoU and its index. All four hypernetworks run (a
    few thousand multiply-adds each) and the chosen output is gathered in the graph."""

    def __init__(self, clicks: ClickDecoder, grid: tuple[int, int]):
        super().__init__()
        self.clicks, self.grid = clicks, tuple(grid)
        self.decoder = clicks.dec  # registered: its weights become the graph's initializers

    def forward(self, sparse: torch.Tensor, keys: torch.Tensor, k0: torch.Tensor, v0: torch.Tensor, q0: torch.Tensor,
                multimask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        dec, cd = self.decoder, self.clicks
        tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight, sparse[0]], 0)
        q, x = cd._transformer(ImageContext(keys, k0, v0, q0, self.grid), tokens)
        iou = dec.iou_prediction_head(q[0])
        best = torch.where(multimask[0] > 0, torch.argmax(iou[1:]) + 1, torch.zeros((), dtype=torch.long))
        hyper = torch.stack([mlp(q[1 + i]) for i, mlp in enumerate(dec.output_hypernetworks_mlps)])
        return cd._mask(x, self.grid, hyper[best])[None, None], iou[best], best
