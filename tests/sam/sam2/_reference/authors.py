"""The authors' EdgeTAM (and SAM 2.1) built inside the reference environment: offline, CPU, float32.

Imported only by the scripts in this folder, which run as subprocesses with ``PYTHONPATH`` pointing at the reference
folder (``make edgetam-ref``): ``sam2`` there is the PyPI packaging ``edgetam-dimos`` of the authors' code, and its
global Hydra initialisation happens on import, so it stays inside those subprocesses.

What is changed in the authors' code, at run time and never in their files:
- ``TimmBackbone`` calls ``timm.create_model(..., pretrained=True)`` and so downloads the trunk's ImageNet weights even
  when a checkpoint follows; :func:`offline_trunk` makes that call build the trunk with ``pretrained=False``.
- The video predictor stores each frame's memory features as bfloat16 and, on CUDA, uses them under bfloat16
  autocast; on the CPU (no autocast) a memory bank without a float32 object pointer to promote it reaches a float32
  linear layer and fails (a dtype error, e.g. in reverse propagation). :func:`bfloat16_rounded_memory` keeps the
  stored features rounded to bfloat16 but as float32 tensors, so all arithmetic is float32 (as in repvit).
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may use the network

import torch  # noqa: E402
from torch import nn  # noqa: E402

EDGETAM_CONFIG = "configs/edgetam.yaml"
SAM21_TINY_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"


def check_reference_sam2() -> None:
    """Raise unless ``sam2`` is the authors' EdgeTAM code (it has ``configs/edgetam.yaml``), not Meta's SAM 2."""
    import sam2

    path = os.path.join(sam2.__path__[0], "configs", "edgetam.yaml")
    if not os.path.isfile(path):
        raise RuntimeError(f"sam2 at {sam2.__path__[0]} is not edgetam-dimos (no configs/edgetam.yaml): "
                           "run make edgetam-ref")


def offline_trunk() -> None:
    """Make the authors' ``TimmBackbone`` build its timm trunk without fetching pretrained weights."""
    import sam2.modeling.backbones.timm as timm_backbone

    if getattr(timm_backbone.create_model, "_offline", False):
        return
    create_model = timm_backbone.create_model

    def create_model_offline(*args, **kwargs):
        kwargs["pretrained"] = False
        return create_model(*args, **kwargs)

    create_model_offline._offline = True
    timm_backbone.create_model = create_model_offline


def bfloat16_rounded_memory() -> None:
    """Store the video predictor's memory features rounded to bfloat16, as float32 tensors."""
    from sam2.sam2_video_predictor import SAM2VideoPredictor as Predictor

    if getattr(Predictor._run_memory_encoder, "_rounded", False):
        return
    run_frame, run_memory = Predictor._run_single_frame_inference, Predictor._run_memory_encoder

    def run_single_frame_inference(self, *args, **kwargs):
        out, masks = run_frame(self, *args, **kwargs)
        if out["maskmem_features"] is not None:
            out["maskmem_features"] = out["maskmem_features"].float()
        return out, masks

    def run_memory_encoder(self, *args, **kwargs):
        features, pos_enc = run_memory(self, *args, **kwargs)
        return features.float(), pos_enc

    run_memory_encoder._rounded = True
    Predictor._run_single_frame_inference = run_single_frame_inference
    Predictor._run_memory_encoder = run_memory_encoder


def build(config: str = EDGETAM_CONFIG, checkpoint: str | None = None, *, video: bool = False,
          fill_hole_area: int = 0) -> nn.Module:
    """The authors' model (``video``: their ``SAM2VideoPredictor``) on CPU in eval mode, float32, built offline.

    The builders' defaults are kept (dynamic multimask via stability; for video, masks from clicks binarized for the
    memory encoder); ``fill_hole_area`` replaces the video builder's 8 (0 turns hole filling off).
    """
    check_reference_sam2()
    offline_trunk()
    from sam2.build_sam import build_sam2, build_sam2_video_predictor

    if not video:
        return build_sam2(config, checkpoint, device="cpu")
    bfloat16_rounded_memory()
    stdout, sys.stdout = sys.stdout, sys.stderr  # the video builder prints its progress
    try:
        predictor = build_sam2_video_predictor(config, checkpoint, device="cpu")
    finally:
        sys.stdout = stdout
    predictor.fill_hole_area = fill_hole_area
    return predictor


