"""``EdgeTamImagePredictor``: SAM 2's image predictor API on EdgeTAM (embed an image once, then prompt it).

Preprocessing is SAM 2's: RGB scaled to ``[0, 1]``, resized (bilinear, antialiased) to 1024x1024 without keeping
the aspect ratio, normalized with ImageNet's mean and std. Prompts are in the original image's pixels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .model import EdgeTAM

__all__ = ["EdgeTamImagePredictor", "IMAGENET_MEAN", "IMAGENET_STD", "preprocess_image"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _as_rgb_array(image: Any) -> np.ndarray:
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL image
        image = np.asarray(image.convert("RGB"))
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a NumPy array (H, W, 3) or a PIL image, got {type(image).__name__}.")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image must be an RGB array of shape (H, W, 3), got shape {image.shape}.")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 with values 0..255, got {image.dtype}; convert it with "
                         "(image * 255).clip(0, 255).astype(np.uint8) if it is in [0, 1].")
    return image


def preprocess_image(image: Any, size: int = 1024, device: str | torch.device = "cpu") -> Tensor:
    """An RGB uint8 image (array ``(H, W, 3)`` or PIL) as EdgeTAM's normalized ``(1, 3, size, size)`` input."""
    x = torch.from_numpy(np.ascontiguousarray(_as_rgb_array(image))).to(device)
    x = x.permute(2, 0, 1).float().div(255.0)[None]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    return (x - mean) / std


