"""EdgeTAM (Zhou et al., CVPR 2025, "EdgeTAM: On-Device Track Anything Model"): SAM 2 with a RepViT image trunk and
a 2D spatial perceiver that compresses each frame's memory to 512 tokens.

:class:`EdgeTAM` has SAM 2's submodule and parameter names (the authors' ``edgetam.pt`` loads strictly) and
SAM2Base's tracking methods with their names, arguments and outputs (``forward_image``,
``_prepare_backbone_features``, ``track_step``, ...), which the image and video predictors call. Features flow in
SAM 2's layout: per level, sequence-first ``(HW, B, C)`` tokens and their ``(H, W)`` sizes.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.init import trunc_normal_

from .common import MLP
from .config import EdgeTamConfig
from .image_encoder import FpnNeck, ImageEncoder, RepViTTrunk
from .mask_decoder import MaskDecoder
from .memory_attention import MemoryAttention
from .memory_bank import memory_frames, pointer_outputs
from .memory_encoder import MemoryEncoder
from .perceiver import PerceiverResampler
from .prompt_encoder import PromptEncoder
from .transformer import TwoWayTransformer

__all__ = ["EdgeTAM", "NO_OBJ_SCORE"]

# mask logit given to every pixel of an object predicted absent
NO_OBJ_SCORE = -1024.0


class EdgeTAM(nn.Module):
    """EdgeTAM: image encoder, SAM 2 prompt encoder and mask decoder, memory encoder, spatial perceiver and memory
    attention, with SAM 2's tracking steps.

    Args:
        config: architecture and tracking settings (defaults: the published model).
    """

    # EdgeTAM's fixed choices among SAM2Base's options (configs/edgetam.yaml)
    use_high_res_features_in_sam = True
    num_feature_levels = 3
    directly_add_no_mem_embed = True
    use_mask_input_as_output_without_sam = True
    multimask_output_in_sam = True
    multimask_min_pt_num = 0
    multimask_max_pt_num = 1
    multimask_output_for_tracking = True
    use_multimask_token_for_obj_ptr = True
    iou_prediction_use_sigmoid = True
    use_obj_ptrs_in_encoder = True
    add_tpos_enc_to_obj_ptrs = False
    only_obj_ptrs_in_the_past_for_eval = True
    pred_obj_scores = True
    pred_obj_scores_mlp = True
    fixed_no_obj_ptr = True
    soft_no_obj_ptr = False
    use_mlp_for_obj_ptr_proj = True

    def __init__(self, config: EdgeTamConfig | None = None):
        super().__init__()
        cfg = config or EdgeTamConfig()
        self.config = cfg
        self.image_size = cfg.image_size
        self.backbone_stride = cfg.backbone_stride
        self.hidden_dim = cfg.hidden_dim
        self.mem_dim = cfg.mem_dim
        self.num_maskmem = cfg.num_maskmem
        self.max_obj_ptrs_in_encoder = cfg.max_obj_ptrs_in_encoder
        self.sigmoid_scale_for_mem_enc = cfg.sigmoid_scale_for_mem_enc
        self.sigmoid_bias_for_mem_enc = cfg.sigmoid_bias_for_mem_enc
        self.binarize_mask_from_pts_for_mem_enc = cfg.binarize_mask_from_pts_for_mem_enc
        self.max_cond_frames_in_attn = cfg.max_cond_frames_in_attn
        self.memory_temporal_stride_for_eval = cfg.memory_temporal_stride_for_eval
        self.non_overlap_masks_for_mem_enc = cfg.non_overlap_masks_for_mem_enc
        self.sam_prompt_embed_dim = cfg.hidden_dim
        self.sam_image_embedding_size = cfg.image_size // cfg.backbone_stride
        self._build_memory(cfg)
        self._build_sam_heads(cfg)

    def _build_memory(self, cfg: EdgeTamConfig) -> None:
        trunk = RepViTTrunk(cfg.trunk)
        self.image_encoder = ImageEncoder(trunk, FpnNeck(cfg.hidden_dim, trunk.channel_list), scalp=1)
        self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)
        latent_side = math.isqrt(cfg.num_latents_2d)
        self.memory_attention = MemoryAttention(
            cfg.hidden_dim, num_layers=2, dim_feedforward=2048, kv_in_dim=cfg.mem_dim,
            memory_latent_sizes=(cfg.num_latents, latent_side),
        )
        self.memory_encoder = MemoryEncoder(out_dim=cfg.mem_dim, in_dim=cfg.hidden_dim)
        self.spatial_perceiver = PerceiverResampler(
            dim=cfg.mem_dim, depth=2, dim_head=64, heads=1, num_latents=cfg.num_latents,
            num_latents_2d=cfg.num_latents_2d,
        )
        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(cfg.num_maskmem, 1, 1, cfg.mem_dim))
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, cfg.hidden_dim))
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, cfg.hidden_dim))
        self.no_obj_ptr = nn.Parameter(torch.zeros(1, cfg.hidden_dim))
        for p in (self.maskmem_tpos_enc, self.no_mem_embed, self.no_mem_pos_enc, self.no_obj_ptr):
            trunc_normal_(p, std=0.02)

    def _build_sam_heads(self, cfg: EdgeTamConfig) -> None:
        dim, side = cfg.hidden_dim, self.sam_image_embedding_size
        self.sam_prompt_encoder = PromptEncoder(dim, (side, side), (cfg.image_size, cfg.image_size), mask_in_chans=16)
        self.sam_mask_decoder = MaskDecoder(
            transformer_dim=dim,
            transformer=TwoWayTransformer(depth=2, embedding_dim=dim, num_heads=8, mlp_dim=2048),
            dynamic_multimask_via_stability=cfg.dynamic_multimask_via_stability,
        )
        self.obj_ptr_proj = MLP(dim, dim, dim, 3)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError(
            "EdgeTAM has no single forward: use EdgeTamImagePredictor for images and the video predictor "
            "(build_edgetam_video_predictor) for videos, or forward_image / track_step directly."
        )

    # -- image features -------------------------------------------------------------------------------------------

    def forward_image(self, img_batch: Tensor) -> dict[str, Any]:
        """Encode normalized ``(B, 3, 1024, 1024)`` images: ``backbone_fpn`` (strides 4, 8, 16; the first two
        already projected by the decoder's ``conv_s0``/``conv_s1``), ``vision_pos_enc``, ``vision_features``."""
        backbone_out = self.image_encoder(img_batch)
        fpn = backbone_out["backbone_fpn"]
        fpn[0] = self.sam_mask_decoder.conv_s0(fpn[0])
        fpn[1] = self.sam_mask_decoder.conv_s1(fpn[1])
        return backbone_out

    def _prepare_backbone_features(
        self, backbone_out: dict[str, Any]
    ) -> tuple[dict[str, Any], list[Tensor], list[Tensor], list[tuple[int, int]]]:
        """Flatten the last ``num_feature_levels`` maps to ``(HW, B, C)``: (backbone_out, feats, pos, sizes)."""
        backbone_out = backbone_out.copy()
        if len(backbone_out["backbone_fpn"]) != len(backbone_out["vision_pos_enc"]):
            raise ValueError("backbone_fpn and vision_pos_enc must have one entry per level.")
        feature_maps = backbone_out["backbone_fpn"][-self.num_feature_levels :]
        pos_maps = backbone_out["vision_pos_enc"][-self.num_feature_levels :]
        feat_sizes = [(x.shape[-2], x.shape[-1]) for x in pos_maps]
        vision_feats = [x.flatten(2).permute(2, 0, 1) for x in feature_maps]
        vision_pos_embeds = [x.flatten(2).permute(2, 0, 1) for x in pos_maps]
        return backbone_out, vision_feats, vision_pos_embeds, feat_sizes

    # -- SAM heads ------------------------------------------------------------------------------------------------

    def _sam_prompts(self, b: int, device: torch.device, point_inputs: dict | None, mask_inputs: Tensor | None):
        if point_inputs is not None:
            coords, labels = point_inputs["point_coords"], point_inputs["point_labels"]
            if coords.size(0) != b or labels.size(0) != b:
                raise ValueError(f"point_inputs hold {coords.size(0)} prompts for {b} frames.")
        else:
            coords = torch.zeros(b, 1, 2, device=device)
            labels = -torch.ones(b, 1, dtype=torch.int32, device=device)
        mask_prompt = None
        if mask_inputs is not None:
            if mask_inputs.dim() != 4 or tuple(mask_inputs.shape[:2]) != (b, 1):
                raise ValueError(f"mask_inputs must be ({b}, 1, H, W), got {tuple(mask_inputs.shape)}.")
            mask_prompt = mask_inputs
            if tuple(mask_inputs.shape[-2:]) != self.sam_prompt_encoder.mask_input_size:
                mask_prompt = F.interpolate(
                    mask_inputs.float(), size=self.sam_prompt_encoder.mask_input_size, mode="bilinear",
                    align_corners=False, antialias=True,
                )
        return coords, labels, mask_prompt

    def _forward_sam_heads(
        self,
        backbone_features: Tensor,
        point_inputs: dict[str, Tensor] | None = None,
        mask_inputs: Tensor | None = None,
        high_res_features: list[Tensor] | None = None,
        multimask_output: bool = False,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Prompt encoder + mask decoder on ``(B, C, 64, 64)`` features, as SAM2Base's.

        Returns (low_res_multimasks, high_res_multimasks, ious, low_res_masks, high_res_masks, obj_ptr,
        object_score_logits); the single masks are the best of the multimasks by IoU estimate.
        """
        b = backbone_features.size(0)
        side = self.sam_image_embedding_size
        if tuple(backbone_features.shape[1:]) != (self.sam_prompt_embed_dim, side, side):
            raise ValueError(f"backbone_features must be (B, {self.sam_prompt_embed_dim}, {side}, {side}).")
        coords, labels, mask_prompt = self._sam_prompts(b, backbone_features.device, point_inputs, mask_inputs)
        sparse, dense = self.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=mask_prompt)
        low_res_multimasks, ious, sam_output_tokens, object_score_logits = self.sam_mask_decoder(
            image_embeddings=backbone_features,
            image_pe=self.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
            repeat_image=False,
            high_res_features=high_res_features,
        )
        is_obj_appearing = object_score_logits > 0
        low_res_multimasks = torch.where(is_obj_appearing[:, None, None], low_res_multimasks, NO_OBJ_SCORE).float()
        high_res_multimasks = F.interpolate(
            low_res_multimasks, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
        )
        sam_output_token = sam_output_tokens[:, 0]
        if multimask_output:
            best = torch.argmax(ious, dim=-1)
            batch = torch.arange(b, device=backbone_features.device)
            low_res_masks = low_res_multimasks[batch, best].unsqueeze(1)
            high_res_masks = high_res_multimasks[batch, best].unsqueeze(1)
            if sam_output_tokens.size(1) > 1:
                sam_output_token = sam_output_tokens[batch, best]
        else:
            low_res_masks, high_res_masks = low_res_multimasks, high_res_multimasks
        obj_ptr = self._object_pointer(self.obj_ptr_proj(sam_output_token), is_obj_appearing.float())
        return (low_res_multimasks, high_res_multimasks, ious, low_res_masks, high_res_masks, obj_ptr,
                object_score_logits)

    def _object_pointer(self, obj_ptr: Tensor, appearing: Tensor) -> Tensor:
        """The pointer where the object appears, the learned ``no_obj_ptr`` where it does not (``appearing`` 0/1)."""
        return appearing * obj_ptr + (1 - appearing) * self.no_obj_ptr

    def _use_mask_as_output(
        self, backbone_features: Tensor, high_res_features: list[Tensor] | None, mask_inputs: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Turn a binary mask input into mask logits (+10 inside, -10 outside) without the SAM heads; the object
        pointer still comes from the decoder, prompted with the downsampled mask. Same outputs as
        :meth:`_forward_sam_heads`."""
        out_scale, out_bias = 20.0, -10.0
        mask_float = mask_inputs.float()
        high_res_masks = mask_float * out_scale + out_bias
        low_res_masks = F.interpolate(
            high_res_masks, size=(high_res_masks.size(-2) // 4, high_res_masks.size(-1) // 4), mode="bilinear",
            align_corners=False, antialias=True,
        )
        ious = mask_inputs.new_ones(mask_inputs.size(0), 1).float()
        obj_ptr = self._forward_sam_heads(
            backbone_features, mask_inputs=self.mask_downsample(mask_float), high_res_features=high_res_features
        )[5]
        appearing = torch.any(mask_float.flatten(1) > 0.0, dim=1)[..., None].float()
        object_score_logits = out_scale * appearing + out_bias
        obj_ptr = self._object_pointer(obj_ptr, appearing)
        return low_res_masks, high_res_masks, ious, low_res_masks, high_res_masks, obj_ptr, object_score_logits

    # -- memory ---------------------------------------------------------------------------------------------------

    def _spatial_memory(self, t_pos_and_prevs: list[tuple[int, Any]], device: torch.device) -> tuple[list, list]:
        """Memory tokens and their encodings (spatial + temporal), each ``(N, B, mem_dim)``."""
        memories, encodings = [], []
        for t_pos, prev in t_pos_and_prevs:
            if prev is None:
                continue
            feats = prev["maskmem_features"].to(device, non_blocking=True)
            enc = prev["maskmem_pos_enc"][-1].to(device)
            feats = feats.transpose(0, 1) if feats.dim() == 3 else feats.flatten(2).permute(2, 0, 1)
            enc = enc.transpose(0, 1) if enc.dim() == 3 else enc.flatten(2).permute(2, 0, 1)
            memories.append(feats)
            encodings.append(enc + self.maskmem_tpos_enc[self.num_maskmem - t_pos - 1])
        return memories, encodings

    def _prepare_memory_conditioned_features(
        self,
        frame_idx: int,
        is_init_cond_frame: bool,
        current_vision_feats: list[Tensor],
        current_vision_pos_embeds: list[Tensor],
        feat_sizes: list[tuple[int, int]],
        output_dict: dict[str, dict[int, Any]],
        num_frames: int,
        track_in_reverse: bool = False,
    ) -> Tensor:
        """The current frame's top-level features ``(B, C, H, W)`` conditioned on the memory bank (on an initial
        conditioning frame: plus ``no_mem_embed``)."""
        x = current_vision_feats[-1]
        b, c = x.size(1), self.hidden_dim
        h, w = feat_sizes[-1]
        if self.num_maskmem == 0:
            return x.permute(1, 2, 0).view(b, c, h, w)
        if is_init_cond_frame:
            return (x + self.no_mem_embed).permute(1, 2, 0).view(b, c, h, w)
        t_pos_and_prevs, selected, unselected = memory_frames(
            frame_idx, output_dict, self.num_maskmem, self.max_cond_frames_in_attn,
            1 if self.training else self.memory_temporal_stride_for_eval, track_in_reverse,
        )
        memories, encodings = self._spatial_memory(t_pos_and_prevs, x.device)
        num_spatial_mem = len(memories)
        ptrs = pointer_outputs(
            frame_idx, selected, unselected, output_dict, num_frames, self.max_obj_ptrs_in_encoder,
            not self.training and self.only_obj_ptrs_in_the_past_for_eval, track_in_reverse,
        )
        num_obj_ptr_tokens = 0
        if ptrs:
            # each C-wide pointer becomes C // mem_dim tokens of width mem_dim, with a zero encoding
            obj_ptrs = torch.stack(ptrs, dim=0)
            split = c // self.mem_dim
            obj_ptrs = obj_ptrs.reshape(-1, b, split, self.mem_dim).permute(0, 2, 1, 3).flatten(0, 1)
            memories.append(obj_ptrs)
            encodings.append(obj_ptrs.new_zeros(obj_ptrs.shape))
            num_obj_ptr_tokens = obj_ptrs.shape[0]
        out = self.memory_attention(
            curr=current_vision_feats[-1],
            curr_pos=current_vision_pos_embeds[-1],
            memory=torch.cat(memories, dim=0),
            memory_pos=torch.cat(encodings, dim=0),
            num_obj_ptr_tokens=num_obj_ptr_tokens,
            num_spatial_mem=num_spatial_mem,
        )
        return out.permute(1, 2, 0).reshape(b, c, h, w)

    def _encode_new_memory(
        self,
        current_vision_feats: list[Tensor],
        feat_sizes: list[tuple[int, int]],
        pred_masks_high_res: Tensor,
        object_score_logits: Tensor,
        is_mask_from_pts: bool,
    ) -> tuple[Tensor, list[Tensor]]:
        """Encode the frame and its predicted mask logits ``(B, 1, 1024, 1024)`` into a memory: perceiver latents
        ``(B, 512, mem_dim)`` and ``[their encoding (B, 512, mem_dim)]``."""
        x = current_vision_feats[-1]
        b, c = x.size(1), self.hidden_dim
        h, w = feat_sizes[-1]
        pix_feat = x.permute(1, 2, 0).reshape(b, c, h, w)
        if self.non_overlap_masks_for_mem_enc and not self.training:
            pred_masks_high_res = self._apply_non_overlapping_constraints(pred_masks_high_res)
        if self.binarize_mask_from_pts_for_mem_enc and is_mask_from_pts and not self.training:
            mask_for_mem = (pred_masks_high_res > 0).float()
        else:
            mask_for_mem = torch.sigmoid(pred_masks_high_res)
        if self.sigmoid_scale_for_mem_enc != 1.0:
            mask_for_mem = mask_for_mem * self.sigmoid_scale_for_mem_enc
        if self.sigmoid_bias_for_mem_enc != 0.0:
            mask_for_mem = mask_for_mem + self.sigmoid_bias_for_mem_enc
        maskmem_out = self.memory_encoder(pix_feat, mask_for_mem, skip_mask_sigmoid=True)
        features, pos = self.spatial_perceiver(maskmem_out["vision_features"], maskmem_out["vision_pos_enc"][0])
        return features, [pos]

    # -- tracking -------------------------------------------------------------------------------------------------

    def track_step(
        self,
        frame_idx: int,
        is_init_cond_frame: bool,
        current_vision_feats: list[Tensor],
        current_vision_pos_embeds: list[Tensor],
        feat_sizes: list[tuple[int, int]],
        point_inputs: dict[str, Tensor] | None,
        mask_inputs: Tensor | None,
        output_dict: dict[str, dict[int, Any]],
        num_frames: int,
        track_in_reverse: bool = False,
        run_mem_encoder: bool = True,
        prev_sam_mask_logits: Tensor | None = None,
    ) -> dict[str, Any]:
        """Segment one frame from its prompts and the memory bank, and (``run_mem_encoder``) encode its memory.

        Returns SAM2Base's per-frame output: ``point_inputs``, ``mask_inputs``, ``pred_masks`` ``(B, 1, 256, 256)``,
        ``pred_masks_high_res`` ``(B, 1, 1024, 1024)``, ``obj_ptr`` ``(B, C)``, ``object_score_logits`` ``(B, 1)``
        (eval only), ``maskmem_features`` and ``maskmem_pos_enc`` (None without the memory encoder).
        """
        current_out: dict[str, Any] = {"point_inputs": point_inputs, "mask_inputs": mask_inputs}
        high_res_features = [
            x.permute(1, 2, 0).reshape(x.size(1), x.size(2), *s)
            for x, s in zip(current_vision_feats[:-1], feat_sizes[:-1])
        ]
        if mask_inputs is not None and self.use_mask_input_as_output_without_sam:
            pix_feat = current_vision_feats[-1].permute(1, 2, 0).reshape(-1, self.hidden_dim, *feat_sizes[-1])
            sam_outputs = self._use_mask_as_output(pix_feat, high_res_features, mask_inputs)
        else:
            pix_feat = self._prepare_memory_conditioned_features(
                frame_idx, is_init_cond_frame, current_vision_feats[-1:], current_vision_pos_embeds[-1:],
                feat_sizes[-1:], output_dict, num_frames, track_in_reverse,
            )
            if prev_sam_mask_logits is not None:
                if point_inputs is None or mask_inputs is not None:
                    raise ValueError("prev_sam_mask_logits go with point inputs and no mask input.")
                mask_inputs = prev_sam_mask_logits
            sam_outputs = self._forward_sam_heads(
                pix_feat, point_inputs, mask_inputs, high_res_features,
                multimask_output=self._use_multimask(is_init_cond_frame, point_inputs),
            )
        _, _, _, low_res_masks, high_res_masks, obj_ptr, object_score_logits = sam_outputs
        current_out["pred_masks"] = low_res_masks
        current_out["pred_masks_high_res"] = high_res_masks
        current_out["obj_ptr"] = obj_ptr
        if not self.training:
            current_out["object_score_logits"] = object_score_logits
        maskmem_features, maskmem_pos_enc = None, None
        if run_mem_encoder and self.num_maskmem > 0:
            maskmem_features, maskmem_pos_enc = self._encode_new_memory(
                current_vision_feats, feat_sizes, high_res_masks, object_score_logits, point_inputs is not None
            )
        current_out["maskmem_features"] = maskmem_features
        current_out["maskmem_pos_enc"] = maskmem_pos_enc
        return current_out

    def _use_multimask(self, is_init_cond_frame: bool, point_inputs: dict[str, Tensor] | None) -> bool:
        """Three masks for 0 or 1 click (EdgeTAM tracks with multimask output too)."""
        num_pts = 0 if point_inputs is None else point_inputs["point_labels"].size(1)
        return (
            self.multimask_output_in_sam
            and (is_init_cond_frame or self.multimask_output_for_tracking)
            and self.multimask_min_pt_num <= num_pts <= self.multimask_max_pt_num
        )

    def _apply_non_overlapping_constraints(self, pred_masks: Tensor) -> Tensor:
        """Keep each pixel only for the highest-scoring object (batch = objects); others are clamped to -10."""
        if pred_masks.size(0) == 1:
            return pred_masks
        max_obj_inds = torch.argmax(pred_masks, dim=0, keepdim=True)
        batch_obj_inds = torch.arange(pred_masks.size(0), device=pred_masks.device)[:, None, None, None]
        keep = max_obj_inds == batch_obj_inds
        return torch.where(keep, pred_masks, torch.clamp(pred_masks, max=-10.0))
