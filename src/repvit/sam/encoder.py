"""The RepViT-SAM image encoder: a RepViT trunk at output stride 16 followed by SAM's neck.

RepViT-SAM (Wang et al., https://arxiv.org/abs/2312.05760) replaces SAM's ViT-H image encoder with RepViT-M2.3
whose last downsampling runs at stride 1: the depthwise stride-2 conv of ``stages[3].downsample`` becomes a
stride-1 conv, so a 1024 x 1024 image gives 640 x 64 x 64 features. SAM's neck (1x1 conv, LayerNorm2d, 3x3 conv,
LayerNorm2d, all convs without bias) maps them to the 256 x 64 x 64 image embedding the mask decoder expects.

Any registered RepViT variant can be the trunk through :class:`RepViTSamConfig`; ``repvit_m2_3`` is the authors'
model. The trunk keeps our (timm) module names, so classifier checkpoints load into it and
:func:`repvit.fuse_model` re-parameterizes it.

EdgeSAM (Zhou et al., https://arxiv.org/abs/2312.06660) is the same encoder with a two-map fusion neck
(``neck="fusion"``): the trunk (legacy RepViT-M0.9, ``repvit_m1``) runs at its full stride 32; the stride-16 map (the
output of ``stages[3].downsample.pre_block``, the last block before the last downsampling) goes through a bias-free
1x1 conv to 256 channels (``fuse_stage2``), the stride-32 map through another (``fuse_stage3``) and a x2 bicubic
upsampling (``align_corners=False``); their sum enters SAM's neck. The variant ``edge_sam`` is that model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from repvit.models import create_model, fuse_model, get_model_entry
from repvit.models.config import ConfigDict
from repvit.runtime import require

__all__ = ["RepViTSamConfig", "SAM_VARIANTS", "EDGE_SAM_VARIANTS", "RepViTSamEncoder", "get_sam_config",
           "EMBED_STRIDE", "NECKS", "UPSAMPLE_MODES"]

EMBED_STRIDE = 16  # the image embedding is img_size / 16 on a side, as for SAM's ViTs
NECKS = ("single", "fusion")  # RepViT-SAM's one-map neck; EdgeSAM's stride-16 + stride-32 fusion
UPSAMPLE_MODES = ("bicubic", "bilinear")  # EdgeSAM trains with bicubic; its export scripts switch to bilinear


@dataclass(frozen=True)
class RepViTSamConfig(ConfigDict):
    """Architecture of a RepViT-SAM image encoder.

    Attributes:
        variant: the registered RepViT trunk (``repvit_m2_3`` for the authors' RepViT-SAM).
        img_size: the square input side the encoder is built for (SAM: 1024); a multiple of 16.
        embed_dim: channels of the image embedding (SAM's prompt/decoder width, 256).
        last_stride: stride of ``stages[3].downsample``'s depthwise conv (1 keeps the output at stride 16).
        neck: ``"single"`` (RepViT-SAM: SAM's neck on the last map) or ``"fusion"`` (EdgeSAM: the stride-16 and
            stride-32 maps, each through a bias-free 1x1 conv to ``embed_dim``, the latter upsampled x2, summed, then
            SAM's neck); ``"fusion"`` needs ``last_stride=2``.
        upsample_mode: the fusion neck's x2 upsampling, ``"bicubic"`` (EdgeSAM) or ``"bilinear"`` (its exports).
    """

    variant: str = "repvit_m2_3"
    img_size: int = 1024
    embed_dim: int = 256
    last_stride: int = 1
    neck: str = "single"
    upsample_mode: str = "bicubic"

    def __post_init__(self) -> None:
        entry = get_model_entry(self.variant)  # raises UnknownModelError with suggestions
        object.__setattr__(self, "variant", entry.name)
        if self.img_size <= 0 or self.img_size % EMBED_STRIDE:
            raise ValueError(f"img_size must be a positive multiple of {EMBED_STRIDE}, got {self.img_size}.")
        if self.embed_dim <= 0:
            raise ValueError(f"embed_dim must be positive, got {self.embed_dim}.")
        if self.last_stride not in (1, 2):
            raise ValueError(f"last_stride must be 1 (RepViT-SAM) or 2 (the classifier's), got {self.last_stride}.")
        if self.neck not in NECKS:
            raise ValueError(f"neck must be one of {NECKS}, got {self.neck!r}.")
        if self.upsample_mode not in UPSAMPLE_MODES:
            raise ValueError(f"upsample_mode must be one of {UPSAMPLE_MODES}, got {self.upsample_mode!r}.")
        if self.neck == "fusion" and self.last_stride != 2:
            raise ValueError("the fusion neck (EdgeSAM) taps the trunk at strides 16 and 32; it needs last_stride=2.")
        if self.neck == "fusion" and self.img_size % (2 * EMBED_STRIDE):
            raise ValueError(f"the fusion neck needs img_size a multiple of {2 * EMBED_STRIDE}, got {self.img_size}.")
        if getattr(entry.config, "num_stages", 4) != 4:
            raise ValueError(f"{entry.name} has {entry.config.num_stages} stages; RepViT-SAM needs a 4-stage trunk.")

    @property
    def embed_size(self) -> int:
        """Side of the image embedding (64 at 1024)."""
        if self.neck == "fusion":
            return self.img_size // EMBED_STRIDE
        return self.img_size // (EMBED_STRIDE * self.last_stride)



SAM_VARIANTS: dict[str, RepViTSamConfig] = {
    "repvit_sam_m2_3": RepViTSamConfig("repvit_m2_3"),  # the authors' RepViT-SAM
    "repvit_sam_m1_1": RepViTSamConfig("repvit_m1_1"),
    "repvit_sam_m0_9": RepViTSamConfig("repvit_m0_9"),  # a lighter encoder for phones / tests
}

# the fusion-neck (EdgeSAM) encoders; get_sam_config and build_repvit_sam(variant=...) accept these names too
EDGE_SAM_VARIANTS: dict[str, RepViTSamConfig] = {
    # EdgeSAM: legacy RepViT-M0.9 ("m1") at stride 32 with the fusion neck (the weights edge_sam and edge_sam_3x)
    "edge_sam": RepViTSamConfig("repvit_m1", last_stride=2, neck="fusion", upsample_mode="bicubic"),
}


def get_sam_config(variant: str | RepViTSamConfig | None = None, **overrides: Any) -> RepViTSamConfig:
    """A :class:`RepViTSamConfig` from a SAM variant (``repvit_sam_m0_9``, ``edge_sam``), a trunk name (``m0_9``,
    ``repvit_m2_3``) or a config; ``overrides`` replace fields (``img_size=256``)."""
    if variant is None:
        cfg = RepViTSamConfig()
    elif isinstance(variant, RepViTSamConfig):
        cfg = variant
    elif not isinstance(variant, str):
        raise TypeError(f"variant must be a name or a RepViTSamConfig, got {type(variant).__name__}.")
    else:
        key = variant.strip().lower().replace("-", "_").replace(".", "_")
        named = {**SAM_VARIANTS, **EDGE_SAM_VARIANTS}
        for candidate in (key, f"repvit_sam_{key}", f"repvit_sam_{key.removeprefix('repvit_')}"):
            if candidate in named:
                cfg = named[candidate]
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
    """RepViT trunk + SAM's neck: RepViT-SAM (last downsampling at stride 1, ``neck="single"``) or EdgeSAM (full
    stride 32, ``neck="fusion"``, see the module docstring).

    Has SAM's image-encoder interface: ``img_size`` and ``forward(x) -> (N, embed_dim, img_size/16, img_size/16)``
    for inputs that are already normalized and padded to ``img_size`` (``Sam.preprocess``).

    Args:
        cfg: the architecture; default RepViT-M2.3 at 1024 (the authors' RepViT-SAM).
        drop_path_rate: stochastic depth in the trunk (training).
    """

    def __init__(self, cfg: RepViTSamConfig | None = None, drop_path_rate: float = 0.0):
        super().__init__()
        require("segment_anything", "the RepViT-SAM encoder")
        self.cfg = cfg = cfg or RepViTSamConfig()
        self.img_size = cfg.img_size
        self.trunk = create_model(cfg.variant, features_only=True, out_indices=(3,), drop_path_rate=drop_path_rate)
        down = self.trunk.stages[3].downsample
        if not hasattr(down, "spatial_downsample"):
            raise ValueError(f"{cfg.variant}'s last stage has no downsampling layer to run at stride 1.")
        self._set_last_stride(cfg.last_stride)
        self.fusion = cfg.neck == "fusion"
        if self.fusion:  # EdgeSAM's names (fuse_stage3 is its op_list.0), so its checkpoints map one to one
            self.fuse_stage2 = nn.Conv2d(self.trunk.stage_info[2]["num_chs"], cfg.embed_dim, 1, bias=False)
            self.fuse_stage3 = nn.Conv2d(self.trunk_channels, cfg.embed_dim, 1, bias=False)
            self.upsample = nn.Upsample(scale_factor=2, mode=cfg.upsample_mode, align_corners=False)
        self.neck = _neck(cfg.embed_dim if self.fusion else self.trunk_channels, cfg.embed_dim)

    def _set_last_stride(self, stride: int) -> None:
        """Run the depthwise conv of ``stages[3].downsample`` at ``stride`` (fused: a Conv2d; unfused: ConvNorm.c)."""
        layer = self.trunk.stages[3].downsample.spatial_downsample
        conv = layer if isinstance(layer, nn.Conv2d) else layer.c
        conv.stride = (stride, stride)

    @property
    def trunk_channels(self) -> int:
        return self.trunk.feature_channels()[-1]

    def set_upsample_mode(self, mode: str) -> RepViTSamEncoder:
        """Switch the fusion neck's upsampling (``"bicubic"`` / ``"bilinear"``), e.g. for an export that lacks bicubic
        resizing; the config follows. Returns ``self``."""
        if not self.fusion:
            raise ValueError("only the fusion neck (EdgeSAM) has an upsampling mode.")
        self.cfg = dataclasses.replace(self.cfg, upsample_mode=mode)  # validates the mode
        self.upsample.mode = mode
        return self

    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """The trunk's last features: (N, C, H/16, W/16) for RepViT-SAM, (N, C, H/32, W/32) for EdgeSAM."""
        return self.trunk(x)[-1]

    def forward_taps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The fusion neck's inputs: the stride-16 map (output of ``stages[3].downsample.pre_block``) and the
        trunk's last (stride-32) map."""
        trunk = self.trunk
        x = trunk.stem(x)
        for stage in trunk.stages[:3]:
            x = stage(x)
        last = trunk.stages[3]
        ds = last.downsample
        mid = ds.pre_block(x)
        x = ds.channel_downsample(ds.spatial_downsample(mid))
        x = last.blocks(x + ds.drop_path(ds.ffn(x)))
        return mid, x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fusion:
            mid, last = self.forward_taps(x)
            return self.neck(self.fuse_stage2(mid) + self.upsample(self.fuse_stage3(last)))
        return self.neck(self.forward_trunk(x))

    @torch.no_grad()
    def fuse(self, inplace: bool = False) -> RepViTSamEncoder:
        """The deploy form: every conv+BN and RepVGGDW of the trunk folded into one conv (see
        :func:`repvit.fuse_model`); the necks have no BatchNorm and stay as they are."""
        return fuse_model(self, inplace=inplace)

    def load_trunk(self, checkpoint: Any, strict: bool = True) -> Any:
        """Load a RepViT classification checkpoint (any format :func:`repvit.models.load_checkpoint` reads) into the
        trunk; the head is dropped. Used to start distillation from ImageNet weights."""
        from repvit.models import load_checkpoint

        return load_checkpoint(self.trunk, checkpoint, strict=strict)
