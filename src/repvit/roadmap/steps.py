"""The roadmap steps: MobileNetV3-L (step 0) to RepViT-M1.0 (step 8), each one change away from the previous.

The order and the changes are the paper's (its MobileNetV3-L → RepViT roadmap). The paper does not give every
intermediate width and depth; the choices made here, and why, are in ``docs/roadmap.md``. In short:

* step 1 keeps every width, hidden width, kernel and SE position of MobileNetV3-L and only re-arranges each
  block (depthwise conv first, RepVGGDW token mixer, residual FFN channel mixer);
* step 2 sets every expansion to 2 and widens the stages to RepViT-M1.0's widths (56, 112, 224, 448; MobileNetV3's
  stride-2 stage goes from 16 to 28 = 56 / 2, the width the early-conv stem will use there);
* step 3's early-conv stem replaces the stride-2 stage and the first downsampling block; the stride-4 stage
  keeps two blocks;
* step 4's downsampling layers replace the stride-2 blocks (the kernel of the stage they lead into is kept);
* step 6 deepens only the stride-16 stage (5 → 14 blocks, depths 2:2:14:2); its SE share (last 2 of 5) is kept;
* steps 7 and 8 are the paper's kernel and SE changes and give RepViT-M1.0 exactly.

Every step is registered as ``roadmap_<i>_<slug>``; :data:`STEPS` holds them in order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch.nn as nn

from repvit.models.registry import ModelEntry, register_model

from .config import BlockSpec, DownsampleSpec, RoadmapConfig, StageSpec, with_kernel, with_se
from .model import RoadmapNet

__all__ = ["RoadmapStep", "STEPS", "build_roadmap", "mobilenetv3_large", "step_names"]

# MobileNetV3-L (Howard et al. 2019, Table 1): in, kernel, hidden, out, SE, activation, stride; grouped by output
# stride of the stage: 2, 4, 8, 16, 32.
_MBV3_L: tuple[tuple[tuple[int, int, int, int, bool, str, int], ...], ...] = (
    ((16, 3, 16, 16, False, "relu", 1),),
    ((16, 3, 64, 24, False, "relu", 2), (24, 3, 72, 24, False, "relu", 1)),
    ((24, 5, 72, 40, True, "relu", 2), (40, 5, 120, 40, True, "relu", 1), (40, 5, 120, 40, True, "relu", 1)),
    (
        (40, 3, 240, 80, False, "hardswish", 2),
        (80, 3, 200, 80, False, "hardswish", 1),
        (80, 3, 184, 80, False, "hardswish", 1),
        (80, 3, 184, 80, False, "hardswish", 1),
        (80, 3, 480, 112, True, "hardswish", 1),
        (112, 3, 672, 112, True, "hardswish", 1),
    ),
    ((112, 5, 672, 160, True, "hardswish", 2), (160, 5, 960, 160, True, "hardswish", 1),
     (160, 5, 960, 160, True, "hardswish", 1)),
)


def mobilenetv3_large(act: str | None = "gelu") -> RoadmapConfig:
    """MobileNetV3-L in the design space.

    Args:
        act: the activation of every block, the stem and the head (the roadmap's step 0 uses GELU, as the paper
            does), or ``None`` for MobileNetV3's own ReLU / Hardswish pattern.
    """
    stages = []
    for level in _MBV3_L:
        blocks = tuple(
            BlockSpec("inverted_residual", i, o, k, s, h / i, se, act or a) for i, k, h, o, se, a, s in level
        )
        stages.append(StageSpec(blocks))
    return RoadmapConfig("mbv3", 16, tuple(stages), classifier="mbv3", head_chs=(960, 1280),
                         stem_act=act or "hardswish")


# ------------------------------------------------------------------------------------------------------ the steps
def _step1_separate(cfg: RoadmapConfig) -> RoadmapConfig:
    """Every inverted residual becomes a metaformer block with the same widths, hidden width, kernel, SE."""
    return _replace_blocks(cfg, lambda b: dataclasses.replace(b, kind="metaformer"))


_WIDEN = {16: 28, 24: 56, 40: 112, 80: 224, 112: 224, 160: 448}


def _step2_expansion_width(cfg: RoadmapConfig) -> RoadmapConfig:
    """Expansion 2 everywhere, then the stages widened to RepViT-M1.0's widths."""
    return _replace_blocks(
        cfg,
        lambda b: dataclasses.replace(b, expand_ratio=2.0, in_chs=_WIDEN[b.in_chs], out_chs=_WIDEN[b.out_chs]),
        stem_chs=_WIDEN[cfg.stem_chs],
    )


