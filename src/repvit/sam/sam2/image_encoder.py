"""EdgeTAM's image encoder: the RepViT trunk (repvit's ``repvit_m1``, legacy M0.9) and SAM 2's FPN neck.

The trunk's modules are those of repvit's ``features_only`` model, held under timm's feature-model names
(``body.stem``, ``body.stages_0`` ... ``body.stages_3``) so the authors' ``image_encoder.trunk.body.*`` keys load
as they are.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from repvit.models import create_model

from .position_encoding import PositionEmbeddingSine

__all__ = ["StageList", "RepViTTrunk", "FpnNeck", "ImageEncoder"]


class StageList(nn.Module):
    """A stem and its stages as children ``stem``, ``stages_0`` ... (timm's feature-list layout); returns every
    stage's output."""

    def __init__(self, stem: nn.Module, stages: list[nn.Module]):
        super().__init__()
        self.stem = stem
        self.num_stages = len(stages)
        for i, stage in enumerate(stages):
            self.add_module(f"stages_{i}", stage)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.stem(x)
        out = []
        for i in range(self.num_stages):
            x = getattr(self, f"stages_{i}")(x)
            out.append(x)
        return out


class RepViTTrunk(nn.Module):
    """repvit's RepViT feature model as EdgeTAM's trunk: four maps at strides 4, 8, 16, 32.

    ``channel_list`` is from the lowest resolution up, as SAM 2's neck expects.
    """

    def __init__(self, model_name: str = "repvit_m1"):
        super().__init__()
        features = create_model(model_name, features_only=True, out_indices=(0, 1, 2, 3))
        self.body = StageList(features.stem, list(features.stages))
        self.channel_list = list(features.feature_info.channels())[::-1]

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.body(x)


class FpnNeck(nn.Module):
    """SAM 2's FPN: a 1x1 conv per level to ``d_model``; nearest x2 top-down sums only into ``fpn_top_down_levels``
    (levels counted from the highest resolution); a sine encoding per level."""

    def __init__(
        self, d_model: int, backbone_channel_list: list[int], fpn_top_down_levels: tuple[int, ...] = (2, 3)
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.backbone_channel_list = list(backbone_channel_list)
        self.position_encoding = PositionEmbeddingSine(d_model)
        self.convs = nn.ModuleList()
        for dim in backbone_channel_list:
            level = nn.Sequential()
            level.add_module("conv", nn.Conv2d(dim, d_model, kernel_size=1))
            self.convs.append(level)
        self.fpn_top_down_levels = list(fpn_top_down_levels)

    def forward(self, xs: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        n = len(self.convs) - 1
        if len(xs) != n + 1:
            raise ValueError(f"the neck takes {n + 1} feature maps, got {len(xs)}.")
        out: list[Tensor] = [xs[0]] * (n + 1)
        pos: list[Tensor] = [xs[0]] * (n + 1)
        prev = None
        for i in range(n, -1, -1):
            lateral = self.convs[n - i](xs[i])
            if i in self.fpn_top_down_levels and prev is not None:
                prev = lateral + F.interpolate(prev, scale_factor=2.0, mode="nearest")
            else:
                prev = lateral
            out[i] = prev
            pos[i] = self.position_encoding(prev)
        return out, pos


class ImageEncoder(nn.Module):
    """Trunk + neck; drops the ``scalp`` lowest-resolution levels. Returns SAM 2's backbone dict."""

    def __init__(self, trunk: RepViTTrunk, neck: FpnNeck, scalp: int = 1):
        super().__init__()
        if trunk.channel_list != neck.backbone_channel_list:
            raise ValueError(f"trunk channels {trunk.channel_list} differ from neck's {neck.backbone_channel_list}.")
        self.trunk = trunk
        self.neck = neck
        self.scalp = scalp

    def forward(self, sample: Tensor) -> dict[str, object]:
        features, pos = self.neck(self.trunk(sample))
        if self.scalp > 0:
            features, pos = features[: -self.scalp], pos[: -self.scalp]
        return {"vision_features": features[-1], "vision_pos_enc": pos, "backbone_fpn": features}
