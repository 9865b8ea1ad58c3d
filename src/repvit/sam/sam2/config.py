"""EdgeTAM's configuration: the values of the authors' ``configs/edgetam.yaml`` plus the post-processing switches
their builders turn on, as one frozen dataclass."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = ["EdgeTamConfig"]


@dataclass(frozen=True)
class EdgeTamConfig:
    """Architecture and tracking settings of EdgeTAM (defaults: the published model).

    Attributes:
        trunk: repvit model name of the image trunk.
        image_size: square input side in pixels.
        backbone_stride: stride of the image embedding.
        hidden_dim: width of the neck, prompt encoder, mask decoder and memory attention.
        mem_dim: width of the memories.
        num_maskmem: memories attended to (1 conditioning frame + ``num_maskmem - 1`` recent frames).
        max_obj_ptrs_in_encoder: object pointers attended to.
        num_latents: global perceiver latents per memory.
        num_latents_2d: windowed perceiver latents per memory (a square number).
        sigmoid_scale_for_mem_enc: scale of the mask probabilities fed to the memory encoder.
        sigmoid_bias_for_mem_enc: bias of the mask probabilities fed to the memory encoder.
        binarize_mask_from_pts_for_mem_enc: encode clicked frames' masks as 0/1 (the video predictor turns it on).
        max_cond_frames_in_attn: conditioning frames attended to (-1: all).
        memory_temporal_stride_for_eval: stride between the recent memories (1: consecutive frames).
        non_overlap_masks_for_mem_enc: keep only the highest-scoring object per pixel before encoding memories.
        dynamic_multimask_via_stability: fall back to the best multimask output when the single mask is unstable.
    """

    trunk: str = "repvit_m1"
    image_size: int = 1024
    backbone_stride: int = 16
    hidden_dim: int = 256
    mem_dim: int = 64
    num_maskmem: int = 7
    max_obj_ptrs_in_encoder: int = 16
    num_latents: int = 256
    num_latents_2d: int = 256
    sigmoid_scale_for_mem_enc: float = 20.0
    sigmoid_bias_for_mem_enc: float = -10.0
    binarize_mask_from_pts_for_mem_enc: bool = False
    max_cond_frames_in_attn: int = -1
    memory_temporal_stride_for_eval: int = 1
    non_overlap_masks_for_mem_enc: bool = False
    dynamic_multimask_via_stability: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EdgeTamConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown EdgeTAM config keys {unknown}; known: {sorted(known)}.")
        return cls(**data)
