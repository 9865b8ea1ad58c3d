"""EdgeTAM to ONNX: the image path and the video path as four graphs, each checked against PyTorch in ONNX Runtime.

* ``image_encoder.onnx``: the (fused) RepViT trunk, the FPN neck and the decoder's high-resolution projections.
  Input ``image`` ``(1, 3, 1024, 1024)`` (ImageNet-normalized); outputs ``vision_features`` ``(1, 256, 64, 64)``
  (the memory's input), ``image_embeddings`` (the same plus ``no_mem_embed``: what the decoder takes on a single
  image or a frame segmented without memory), ``high_res_feat0`` ``(1, 32, 256, 256)`` and ``high_res_feat1``
  ``(1, 64, 128, 128)``.
* ``prompt_decoder.onnx``: SAM 2's prompt encoder + mask decoder. Points ``(1, N, 2)`` in the 1024 input frame with
  float labels ``(1, N)`` (1 positive, 0 negative, 2/3 box corners, -1 padding: frames without clicks pass one point
  ``(0, 0)`` labelled -1, as SAM 2 does); a padding point is appended inside, as SAM 2's prompt encoder does without
  boxes. ``mask_input`` ``(1, 1, 256, 256)`` counts only where ``has_mask_input`` is 1 (SAM's ONNX convention).
  Outputs every mask token's ``low_res_masks`` ``(1, 4, 256, 256)`` and ``iou_predictions`` ``(1, 4)`` (token 0 the
  single mask, 1-3 the multimask outputs), ``object_score_logits`` ``(1, 1)`` and each token's object pointer
  ``obj_ptr`` ``(1, 4, 256)`` (``no_obj_ptr`` where the object score says absent); choosing among them is
  :func:`repvit.sam.sam2.onnx_tracker.select_mask`'s.
* ``memory_encoder.onnx``: the memory encoder and the spatial perceiver. Inputs ``vision_features``, ``mask_logits``
  ``(1, 1, H, W)`` (any size, resized to 1024 bilinearly; the decoder's 256x256 logits) and ``binarize`` ``(1,)``
  (1: encode ``mask_logits > 0``, SAM 2's choice for clicked frames; 0: their sigmoid); outputs ``maskmem_features``
  and ``maskmem_pos_enc`` ``(1, 512, 64)``.
* ``memory_attention.onnx``: the memory attention over a fixed-size memory bank owned by the caller: ``memory`` and
  ``memory_pos`` ``(S, 512, 64)``, ``memory_tpos`` ``(S,)`` int64 (SAM 2's ``t_pos``: 0 for a conditioning frame,
  ``num_maskmem - k`` for the frame ``k`` steps back; the temporal encoding is added inside), ``memory_valid``
  ``(S,)`` bool, ``obj_ptrs`` ``(P, 256)`` with ``obj_ptr_valid`` ``(P,)`` bool. The valid slots are gathered in the
  graph and the attention runs over them alone (SAM 2's attention over the valid memories; what an empty slot holds
  is never read); at least one memory must be valid, as on every tracked frame (pointers may be none). Output
  ``pix_feat`` ``(1, 256, 64, 64)``, the decoder's ``image_embeddings`` on a tracked frame. RoPE is in real
  arithmetic; the cross-attention to the memory runs at the memory's width where RoPE allows it
  (:func:`graph_cross_attention`).

:func:`export_edgetam_onnx` writes the four graphs and ``manifest.json`` (names, shapes, bank sizes, settings).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repvit.deploy.onnx_export import OPSET, add_metadata, export_onnx_bytes, make_session
from repvit.deploy.parity import ParityReport, compare_outputs
from repvit.io import atomic_write

from .build import fuse_edgetam, is_fused_edgetam
from .model import EdgeTAM
from .position_encoding import apply_rope, axial_rope
from .transformer import Rope

__all__ = [
    "GRAPHS",
    "MANIFEST_NAME",
    "ImageEncoderGraph",
    "PromptDecoderGraph",
    "MemoryEncoderGraph",
    "MemoryAttentionGraph",
    "graph_cross_attention",
    "graph_examples",
    "export_edgetam_onnx",
    "export_edgetam_image_encoder_coreml",
]

MANIFEST_NAME = "manifest.json"
#: graph name -> (input names, output names)
GRAPHS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "image_encoder": (("image",), ("vision_features", "image_embeddings", "high_res_feat0", "high_res_feat1")),
    "prompt_decoder": (
        ("image_embeddings", "high_res_feat0", "high_res_feat1", "point_coords", "point_labels", "mask_input",
         "has_mask_input"),
        ("low_res_masks", "iou_predictions", "object_score_logits", "obj_ptr"),
    ),
    "memory_encoder": (("vision_features", "mask_logits", "binarize"), ("maskmem_features", "maskmem_pos_enc")),
    "memory_attention": (
        ("vision_features", "memory", "memory_pos", "memory_tpos", "memory_valid", "obj_ptrs", "obj_ptr_valid"),
        ("pix_feat",),
    ),
}
_DYNAMIC_AXES = {
    "prompt_decoder": {"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}},
    "memory_encoder": {"mask_logits": {2: "mask_height", 3: "mask_width"}},
}


class ImageEncoderGraph(nn.Module):
    """Trunk + neck + ``conv_s0``/``conv_s1``: ``image`` -> (vision_features, image_embeddings, high_res_feat0,
    high_res_feat1)."""

    def __init__(self, model: EdgeTAM):
        super().__init__()
        self.image_encoder = model.image_encoder
        self.conv_s0 = model.sam_mask_decoder.conv_s0
        self.conv_s1 = model.sam_mask_decoder.conv_s1
        self.no_mem_embed = model.no_mem_embed

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        fpn = self.image_encoder(image)["backbone_fpn"]
        feats = fpn[-1]
        return feats, feats + self.no_mem_embed.view(1, -1, 1, 1), self.conv_s0(fpn[0]), self.conv_s1(fpn[1])


class PromptDecoderGraph(nn.Module):
    """SAM 2's prompt encoder + mask decoder with every mask token's outputs and object pointer."""

    def __init__(self, model: EdgeTAM):
        super().__init__()
        self.prompt_encoder = model.sam_prompt_encoder
        self.mask_decoder = model.sam_mask_decoder
        self.obj_ptr_proj = model.obj_ptr_proj
        self.no_obj_ptr = model.no_obj_ptr
        self.register_buffer("image_pe", model.sam_prompt_encoder.get_dense_pe().detach().clone())

    def forward(
        self, image_embeddings: Tensor, high_res_feat0: Tensor, high_res_feat1: Tensor, point_coords: Tensor,
        point_labels: Tensor, mask_input: Tensor, has_mask_input: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
        sparse, no_mask = self.prompt_encoder(points=(point_coords, point_labels), boxes=None, masks=None)
        has_mask = has_mask_input.view(-1, 1, 1, 1)
        dense = has_mask * self.prompt_encoder.mask_downscaling(mask_input) + (1 - has_mask) * no_mask
        masks, iou, tokens, object_score_logits = self.mask_decoder.predict_masks(
            image_embeddings, self.image_pe, sparse, dense, repeat_image=False,
            high_res_features=[high_res_feat0, high_res_feat1],
        )
        appearing = (object_score_logits > 0).float().unsqueeze(-1)
        obj_ptr = appearing * self.obj_ptr_proj(tokens) + (1 - appearing) * self.no_obj_ptr
        return masks, iou, object_score_logits, obj_ptr


class MemoryEncoderGraph(nn.Module):
    """A frame's features and mask logits -> its perceiver memory ``(1, 512, 64)`` and their encoding."""

    def __init__(self, model: EdgeTAM):
        super().__init__()
        self.memory_encoder = model.memory_encoder
        self.spatial_perceiver = model.spatial_perceiver
        self.image_size = model.image_size
        self.scale = float(model.sigmoid_scale_for_mem_enc)
        self.bias = float(model.sigmoid_bias_for_mem_enc)
        perceiver = model.spatial_perceiver
        self.out_shape = (perceiver.num_latents + perceiver.num_latents_2d, model.mem_dim)

    def forward(self, vision_features: Tensor, mask_logits: Tensor, binarize: Tensor) -> tuple[Tensor, Tensor]:
        size = (self.image_size, self.image_size)
        high_res = F.interpolate(mask_logits, size=size, mode="bilinear", align_corners=False)
        binary = binarize.view(-1, 1, 1, 1) > 0.5
        mask = torch.where(binary, (high_res > 0).float(), torch.sigmoid(high_res))
        mask = mask * self.scale + self.bias
        out = self.memory_encoder(vision_features, mask, skip_mask_sigmoid=True)
        features, pos = self.spatial_perceiver(out["vision_features"], out["vision_pos_enc"][0])
        # static output shapes in the graph (the mask's size is symbolic)
        return features.reshape(1, *self.out_shape), pos.reshape(1, *self.out_shape)