class EdgeTamImagePredictor:
    """Click-to-mask on one image with EdgeTAM (SAM 2's ``SAM2ImagePredictor`` API).

    Args:
        model: an :class:`EdgeTAM` (see ``build_edgetam``).
        mask_threshold: logit above which a pixel is in the mask.
    """

    def __init__(self, model: EdgeTAM, mask_threshold: float = 0.0) -> None:
        if not isinstance(model, EdgeTAM):
            raise TypeError(f"EdgeTamImagePredictor needs an EdgeTAM model, got {type(model).__name__}.")
        self.model = model
        self.mask_threshold = mask_threshold
        self.reset_predictor()

    @property
    def device(self) -> torch.device:
        return self.model.device

    def reset_predictor(self) -> None:
        """Forget the image."""
        self._features: dict[str, Any] | None = None
        self._orig_hw: tuple[int, int] | None = None
        self._is_image_set = False

    @torch.no_grad()
    def set_image(self, image: Any) -> None:
        """Embed an RGB uint8 image (NumPy ``(H, W, 3)`` or PIL) for the following :meth:`predict` calls."""
        self.reset_predictor()
        image = _as_rgb_array(image)
        self._orig_hw = (image.shape[0], image.shape[1])
        x = preprocess_image(image, self.model.image_size, self.device)
        backbone_out = self.model.forward_image(x)
        _, vision_feats, _, feat_sizes = self.model._prepare_backbone_features(backbone_out)
        vision_feats[-1] = vision_feats[-1] + self.model.no_mem_embed
        feats = [f.permute(1, 2, 0).reshape(1, -1, *s) for f, s in zip(vision_feats, feat_sizes)]
        self._features = {"image_embed": feats[-1], "high_res_feats": feats[:-1]}
        self._is_image_set = True

    def get_image_embedding(self) -> Tensor:
        """The image embedding ``(1, 256, 64, 64)`` of the current image."""
        self._check_image()
        return self._features["image_embed"]

    def _check_image(self) -> None:
        if not self._is_image_set:
            raise RuntimeError("no image is set: call set_image(image) before predict().")

    def _prompts(self, point_coords, point_labels, box, mask_input, normalize_coords):
        h, w = self._orig_hw
        size = self.model.image_size
        scale = torch.tensor([size / w, size / h] if normalize_coords else [size, size], dtype=torch.float)
        coords = labels = boxes = masks = None
        if point_coords is not None:
            if point_labels is None:
                raise ValueError("point_labels must be given with point_coords (1 foreground, 0 background).")
            coords = torch.as_tensor(np.asarray(point_coords), dtype=torch.float)
            labels = torch.as_tensor(np.asarray(point_labels), dtype=torch.int)
            if coords.shape[-1] != 2 or coords.shape[:-1] != labels.shape:
                raise ValueError(f"point_coords must be (N, 2) with point_labels (N,), got {tuple(coords.shape)} "
                                 f"and {tuple(labels.shape)}.")
            coords = coords * scale
            if coords.dim() == 2:
                coords, labels = coords[None], labels[None]
        if box is not None:
            boxes = torch.as_tensor(np.asarray(box), dtype=torch.float)
            if boxes.shape[-1] != 4:
                raise ValueError(f"box must be x0, y0, x1, y1 (shape (4,) or (B, 4)), got shape {tuple(boxes.shape)}.")
            boxes = boxes.reshape(-1, 2, 2) * scale
        if mask_input is not None:
            masks = torch.as_tensor(np.asarray(mask_input), dtype=torch.float)
            if masks.dim() == 3:
                masks = masks[None]
            expected = self.model.sam_prompt_encoder.mask_input_size
            if masks.dim() != 4 or tuple(masks.shape[-2:]) != expected:
                raise ValueError(f"mask_input must be (1, {expected[0]}, {expected[1]}) low-resolution logits (the "
                                 f"third output of predict), got shape {tuple(masks.shape)}.")
        dev = self.device
        return tuple(t.to(dev) if t is not None else None for t in (coords, labels, boxes, masks))

    @torch.no_grad()
    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for prompts on the current image.

        Args:
            point_coords: ``(N, 2)`` points ``(x, y)`` in the image's pixels.
            point_labels: ``(N,)`` labels, 1 foreground and 0 background.
            box: ``(4,)`` box ``x0, y0, x1, y1`` in pixels.
            mask_input: ``(1, 256, 256)`` logits from a previous call (its third output).
            multimask_output: three masks (for ambiguous prompts such as one click) instead of one.
            return_logits: return logits instead of boolean masks.
            normalize_coords: coordinates are in the image's pixels (False: already normalized to ``[0, 1]``).

        Returns:
            ``masks`` ``(C, H, W)`` (bool, or float logits), ``iou_predictions`` ``(C,)`` and ``low_res_masks``
            ``(C, 256, 256)`` logits, with ``C`` 3 or 1.
        """
        self._check_image()
        coords, labels, boxes, masks = self._prompts(point_coords, point_labels, box, mask_input, normalize_coords)
        low_res, iou = self._predict(coords, labels, boxes, masks, multimask_output)
        out = F.interpolate(low_res, self._orig_hw, mode="bilinear", align_corners=False)
        low_res = torch.clamp(low_res, -32.0, 32.0)
        if not return_logits:
            out = out > self.mask_threshold
        return out.squeeze(0).cpu().numpy(), iou.squeeze(0).float().cpu().numpy(), low_res.squeeze(0).cpu().numpy()

    def _predict(self, coords, labels, boxes, masks, multimask_output: bool) -> tuple[Tensor, Tensor]:
        points = (coords, labels) if coords is not None else None
        if boxes is not None:
            box_labels = torch.tensor([[2, 3]], dtype=torch.int, device=boxes.device).repeat(boxes.size(0), 1)
            if points is not None:
                points = (torch.cat([boxes, points[0]], dim=1), torch.cat([box_labels, points[1]], dim=1))
            else:
                points = (boxes, box_labels)
        sam = self.model
        sparse, dense = sam.sam_prompt_encoder(points=points, boxes=None, masks=masks)
        batched = points is not None and points[0].shape[0] > 1
        low_res, iou, _, _ = sam.sam_mask_decoder(
            image_embeddings=self._features["image_embed"],
            image_pe=sam.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
            repeat_image=batched,
            high_res_features=self._features["high_res_feats"],
        )
        return low_res, iou
