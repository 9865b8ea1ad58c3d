"""The RepViT-SAM image encoder: a RepViT trunk at output stride 16 followed by SAM's neck.

RepViT-SAM (Wang et al., https://arxiv.org/abs/2312.05760) replaces SAM's ViT-H image encoder with RepViT-M2.3
whose last downsampling runs at stride 1: the depthwise stride-2 conv of ``stages[3].downsample`` becomes a
stride-1 conv, so a 1024 x 1024 image gives 640 x 64 x 64 features. SAM's neck (1x1 conv, LayerNorm2d, 3x3 conv,
LayerNorm2d, all convs without bias) maps them to the 256 x 64 x 64 image embedding the mask decoder expects.

Any registered RepViT variant can be the trunk through :class:`RepViTSamConfig`; ``repvit_m2_3`` is the authors'
model. The trunk keeps our (timm) module names, so classifier checkpoints load into it and
:func:`repvit.fuse_model` re-parameterizes it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from repvit.models import create_model, fuse_model, get_model_entry

from ._deps import require_sam

__all__ = ["RepViTSamConfig", "SAM_VARIANTS", "RepViTSamEncoder", "get_sam_config", "EMBED_STRIDE"]

EMBED_STRIDE = 16  # the image embedding is img_size / 16 on a side, as for SAM's ViTs


@dataclass(frozen=True)
class RepViTSamConfig:
    """Architecture of a RepViT-SAM image encoder.

    Attributes:
        variant: the registered RepViT trunk (``repvit_m2_3`` for the authors' RepViT-SAM).
        img_size: the square input side the encoder is built for (SAM: 1024); a multiple of 16.
        embed_dim: channels of the image embedding (SAM's prompt/decoder width, 256).
        last_stride: stride of ``stages[3].downsample``'s depthwise conv (1 keeps the output at stride 16).
    """

    variant: str = "repvit_m2_3"
    img_size: int = 1024
    embed_dim: int = 256
    last_stride: int = 1

    def __post_init__(self) -> None:
        entry = get_model_entry(self.variant)  # raises UnknownModelError with suggestions
        object.__setattr__(self, "variant", entry.name)
        if self.img_size <= 0 or self.img_size % EMBED_STRIDE:
            raise ValueError(f"img_size must be a positive multiple of {EMBED_STRIDE}, got {self.img_size}.")
        if self.embed_dim <= 0:
            raise ValueError(f"embed_dim must be positive, got {self.embed_dim}.")
        if self.last_stride not in (1, 2):
            raise ValueError(f"last_stride must be 1 (RepViT-SAM) or 2 (the classifier's), got {self.last_stride}.")
        if getattr(entry.config, "num_stages", 4) != 4:
            raise ValueError(f"{entry.name} has {entry.config.num_stages} stages; RepViT-SAM needs a 4-stage trunk.")

    @property
    def embed_size(self) -> int:
        """Side of the image embedding (64 at 1024)."""
        return self.img_size // (EMBED_STRIDE * self.last_stride)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RepViTSamConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown RepViT-SAM config keys {sorted(unknown)}; expected a subset of {sorted(names)}.")
        return cls(**d)


SAM_VARIANTS: dict[str, RepViTSamConfig] = {
    "repvit_sam_m2_3": RepViTSamConfig("repvit_m2_3"),  # the authors' RepViT-SAM
    "repvit_sam_m1_1": RepViTSamConfig("repvit_m1_1"),
    "repvit_sam_m0_9": RepViTSamConfig("repvit_m0_9"),  # a lighter encoder for phones / tests
}


def get_sam_config(variant: str | RepViTSamConfig | None = None, **overrides: Any) -> RepViTSamConfig:
    """A :class:`RepViTSamConfig` from a SAM variant (``repvit_sam_m0_9``), a trunk name (``m0_9``,
    ``repvit_m2_3``) or a config; ``overrides`` replace fields (``img_size=256``)."""
    if variant is None:
        cfg = RepViTSamConfig()
    elif isinstance(variant, RepViTSamConfig):
        cfg = variant
    elif not isinstance(variant, str):
        raise TypeError(f"variant must be a name or a RepViTSamConfig, got {type(variant).__name__}.")
    else:
        key = variant.strip().lower().replace("-", "_").replace(".", "_")
        for candidate in (key, f"repvit_sam_{key}", f"repvit_sam_{key.removeprefix('repvit_')}"):
            if candidate in SAM_VARIANTS:
                cfg = SAM_VARIANTS[candidate]
                break
        else:
            cfg = RepViTSamConfig(key.replace("repvit_sam_", "repvit_"))
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(cfg, **overrides) if overrides else cfg


def _neck(in_chs: int, out_chs: int) -> nn.Sequential:
    """SAM's neck (the ViT encoders' ``neck``): conv 1x1, LayerNorm2d, conv 3x3, LayerNorm2d, no conv bias."""
    from segment_anything.modeling.common import LayerNorm2d

    return nn.Sequential(
        nn.Conv2d(in_chs, out_chs, 1, bias=False),
        LayerNorm2d(out_chs),
        nn.Conv2d(out_chs, out_chs, 3, padding=1, bias=False),
        LayerNorm2d(out_chs),
    )


class RepViTSamEncoder(nn.Module):
    """RepViT trunk (stages 0-3, last downsampling at stride 1) + SAM's neck.

    Has SAM's image-encoder interface: ``img_size`` and ``forward(x) -> (N, embed_dim, img_size/16, img_size/16)``
    for inputs that are already normalized and padded to ``img_size`` (``Sam.preprocess``).

    Args:
        cfg: the architecture; default RepViT-M2.3 at 1024 (the authors' RepViT-SAM).
        drop_path_rate: stochastic depth in the trunk (training).
    """

    def __init__(self, cfg: RepViTSamConfig | None = None, drop_path_rate: float = 0.0):
        super().__init__()
        require_sam("the RepViT-SAM encoder")
        self.cfg = cfg = cfg or RepViTSamConfig()
        self.img_size = cfg.img_size
        self.trunk = create_model(cfg.variant, features_only=True, out_indices=(3,), drop_path_rate=drop_path_rate)
        down = self.trunk.stages[3].downsample
        if not hasattr(down, "spatial_downsample"):
            raise ValueError(f"{cfg.variant}'s last stage has no downsampling layer to run at stride 1.")
        self._set_last_stride(cfg.last_stride)
        self.neck = _neck(self.trunk.feature_channels()[-1], cfg.embed_dim)

    def _set_last_stride(self, stride: int) -> None:
        """Run the depthwise conv of ``stages[3].downsample`` at ``stride`` (fused: a Conv2d; unfused: ConvNorm.c)."""
        layer = self.trunk.stages[3].downsample.spatial_downsample
        conv = layer if isinstance(layer, nn.Conv2d) else layer.c
        conv.stride = (stride, stride)

    @property
    def trunk_channels(self) -> int:
        return self.trunk.feature_channels()[-1]

    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """The trunk's stride-16 features (N, C, H/16, W/16)."""
        return self.trunk(x)[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neck(self.forward_trunk(x))

    @torch.no_grad()
    def fuse(self, inplace: bool = False) -> RepViTSamEncoder:
        """The deploy form: every conv+BN and RepVGGDW of the trunk folded into one conv (see
        :func:`repvit.fuse_model`); the neck has no BatchNorm and stays as it is."""
        return fuse_model(self, inplace=inplace)

    def load_trunk(self, checkpoint: Any, strict: bool = True) -> Any:
        """Load a RepViT classification checkpoint (any format :func:`repvit.models.load_checkpoint` reads) into the
        trunk; the head is dropped. Used to start distillation from ImageNet weights."""
        from repvit.models import load_checkpoint

        return load_checkpoint(self.trunk, checkpoint, strict=strict)