def graph_cross_attention(attn: nn.Module, x: Tensor, rotated_keys: Tensor, rope: Rope, plain_keys: Tensor,
                          values: Tensor, q_rope: Rope) -> Tensor:
    """EdgeTAM's cross-attention to the memory, ``attn(x, keys, values)``, as the memory-attention graph computes it.

    ``x`` ``(1, N, C)``; ``rotated_keys`` ``(S, L, C_kv)``: each memory's 2D latents with their encodings, rotated
    after ``k_proj`` by ``rope`` (the ``L`` latents' tables, the same for every memory); ``plain_keys`` ``(P, C_kv)``:
    the tokens RoPE leaves alone (global latents with their encodings, object-pointer tokens); ``values``
    ``(S L + P, C_kv)``: the memory tokens in that order (rotated, then plain), without encodings.

    The same attention with fewer multiply-adds: a plain key's score is ``q . (W_k m + b_k) = [W_k^T q, q . b_k] .
    [m, 1]``, a product at the key's width ``C_kv + 1`` instead of ``C``; and every value enters as
    ``softmax(S) (M W_v^T + b_v) = (softmax(S) M) W_v^T + b_v`` (each row of ``softmax(S)`` sums to 1), so the
    weighted sum runs at ``C_kv`` (64 for EdgeTAM, against 256).
    """
    h = attn.num_heads
    dh = attn.internal_dim // h
    n = x.shape[1]
    q = apply_rope(attn._heads(attn.q_proj(x)), *q_rope) * dh**-0.5  # (1, h, N, dh)
    k = apply_rope(attn._heads(attn.k_proj(rotated_keys)), *rope)  # (S, h, L, dh)
    k = k.transpose(0, 1).reshape(1, h, -1, dh)
    q_plain = torch.cat([torch.matmul(q, attn.k_proj.weight.view(h, dh, -1)),
                         torch.matmul(q, attn.k_proj.bias.view(h, dh, 1))], dim=-1)  # (1, h, N, C_kv + 1)
    k_plain = torch.cat([plain_keys, torch.ones_like(plain_keys[:, :1])], dim=-1)  # (P, C_kv + 1)
    scores = torch.cat([torch.matmul(q, k.transpose(-2, -1)), torch.matmul(q_plain, k_plain.t())], dim=-1)
    out = torch.matmul(torch.softmax(scores, dim=-1), values)  # (1, h, N, C_kv)
    out = torch.matmul(out, attn.v_proj.weight.view(h, dh, -1).transpose(1, 2)) + attn.v_proj.bias.view(h, 1, dh)
    return attn.out_proj(out.transpose(1, 2).reshape(1, n, h * dh))


