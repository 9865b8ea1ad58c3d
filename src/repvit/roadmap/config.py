"""The design space of the modernization roadmap: one typed configuration from MobileNetV3-L to RepViT.

A network is a stem, a list of stages and a classifier. A stage is an optional RepViT downsampling layer followed
by blocks; each block is a :class:`BlockSpec` (like torchvision's ``InvertedResidualConfig``) that says whether it
is a MobileNetV3 inverted residual or a RepViT token mixer + channel mixer, with its own widths, stride, kernel,
expansion ratio, SE flag, activation and re-parameterization switch. MobileNetV3-L and RepViT-M1.0 are two points
of this space (see :mod:`repvit.roadmap.steps`).

The ablation switches of the paper are functions that return a modified copy of a config:
:func:`with_token_mixer` (re-parameterized RepVGGDW vs a plain depthwise conv), :func:`with_se` (SE on every
block, cross-block, or none), :func:`with_expansion` (e.g. 4 vs 2) and :func:`with_kernel` (5x5 vs 3x3).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "BlockSpec",
    "DownsampleSpec",
    "StageSpec",
    "RoadmapConfig",
    "ACTIVATIONS",
    "with_token_mixer",
    "with_se",
    "with_expansion",
    "with_kernel",
]

BlockKind = Literal["inverted_residual", "metaformer"]
StemKind = Literal["mbv3", "early_conv"]
ClassifierKind = Literal["mbv3", "simple"]
SEPlacement = Literal["all", "cross", "none"]
ACTIVATIONS = ("gelu", "relu", "hardswish")


def _check_kernel(k: int, what: str) -> None:
    if k < 3 or k % 2 == 0:
        raise ValueError(f"{what}: kernel_size must be odd and >= 3, got {k}.")


def _check_act(act: str, what: str) -> None:
    if act not in ACTIVATIONS:
        raise ValueError(f"{what}: act must be one of {ACTIVATIONS}, got {act!r}.")


@dataclass(frozen=True)
class BlockSpec:
    """One block.

    Attributes:
        kind: ``"inverted_residual"`` (MobileNetV3: expand 1x1 → depthwise kxk → SE → project 1x1) or
            ``"metaformer"`` (RepViT: depthwise token mixer → SE → 1x1 FFN channel mixer). A metaformer block with
            stride 1 and ``in_chs == out_chs`` is exactly :class:`repvit.models.repvit.RepViTBlock`; otherwise
            its FFN changes the width and has no residual.
        in_chs: input channels.
        out_chs: output channels.
        kernel_size: depthwise kernel.
        stride: 1 or 2 (the depthwise conv carries the stride).
        expand_ratio: hidden width of the expansion / FFN as a multiple of ``in_chs``.
        use_se: squeeze-excite after the depthwise conv.
        act: activation of the block (``gelu``, ``relu``, ``hardswish``).
        reparam: metaformer blocks only: the stride-1 token mixer is the multi-branch RepVGGDW (``True``) or a
            plain depthwise conv + BN (``False``).
    """

    kind: BlockKind
    in_chs: int
    out_chs: int
    kernel_size: int = 3
    stride: int = 1
    expand_ratio: float = 2.0
    use_se: bool = False
    act: str = "gelu"
    reparam: bool = True

    def __post_init__(self) -> None:
        if self.kind not in ("inverted_residual", "metaformer"):
            raise ValueError(f"block kind must be 'inverted_residual' or 'metaformer', got {self.kind!r}.")
        if self.in_chs <= 0 or self.out_chs <= 0:
            raise ValueError(f"block channels must be positive, got {self.in_chs} -> {self.out_chs}.")
        if self.stride not in (1, 2):
            raise ValueError(f"block stride must be 1 or 2, got {self.stride}.")
        if self.expand_ratio <= 0:
            raise ValueError(f"expand_ratio must be > 0, got {self.expand_ratio}.")
        _check_kernel(self.kernel_size, "BlockSpec")
        _check_act(self.act, "BlockSpec")

    @property
    def hidden_chs(self) -> int:
        return int(round(self.in_chs * self.expand_ratio))

    @property
    def is_repvit_block(self) -> bool:
        """True when the block is a plain stride-1 RepViT block (token mixer + residual FFN)."""
        return self.kind == "metaformer" and self.stride == 1 and self.in_chs == self.out_chs


@dataclass(frozen=True)
class DownsampleSpec:
    """RepViT's deeper downsampling layer: a stride-1 RepViT block without SE (at ``in_chs``), a depthwise
    stride-2 conv, a 1x1 conv ``in_chs → out_chs`` and a residual FFN (:class:`repvit.models.repvit.RepViTDownsample`).
    """

    in_chs: int
    out_chs: int
    kernel_size: int = 3
    expand_ratio: float = 2.0
    act: str = "gelu"
    reparam: bool = True

    def __post_init__(self) -> None:
        if self.in_chs <= 0 or self.out_chs <= 0 or self.in_chs % 2 or self.out_chs % 2:
            raise ValueError(f"downsample channels must be positive even numbers, got {self.in_chs}, {self.out_chs}.")
        _check_kernel(self.kernel_size, "DownsampleSpec")
        _check_act(self.act, "DownsampleSpec")


@dataclass(frozen=True)
class StageSpec:
    """An optional downsampling layer followed by blocks (all at one resolution, unless a block has stride 2)."""

    blocks: tuple[BlockSpec, ...]
    downsample: DownsampleSpec | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", tuple(self.blocks))

    @property
    def in_chs(self) -> int:
        return self.downsample.in_chs if self.downsample else self.blocks[0].in_chs

    @property
    def out_chs(self) -> int:
        return self.blocks[-1].out_chs if self.blocks else self.downsample.out_chs

    @property
    def stride(self) -> int:
        s = 2 if self.downsample else 1
        for b in self.blocks:
            s *= b.stride
        return s


@dataclass(frozen=True)
class RoadmapConfig:
    """One network of the design space.

    Attributes:
        stem: ``"mbv3"`` (one stride-2 3x3 conv + BN + act, output stride 2) or ``"early_conv"`` (two stride-2
            3x3 convs, :class:`repvit.models.repvit.RepViTStem`, output stride 4).
        stem_chs: stem output channels.
        stages: the stages in order.
        classifier: ``"mbv3"`` (1x1 conv + BN + act to ``head_chs[0]``, pool, Linear to ``head_chs[1]`` + act,
            dropout, Linear) or ``"simple"`` (pool, BN, Linear: :class:`repvit.models.repvit.RepViTClassifier`).
        head_chs: widths of MobileNetV3's classifier (1x1 conv, hidden Linear); unused by ``"simple"``.
        stem_act: activation of the stem and of the MobileNetV3 classifier.
        se_ratio: SE reduction of metaformer blocks (reduced channels rounded down to a multiple of 8, as RepViT).
            Inverted residual blocks use MobileNetV3's SE: 1/4 of the expanded width, hard-sigmoid gate.
    """

    stem: StemKind
    stem_chs: int
    stages: tuple[StageSpec, ...]
    classifier: ClassifierKind = "simple"
    head_chs: tuple[int, int] = (960, 1280)
    stem_act: str = "gelu"
    se_ratio: float = 0.25

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(self.stages))
        object.__setattr__(self, "head_chs", tuple(int(c) for c in self.head_chs))
        if self.stem not in ("mbv3", "early_conv"):
            raise ValueError(f"stem must be 'mbv3' or 'early_conv', got {self.stem!r}.")
        if self.classifier not in ("mbv3", "simple"):
            raise ValueError(f"classifier must be 'mbv3' or 'simple', got {self.classifier!r}.")
        if not self.stages or any(not (s.blocks or s.downsample) for s in self.stages):
            raise ValueError("a network needs at least one stage, and every stage a block or a downsampling layer.")
        if self.stem == "early_conv" and self.stem_chs % 2:
            raise ValueError(f"the early-conv stem needs an even width, got {self.stem_chs}.")
        _check_act(self.stem_act, "RoadmapConfig.stem_act")
        chs = self.stem_chs
        for i, stage in enumerate(self.stages):
            units = ([stage.downsample] if stage.downsample else []) + list(stage.blocks)
            for u in units:
                if u.in_chs != chs:
                    raise ValueError(f"stage {i}: a layer expects {u.in_chs} input channels but gets {chs}.")
                chs = u.out_chs

    # ------------------------------------------------------------------ derived figures
    @property
    def stem_stride(self) -> int:
        return 2 if self.stem == "mbv3" else 4

    @property
    def num_features(self) -> int:
        return self.stages[-1].out_chs

    def blocks(self) -> list[BlockSpec]:
        """All blocks in execution order (downsampling layers excluded)."""
        return [b for s in self.stages for b in s.blocks]

    def depths(self) -> tuple[int, ...]:
        """Blocks per stage, counting a downsampling layer's pre-block in its stage as RepViT's ``depths`` does
        not (the pre-block runs at the previous stage's width)."""
        return tuple(len(s.blocks) for s in self.stages)

    def widths(self) -> tuple[int, ...]:
        return tuple(s.out_chs for s in self.stages)

    # ------------------------------------------------------------------ serialization
    def to_dict(self) -> dict[str, Any]:
        return {"design_space": "roadmap", **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RoadmapConfig:
        d = {k: v for k, v in d.items() if k != "design_space"}
        stages = []
        for s in d.pop("stages"):
            ds = s.get("downsample")
            stages.append(
                StageSpec(
                    blocks=tuple(BlockSpec(**b) for b in s["blocks"]),
                    downsample=DownsampleSpec(**ds) if ds else None,
                )
            )
        return cls(stages=tuple(stages), **d)


# ---------------------------------------------------------------------------------------------- ablation switches
def _map_units(cfg: RoadmapConfig, block_fn, ds_fn=None) -> RoadmapConfig:
    stages = []
    for si, s in enumerate(cfg.stages):
        blocks = tuple(block_fn(si, bi, b) for bi, b in enumerate(s.blocks))
        ds = s.downsample
        if ds is not None and ds_fn is not None:
            ds = ds_fn(ds)
        stages.append(StageSpec(blocks, ds))
    return dataclasses.replace(cfg, stages=tuple(stages))


def _set_everywhere(cfg: RoadmapConfig, **changes) -> RoadmapConfig:
    """``changes`` (field values) on every block and every downsampling layer."""
    return _map_units(cfg, lambda si, bi, b: dataclasses.replace(b, **changes),
                      lambda d: dataclasses.replace(d, **changes))


def with_token_mixer(cfg: RoadmapConfig, reparam: bool) -> RoadmapConfig:
    """Metaformer token mixers as re-parameterizable RepVGGDW (``True``) or a plain depthwise conv + BN."""
    return _set_everywhere(cfg, reparam=reparam)


def with_se(cfg: RoadmapConfig, placement: SEPlacement) -> RoadmapConfig:
    """SE on every block (``"all"``), on blocks 1, 3, 5, … of every stage (``"cross"``, RepViT) or nowhere.

    Downsampling layers never carry SE (as in RepViT).
    """
    if placement not in ("all", "cross", "none"):
        raise ValueError(f"SE placement must be 'all', 'cross' or 'none', got {placement!r}.")
    rule = {"all": lambda i: True, "cross": lambda i: i % 2 == 0, "none": lambda i: False}[placement]
    return _map_units(cfg, lambda si, bi, b: dataclasses.replace(b, use_se=rule(bi)))


def with_expansion(cfg: RoadmapConfig, ratio: float) -> RoadmapConfig:
    """The same expansion ratio in every block and downsampling FFN (the paper compares 4 and 2)."""
    return _set_everywhere(cfg, expand_ratio=ratio)


def with_kernel(cfg: RoadmapConfig, kernel_size: int) -> RoadmapConfig:
    """The same depthwise kernel everywhere (the paper compares 5x5 and 3x3)."""
    return _set_everywhere(cfg, kernel_size=kernel_size)