_EMBEDDINGS = ("maskmem_tpos_enc", "no_mem_embed", "no_mem_pos_enc", "no_obj_ptr", "no_obj_embed_spatial")


def _normal_(t: torch.Tensor, g: torch.Generator, std: float, mean: float = 0.0) -> None:
    t.copy_(torch.randn(t.shape, generator=g) * std + mean)


def _scale_attention(model: nn.Module, g: torch.Generator, prefix: str, gain: float) -> None:
    """Redraw the query and key projections under ``prefix`` with ``gain`` times their default spread."""
    for name, p in model.named_parameters():
        if name.startswith(prefix) and p.dim() == 2 and any(k in name for k in ("q_proj", "k_proj", "to_q", "to_kv")):
            _normal_(p, g, gain / p.shape[1] ** 0.5)


def _object_present(model: nn.Module, g: torch.Generator) -> None:
    """Object scores of a few units instead of 0 +- 0.02: the clicked object counts as present on every frame."""
    head = getattr(model.sam_mask_decoder, "pred_obj_score_head", None)
    if head is None:
        return
    last = head.layers[-1] if hasattr(head, "layers") else head
    _normal_(last.weight, g, 10.0 / last.weight.shape[1] ** 0.5)
    last.bias.fill_(1.0)


def center_mask_logits(model: nn.Module, image, point) -> nn.Module:
    """Shift each mask token's hypernetwork output so that its mask logits average 0 on ``image`` clicked at ``point``.

    At random initialisation every mask is almost all background or all foreground (a constant offset dominates the
    logits), so the memory encoder would only ever see empty masks and a wrong mask path could not show. The shift
    (in the last bias of each hypernetwork MLP) removes the offset along the mean upscaled embedding of this image.
    """
    import numpy as np
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    decoder = model.sam_mask_decoder
    seen = {}
    hooks = [decoder.output_upscaling[-1].register_forward_hook(lambda m, i, o: seen.update(embed=o))]
    for k, mlp in enumerate(decoder.output_hypernetworks_mlps):
        hooks.append(mlp.register_forward_hook(lambda m, i, o, k=k: seen.update({k: o})))
    predictor = SAM2ImagePredictor(model)
    predictor.set_image(image)
    predictor.predict(point_coords=np.asarray([point], np.float32), point_labels=np.asarray([1]))
    for h in hooks:
        h.remove()
    mean = seen["embed"][0].mean(dim=(1, 2))
    with torch.no_grad():
        for k, mlp in enumerate(decoder.output_hypernetworks_mlps):
            mlp.layers[-1].bias -= (seen[k][0] @ mean) / (mean @ mean) * mean
    return model


def randomize(model: nn.Module, seed: int) -> nn.Module:
    """Perturb the authors' random initialisation so that a wrong part of a re-implementation shows in the outputs.

    At the default initialisation the fuser's layer scale is 1e-6, the memory attention and the perceiver attend
    almost uniformly, the temporal encodings are ~0.02 and BatchNorm has identity statistics: a wrong fuser, RoPE,
    perceiver window or memory order barely changes the masks. Here: BatchNorm and LayerNorm get random statistics
    and affine parameters, the fuser's layer scale ~ N(0, 0.5), the query/key projections of the memory attention and
    the perceiver are drawn with a larger spread (peaked attention), the perceiver's latents and the learned
    embeddings (memory temporal encodings, no-memory and no-object embeddings) ~ N(0, 0.5), and the object score head
    says "present". :func:`center_mask_logits` then gives the masks both signs.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                _normal_(m.running_mean, g, 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                _normal_(m.weight, g, 0.5, 1.0)
                _normal_(m.bias, g, 0.3)
            elif isinstance(m, nn.LayerNorm) or type(m).__name__ == "LayerNorm2d":
                _normal_(m.weight, g, 0.2, 1.0)
                _normal_(m.bias, g, 0.2)
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "gamma":
                _normal_(p, g, 0.5)
            elif leaf in ("latents", "latents_2d") or name in _EMBEDDINGS:
                _normal_(p, g, 0.5)
        _scale_attention(model, g, "memory_attention.", 4.0)
        _scale_attention(model, g, "spatial_perceiver.", 4.0)
        _object_present(model, g)
    return model