class MemoryAttentionGraph(nn.Module):
    """EdgeTAM's memory attention over a bank of memories and object pointers with validity flags (see the module
    docstring); the bank's sizes are those of the inputs.

    The valid slots are gathered first, so the attention runs over them alone (its size follows the bank's filling)
    and needs no mask; the cross-attention is :func:`graph_cross_attention`. At least one memory must be valid (a
    tracked frame always has its conditioning frame's); there may be no valid pointer."""

    def __init__(self, model: EdgeTAM):
        super().__init__()
        attn = model.memory_attention
        self.attention = attn
        self.maskmem_tpos_enc = model.maskmem_tpos_enc
        self.num_maskmem = model.num_maskmem
        self.mem_dim = model.mem_dim
        self.num_global = attn.num_global_latents
        side = model.sam_image_embedding_size
        pos = model.image_encoder.neck.position_encoding(torch.zeros(1, model.hidden_dim, side, side))
        self.register_buffer("curr_pos", pos.flatten(2).transpose(1, 2).clone())
        dh = attn.d_model // attn.num_heads
        q_cos, q_sin = axial_rope(dh, side, side, attn.rope_theta)
        k_cos, k_sin = axial_rope(dh, attn.latent_side, attn.latent_side, attn.rope_theta)
        for name, t in (("q_cos", q_cos), ("q_sin", q_sin), ("k_cos", k_cos), ("k_sin", k_sin)):
            self.register_buffer(name, t.clone())

    def forward(
        self, vision_features: Tensor, memory: Tensor, memory_pos: Tensor, memory_tpos: Tensor, memory_valid: Tensor,
        obj_ptrs: Tensor, obj_ptr_valid: Tensor,
    ) -> Tensor:  # fmt: skip
        b, c, h, w = vision_features.shape
        g, cm = self.num_global, self.mem_dim
        slots = torch.nonzero(memory_valid).flatten()
        mem = memory.index_select(0, slots)  # (S, T, C_kv)
        tpos = self.maskmem_tpos_enc[self.num_maskmem - 1 - memory_tpos.index_select(0, slots)].view(-1, 1, cm)
        keys = mem + memory_pos.index_select(0, slots) + tpos
        ptrs = obj_ptrs.index_select(0, torch.nonzero(obj_ptr_valid).flatten()).reshape(-1, cm)  # no encoding
        plain_keys = torch.cat([keys[:, :g].reshape(-1, cm), ptrs])
        values = torch.cat([mem[:, g:].reshape(-1, cm), mem[:, :g].reshape(-1, cm), ptrs])
        rope, q_rope = (self.k_cos, self.k_sin), (self.q_cos, self.q_sin)
        out = vision_features.flatten(2).transpose(1, 2) + 0.1 * self.curr_pos
        for layer in self.attention.layers:
            x = layer.norm1(out)
            out = out + layer.self_attn(x, x, x, q_rope=q_rope, k_rope=q_rope)
            out = out + graph_cross_attention(layer.cross_attn_image, layer.norm2(out), keys[:, g:], rope, plain_keys,
                                              values, q_rope)
            out = out + layer.linear2(F.relu(layer.linear1(layer.norm3(out))))
        return self.attention.norm(out).transpose(1, 2).reshape(b, c, h, w)