def _step3_early_conv(cfg: RoadmapConfig) -> RoadmapConfig:
    """Two stride-2 3x3 convs replace the stem, the stride-2 stage and the first downsampling block."""
    s4 = cfg.stages[1]
    first = s4.blocks[0]
    plain = dataclasses.replace(first, in_chs=first.out_chs, stride=1)
    stages = (StageSpec((plain, *s4.blocks[1:])), *cfg.stages[2:])
    return dataclasses.replace(cfg, stem="early_conv", stem_chs=first.out_chs, stages=stages, stem_act="gelu")


def _step4_deeper_downsampling(cfg: RoadmapConfig) -> RoadmapConfig:
    """Each stride-2 block becomes RepViT's downsampling layer (pre-block, DW s2, 1x1, FFN)."""
    stages = []
    for s in cfg.stages:
        b = s.blocks[0]
        if b.stride == 2:
            ds = DownsampleSpec(b.in_chs, b.out_chs, b.kernel_size, b.expand_ratio, b.act, b.reparam)
            stages.append(StageSpec(s.blocks[1:], ds))
        else:
            stages.append(s)
    return dataclasses.replace(cfg, stages=tuple(stages))


def _step5_simple_classifier(cfg: RoadmapConfig) -> RoadmapConfig:
    """Pool → BN → Linear instead of MobileNetV3's 1x1 conv + two Linear layers."""
    return dataclasses.replace(cfg, classifier="simple")


_STAGE_DEPTHS = (2, 2, 14, 2)


def _step6_stage_ratio(cfg: RoadmapConfig) -> RoadmapConfig:
    """Depths 2:2:14:2 (stage ratio 1:1:7:1); the new blocks copy the stage's last block, and a stage with SE on
    only its last blocks keeps that share of SE blocks, at the end."""
    stages = []
    for s, depth in zip(cfg.stages, _STAGE_DEPTHS):
        proto = s.blocks[-1]
        n_se = sum(b.use_se for b in s.blocks)
        n_se_new = depth if n_se == len(s.blocks) else round(depth * n_se / len(s.blocks))
        blocks = tuple(dataclasses.replace(proto, use_se=i >= depth - n_se_new) for i in range(depth))
        stages.append(StageSpec(blocks, s.downsample))
    return dataclasses.replace(cfg, stages=tuple(stages))


def _replace_blocks(cfg: RoadmapConfig, fn: Callable[[BlockSpec], BlockSpec], **changes: Any) -> RoadmapConfig:
    stages = tuple(StageSpec(tuple(fn(b) for b in s.blocks), s.downsample) for s in cfg.stages)
    return dataclasses.replace(cfg, stages=stages, **changes)


@dataclass(frozen=True)
class RoadmapStep:
    """One step: its index, a slug for the model name, a title, why it was made, and its architecture."""

    index: int
    slug: str
    title: str
    description: str
    config: RoadmapConfig

    @property
    def name(self) -> str:
        return f"roadmap_{self.index}_{self.slug}"

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "label": self.name, "title": self.title,
                "description": self.description}


