"""``RoadmapNet``: builds any network of the roadmap design space.

Module names follow :class:`repvit.models.RepViT` (``stem``, ``stages.S.downsample``, ``stages.S.blocks.B``,
``head.head``), so where a roadmap network *is* a RepViT (the last step), a RepViT state dict loads into it
unchanged. The model contract is timm's: ``forward_features``, ``forward_head(pre_logits)``, ``reset_classifier``,
``set_grad_checkpointing``, ``feature_info``, ``fuse()``.
"""

# no `from __future__ import annotations`: torch.fx copies forward's annotation into traced code, where the
# string 'torch.Tensor' would stop TorchScript from compiling an FX-traced model
import torch
import torch.nn as nn

from repvit.models.layers import ConvNorm
from repvit.models.pretrained import init_pretrained_cfg
from repvit.models.repvit import RepViTClassifier, RepViTStem, StagedClassifier, check_backbone_args

from .blocks import MobileNetV3Classifier, MobileNetV3Stem, act_layer, build_block, build_downsample
from .config import RoadmapConfig, StageSpec

__all__ = ["RoadmapNet", "RoadmapStage"]


class RoadmapStage(nn.Module):
    """An optional RepViT downsampling layer followed by blocks (names as :class:`repvit.models.repvit.RepViTStage`)."""

    def __init__(self, spec: StageSpec, se_ratio: float, drop_path: list[float]):
        super().__init__()
        dpr = list(drop_path)
        if spec.downsample is not None:
            self.downsample = build_downsample(spec.downsample, se_ratio, (dpr[0], dpr[1]))
            dpr = dpr[2:]
        else:
            self.downsample = nn.Identity()
        self.blocks = nn.Sequential(*[build_block(b, se_ratio, dpr[i]) for i, b in enumerate(spec.blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


def _residual_units(spec: StageSpec) -> int:
    """Drop-path slots of a stage: two per downsampling layer (pre-block, FFN), one per block."""
    return (2 if spec.downsample is not None else 0) + len(spec.blocks)


class RoadmapNet(StagedClassifier):
    """A classifier from the MobileNetV3-L → RepViT design space.

    Args:
        cfg: the architecture.
        num_classes: classes of the head; 0 gives a model that returns pooled features.
        in_chans: input channels.
        distillation: add a second (distillation) head, DeiT style.
        drop_rate: dropout before the last Linear layer.
        drop_path_rate: stochastic depth, increasing linearly over the residual blocks.
        global_pool: ``"avg"``, or ``""`` for no pooling (with ``num_classes=0``).
    """

    def __init__(
        self,
        cfg: RoadmapConfig,
        num_classes: int = 1000,
        in_chans: int = 3,
        distillation: bool = False,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        global_pool: str = "avg",
    ):
        super().__init__()
        if not isinstance(cfg, RoadmapConfig):
            raise TypeError(f"RoadmapNet needs a RoadmapConfig, got {type(cfg).__name__}.")
        self._set_head_args(num_classes, distillation, global_pool)
        check_backbone_args(in_chans, drop_path_rate)
        self.cfg = cfg
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.grad_checkpointing = False

        if cfg.stem == "mbv3":
            self.stem = MobileNetV3Stem(in_chans, cfg.stem_chs, cfg.stem_act)
        else:
            self.stem = RepViTStem(in_chans, cfg.stem_chs, act_layer(cfg.stem_act))
        n = sum(_residual_units(s) for s in cfg.stages)
        rates = [drop_path_rate * i / max(n - 1, 1) for i in range(n)]
        stages, stride, i = [], cfg.stem_stride, 0
        self.feature_info = []
        for si, spec in enumerate(cfg.stages):
            k = _residual_units(spec)
            stages.append(RoadmapStage(spec, cfg.se_ratio, rates[i : i + k]))
            i += k
            stride *= spec.stride
            self.feature_info.append(dict(num_chs=spec.out_chs, reduction=stride, module=f"stages.{si}"))
        self.stages = nn.Sequential(*stages)

        last = cfg.num_features
        if cfg.classifier == "mbv3":
            self.final_conv = nn.Sequential(ConvNorm(last, cfg.head_chs[0], 1), act_layer(cfg.stem_act)())
            self.num_features = cfg.head_chs[0]
            self.head_drop = nn.Identity()  # MobileNetV3 drops out between its two Linear layers
        else:
            self.final_conv = nn.Identity()
            self.num_features = last
            self.head_drop = nn.Dropout(drop_rate)
        self.head_hidden_size = self.num_features
        self.head = self._make_head(num_classes, distillation)
        init_pretrained_cfg(self)

    def _make_head(self, num_classes: int, distillation: bool) -> nn.Module:
        if num_classes == 0 and self.cfg.classifier == "mbv3":
            # no head at all, so that the model returns its num_features pooled features, as a RepViT does
            return nn.Identity()
        if self.cfg.classifier == "mbv3":
            return MobileNetV3Classifier(self.num_features, self.cfg.head_chs[1], num_classes, self.cfg.stem_act,
                                         self.drop_rate, distillation)
        return RepViTClassifier(self.num_features, num_classes, distillation)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = self._checkpointed_stages(x)
        else:
            x = self.stages(x)
        return self.final_conv(x)