def _memory_bank_example(model: EdgeTAM, slots: int, ptr_slots: int, g: torch.Generator) -> tuple[Tensor, ...]:
    """A bank with its first slot a conditioning frame, some recent frames and pointers, the rest empty."""
    tokens = model.spatial_perceiver.num_latents + model.spatial_perceiver.num_latents_2d
    memory = torch.randn(slots, tokens, model.mem_dim, generator=g)
    memory_pos = torch.randn(slots, tokens, model.mem_dim, generator=g)
    memory_tpos = torch.tensor([0] + [model.num_maskmem - 1 - i % (model.num_maskmem - 1) for i in range(slots - 1)])
    memory_valid = torch.arange(slots) < max(1, slots - 2)
    obj_ptrs = torch.randn(ptr_slots, model.hidden_dim, generator=g)
    obj_ptr_valid = torch.arange(ptr_slots) < max(1, ptr_slots // 2)
    return memory, memory_pos, memory_tpos, memory_valid, obj_ptrs, obj_ptr_valid


def graph_examples(model: EdgeTAM, num_memory_slots: int, num_obj_ptr_slots: int, seed: int = 0,
                   num_points: int = 3) -> dict[str, tuple[Tensor, ...]]:  # fmt: skip
    """Example inputs of each graph (random, at the model's sizes), in :data:`GRAPHS`' input order."""
    g = torch.Generator().manual_seed(seed)
    s, side, dim = model.image_size, model.sam_image_embedding_size, model.hidden_dim
    feats = torch.randn(1, dim, side, side, generator=g)
    high_res = (torch.randn(1, dim // 8, 4 * side, 4 * side, generator=g),
                torch.randn(1, dim // 4, 2 * side, 2 * side, generator=g))
    coords = torch.rand(1, num_points, 2, generator=g) * s
    labels = torch.tensor([[1.0, 0.0, 2.0, 3.0, -1.0][i % 5] for i in range(num_points)]).view(1, -1)
    mask_input = torch.randn(1, 1, 4 * side, 4 * side, generator=g) * 4
    return {
        "image_encoder": (torch.randn(1, 3, s, s, generator=g),),
        "prompt_decoder": (feats, *high_res, coords, labels, mask_input, torch.ones(1)),
        "memory_encoder": (feats, mask_input * 3, torch.zeros(1)),
        "memory_attention": (feats, *_memory_bank_example(model, num_memory_slots, num_obj_ptr_slots, g)),
    }


def _check_graph(name: str, module: nn.Module, data: bytes, examples: Sequence[Sequence[Tensor]], rtol: float,
                 report: ParityReport) -> None:  # fmt: skip
    """Run the graph in ONNX Runtime on each example and compare with the module in PyTorch."""
    sess = make_session(data, threads=2, level="basic")
    inputs, outputs = GRAPHS[name]
    for i, example in enumerate(examples):
        with torch.no_grad():
            ref = module(*example)
        ref = [ref] if isinstance(ref, Tensor) else list(ref)
        got = sess.run(None, {n: t.numpy() for n, t in zip(inputs, example)})
        compare_outputs([torch.from_numpy(o) for o in got], ref, rtol, f"{name}, example {i}", outputs, report)


def _graph_modules(model: EdgeTAM) -> dict[str, nn.Module]:
    return {
        "image_encoder": ImageEncoderGraph(model),
        "prompt_decoder": PromptDecoderGraph(model),
        "memory_encoder": MemoryEncoderGraph(model),
        "memory_attention": MemoryAttentionGraph(model),
    }


def _check_examples(model: EdgeTAM, name: str, slots: int, ptr_slots: int) -> list[tuple[Tensor, ...]]:
    """The exported example, then others that exercise the dynamic axes and the flags."""
    first = graph_examples(model, slots, ptr_slots, seed=0)[name]
    if name == "image_encoder":
        return [first]
    other = list(graph_examples(model, slots, ptr_slots, seed=1, num_points=1)[name])
    if name == "prompt_decoder":
        other[-1] = torch.zeros(1)  # no mask input
    elif name == "memory_encoder":
        other[1], other[2] = other[1][..., ::4, ::4].contiguous(), torch.ones(1)  # 64x64 logits, binarized
    elif name == "memory_attention":
        other[4] = torch.arange(slots) < 1  # only the conditioning frame
        other[6] = torch.arange(ptr_slots) < 1
    return [first, tuple(other)]


def _value_infos(proto_values) -> list[dict[str, Any]]:
    """Name, shape (ints, or names of symbolic axes) and NumPy dtype name of graph inputs or outputs."""
    from onnx.helper import tensor_dtype_to_np_dtype

    infos = []
    for v in proto_values:
        t = v.type.tensor_type
        shape = [d.dim_param if d.dim_param else int(d.dim_value) for d in t.shape.dim]
        infos.append({"name": v.name, "shape": shape, "dtype": tensor_dtype_to_np_dtype(t.elem_type).name})
    return infos


def _manifest(model: EdgeTAM, fused: bool, opset: int, slots: int, ptr_slots: int) -> dict[str, Any]:
    from .image_predictor import IMAGENET_MEAN, IMAGENET_STD
    from .model import NO_OBJ_SCORE

    dec = model.sam_mask_decoder
    return {
        "format": "repvit-edgetam-onnx",
        "format_version": 1,
        "model": "edgetam",
        "fused": fused,
        "opset": opset,
        "image_size": model.image_size,
        "image_mean": list(IMAGENET_MEAN),
        "image_std": list(IMAGENET_STD),
        "memory_bank": {
            "num_memory_slots": slots, "tokens_per_memory": model.spatial_perceiver.num_latents
            + model.spatial_perceiver.num_latents_2d, "mem_dim": model.mem_dim,
            "num_obj_ptr_slots": ptr_slots, "obj_ptr_dim": model.hidden_dim, "num_maskmem": model.num_maskmem,
            "max_obj_ptrs_in_encoder": model.max_obj_ptrs_in_encoder,
        },
        "mask_decoder": {
            "num_mask_tokens": dec.num_mask_tokens, "multimask_min_pt_num": model.multimask_min_pt_num,
            "multimask_max_pt_num": model.multimask_max_pt_num,
            "dynamic_multimask_via_stability": dec.dynamic_multimask_via_stability,
            "stability_delta": dec.dynamic_multimask_stability_delta,
            "stability_thresh": dec.dynamic_multimask_stability_thresh, "no_obj_score": NO_OBJ_SCORE,
        },
        "config": model.config.to_dict(),
        "graphs": {},
    }


def export_edgetam_onnx(
    model: EdgeTAM,
    output_dir: str | os.PathLike,
    *,
    fused: bool = True,
    num_memory_slots: int | None = None,
    num_obj_ptr_slots: int | None = None,
    opset: int = OPSET,
    check: bool = True,
    rtol: float = 1e-4,
) -> dict[str, Any]:
    """Write EdgeTAM's four ONNX graphs and ``manifest.json`` to ``output_dir`` (see the module docstring).

    Args:
        model: the EdgeTAM model (left unchanged; a copy is fused and exported).
        output_dir: the folder to write (created if missing); files are written atomically.
        fused: export the re-parameterized trunk (outputs equal within float rounding, faster).
        num_memory_slots: memories in the attention's bank (default ``num_maskmem``, 7: one conditioning frame and
            six recent frames; more conditioning frames need more slots).
        num_obj_ptr_slots: object pointers in the bank (default ``max_obj_ptrs_in_encoder``, 16).
        opset: the ONNX opset.
        check: run every graph in ONNX Runtime and compare with PyTorch on random inputs (two per graph with
            dynamic axes or flags), raising :class:`repvit.deploy.parity.ParityError` above ``rtol`` (relative
            to each output's largest magnitude).
        rtol: the parity tolerance.

    Returns:
        The manifest (also in ``output_dir/manifest.json``) plus ``parity`` (the worst deviations) when checked.
    """
    if not isinstance(model, EdgeTAM):
        raise TypeError(f"export_edgetam_onnx needs an EdgeTAM model, got {type(model).__name__}.")
    slots = model.num_maskmem if num_memory_slots is None else int(num_memory_slots)
    ptr_slots = model.max_obj_ptrs_in_encoder if num_obj_ptr_slots is None else int(num_obj_ptr_slots)
    if slots < 1 or ptr_slots < 1:
        raise ValueError(f"the memory bank needs at least one slot of each kind, got {slots} and {ptr_slots}.")
    model = copy.deepcopy(model).float().cpu().eval()
    if fused and not is_fused_edgetam(model):
        fuse_edgetam(model)
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = _manifest(model, fused, opset, slots, ptr_slots)
    report = ParityReport()
    onnx = _require_onnx(check)
    examples = graph_examples(model, slots, ptr_slots)
    for name, module in _graph_modules(model).items():
        inputs, outputs = GRAPHS[name]
        data = export_onnx_bytes(module, examples[name], dynamic_batch=False, opset=opset, input_names=inputs,
                                 output_names=outputs, dynamic_axes=_DYNAMIC_AXES.get(name))
        data = add_metadata(data, {"model": "edgetam", "graph": name, "fused": fused})
        file = f"{name}.onnx"
        atomic_write(out_dir / file, lambda tmp, data=data: Path(tmp).write_bytes(data))
        graph = onnx.load_from_string(data).graph
        manifest["graphs"][name] = {"file": file, "inputs": _value_infos(graph.input),
                                    "outputs": _value_infos(graph.output)}
        if check:
            _check_graph(name, module, data, _check_examples(model, name, slots, ptr_slots), rtol, report)
    text = json.dumps(manifest, indent=2)
    atomic_write(out_dir / MANIFEST_NAME, lambda tmp: Path(tmp).write_text(text))
    return {**manifest, "parity": report.to_dict()} if check else manifest


def _require_onnx(check: bool):
    from repvit.runtime import require

    if check:
        require("onnxruntime", "checking EdgeTAM's ONNX graphs")
    return require("onnx", "EdgeTAM's ONNX export")


def export_edgetam_image_encoder_coreml(
    model: EdgeTAM, path: str | os.PathLike, *, fused: bool = True
) -> dict[str, Any]:
    """Write the image encoder graph (:class:`ImageEncoderGraph`) as a Core ML ML program (``.mlpackage``, float16
    compute): tensor input ``input`` ``(1, 3, S, S)`` ImageNet-normalized, outputs as in ONNX. Returns its spec
    summary (Core ML runs only on Apple platforms; on Linux the package is checked by its spec)."""
    from repvit.deploy.coreml import convert_coreml, coreml_spec_summary, save_mlpackage

    if not isinstance(model, EdgeTAM):
        raise TypeError(f"export_edgetam_image_encoder_coreml needs an EdgeTAM model, got {type(model).__name__}.")
    model = copy.deepcopy(model).float().cpu().eval()
    if fused and not is_fused_edgetam(model):
        fuse_edgetam(model)
    s = model.image_size
    with torch.no_grad():
        traced = torch.jit.trace(ImageEncoderGraph(model).eval(), torch.randn(1, 3, s, s), check_trace=False)
    outputs = list(GRAPHS["image_encoder"][1])
    meta = {"model": "edgetam", "graph": "image_encoder", "img_size": str(s), "fused": str(fused)}
    mlmodel = convert_coreml(traced, (s, s), outputs, meta, image_input=False,
                             description="EdgeTAM image encoder (RepViT trunk + FPN neck), exported by repvit")
    mlmodel.input_description["input"] = "RGB image resized to the model's size, ImageNet-normalized"
    save_mlpackage(mlmodel, path)
    return {"path": str(path), "spec": coreml_spec_summary(path)}