def _make_steps() -> tuple[RoadmapStep, ...]:
    plan: list[tuple[str, str, str, Callable[[RoadmapConfig], RoadmapConfig]]] = [
        ("separate_mixers", "Separate token and channel mixer",
         "Depthwise conv placed before the 1x1 convs as a RepVGGDW token mixer (SE right after it, as SE needs "
         "spatial interaction), the 1x1 convs become a residual FFN channel mixer: a MetaFormer block.",
         _step1_separate),
        ("expansion2_wider", "Expansion ratio 2, wider channels",
         "Every FFN expands by 2 instead of 2.3-6 (the 1x1 convs are most of the cost), and the freed budget "
         "widens the stages to 56/112/224/448.", _step2_expansion_width),
        ("early_convs", "Early convolutions",
         "Two stride-2 3x3 convs replace MobileNetV3's stem, its stride-2 block and first downsampling block: "
         "a ViT-style stem that is cheap and reaches stride 4 quickly.", _step3_early_conv),
        ("deeper_downsampling", "Deeper downsampling",
         "Each stride-2 block becomes a separate, deeper downsampling layer: a RepViT block, DW stride-2 conv, "
         "1x1 conv and an FFN, as ViTs downsample in separate layers.", _step4_deeper_downsampling),
        ("simple_classifier", "Simple classifier",
         "Pool, BN and one Linear layer replace MobileNetV3's 1x1 conv to 960 and 1280-wide hidden Linear layer, "
         "which cost latency for little accuracy.", _step5_simple_classifier),
        ("stage_ratio", "Stage ratio 1:1:7:1",
         "Depths 2:2:14:2: most blocks in the stride-16 stage, as in lightweight ViTs.", _step6_stage_ratio),
        ("kernel3", "3x3 kernels everywhere",
         "MobileNetV3's 5x5 depthwise kernels become 3x3: mobile compilers and hardware accelerate 3x3 best, and "
         "the deeper network no longer needs the larger receptive field.", partial(with_kernel, kernel_size=3)),
        ("cross_block_se", "Cross-block SE (RepViT-M1.0)",
         "SE on blocks 1, 3, 5, … of every stage instead of the blocks MobileNetV3 chose: every stage gets "
         "channel attention, while alternating blocks halves the latency of SE's global pooling. This is RepViT-M1.0.",
         partial(with_se, placement="cross")),
    ]
    cfg = mobilenetv3_large("gelu")
    steps = [RoadmapStep(0, "mobilenetv3_l_gelu", "MobileNetV3-L, GELU",
                         "The starting point: MobileNetV3-L with GELU instead of ReLU/Hardswish, as the paper trains "
                         "it with the aligned (DeiT-style) recipe.", cfg)]
    for i, (slug, title, why, fn) in enumerate(plan, start=1):
        cfg = fn(cfg)
        steps.append(RoadmapStep(i, slug, title, why, cfg))
    return tuple(steps)


STEPS: tuple[RoadmapStep, ...] = _make_steps()


def build_roadmap(
    cfg: RoadmapConfig,
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    distillation: bool = False,
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
    features_only: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """Build a roadmap network (classifier only: ``features_only`` is not supported)."""
    if features_only:
        raise ValueError("roadmap models do not support features_only=True; use a repvit_* model for dense tasks.")
    if kwargs:
        raise TypeError(f"roadmap models do not take {sorted(kwargs)}.")
    return RoadmapNet(cfg, num_classes=num_classes, in_chans=in_chans, distillation=distillation,
                      drop_rate=drop_rate, drop_path_rate=drop_path_rate)


def step_names() -> list[str]:
    """The registered names of the steps, in order."""
    return [s.name for s in STEPS]


def register_roadmap_model(name: str, config: RoadmapConfig, description: str,
                           tags: tuple[str, ...] = ("roadmap",)) -> ModelEntry:
    """Register a roadmap architecture in the model registry (``create_model``, the trainer and the fuser then take
    it by name)."""
    return register_model(ModelEntry(name=name, builder=partial(build_roadmap, config), config=config,
                                     description=description, published=None, supports_features=False, tags=tags))


for _step in STEPS:
    register_roadmap_model(_step.name, _step.config,
                           f"roadmap step {_step.index}: {_step.title}. {_step.description}")
