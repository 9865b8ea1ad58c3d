"""Typed configuration of a RepViT network and the published variant table.

A variant is data: stage widths, depths, SE pattern, kernel size, expansion ratio and token-mixer kind. The
numbers in :data:`PUBLISHED` come from the paper's tables and the authors' release.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["ConfigDict", "BlockConfig", "RepViTConfig", "PublishedInfo", "VARIANTS", "PUBLISHED"]


class ConfigDict:
    """``to_dict`` / ``from_dict`` for a frozen config dataclass, as stored in checkpoints; ``from_dict`` names
    unknown keys."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys {sorted(unknown)}; expected a subset of {sorted(names)}.")
        return cls(**d)

SEPattern = Literal["cross", "all", "none"]
TokenMixerKind = Literal["repvggdw", "legacy"]


@dataclass(frozen=True)
class BlockConfig:
    """One stride-1 RepViT block: width, whether it carries squeeze-excite, and its depthwise kernel."""

    dim: int
    use_se: bool
    kernel_size: int = 3
    mlp_ratio: float = 2.0


@dataclass(frozen=True)
class RepViTConfig(ConfigDict):
    """Architecture of one RepViT network.

    Attributes:
        widths: channels of the four stages (the stem outputs ``widths[0]``).
        depths: stride-1 blocks per stage. Every stage after the first starts with a downsampling layer that
            holds one more stride-1 block (its ``pre_block``, at the previous stage's width, without SE), as in
            timm's port.
        kernel_size: depthwise kernel of every token mixer and downsampling conv.
        mlp_ratio: FFN expansion ratio.
        se_pattern: ``"cross"`` puts SE on blocks 1, 3, 5, … of every stage (the paper), ``"all"`` on every
            block, ``"none"`` nowhere. Pre-downsample blocks never carry SE.
        token_mixer: ``"repvggdw"`` (current release) or ``"legacy"`` (first release, m1/m2/m3).
        se_ratio: squeeze-excite reduction ratio.
    """

    widths: tuple[int, ...]
    depths: tuple[int, ...]
    kernel_size: int = 3
    mlp_ratio: float = 2.0
    se_pattern: SEPattern = "cross"
    token_mixer: TokenMixerKind = "repvggdw"
    se_ratio: float = 0.25

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "depths", tuple(int(d) for d in self.depths))
        if len(self.widths) != len(self.depths) or not self.widths:
            raise ValueError(
                f"widths and depths must be non-empty and of equal length, got {self.widths} and {self.depths}."
            )
        if any(w <= 0 or w % 2 for w in self.widths):
            raise ValueError(f"stage widths must be positive even numbers, got {self.widths}.")
        if any(d < 0 for d in self.depths):
            raise ValueError(f"depths must be >= 0, got {self.depths}.")
        if self.kernel_size < 3 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 3, got {self.kernel_size}.")
        if self.se_pattern not in ("cross", "all", "none"):
            raise ValueError(f"se_pattern must be 'cross', 'all' or 'none', got {self.se_pattern!r}.")
        if self.token_mixer not in ("repvggdw", "legacy"):
            raise ValueError(f"token_mixer must be 'repvggdw' or 'legacy', got {self.token_mixer!r}.")

    @property
    def num_stages(self) -> int:
        return len(self.widths)

    def stage_blocks(self, stage: int) -> list[BlockConfig]:
        """The stride-1 blocks of ``stage`` (not counting the downsampling layer's pre-block)."""
        blocks = []
        for i in range(self.depths[stage]):
            use_se = {"cross": i % 2 == 0, "all": True, "none": False}[self.se_pattern]
            blocks.append(BlockConfig(self.widths[stage], use_se, self.kernel_size, self.mlp_ratio))
        return blocks

    def num_blocks(self) -> int:
        """Blocks that carry a residual FFN (stride-1 blocks, pre-blocks and downsample FFNs)."""
        return sum(self.depths) + 2 * (self.num_stages - 1)



@dataclass(frozen=True)
class PublishedInfo:
    """Published (or derived) figures for a variant, used by tests, ``repvit info`` and benchmarks."""

    params_train: float | None = None  # train-time params with two heads, 1000 classes
    fused_params: float | None = None  # deploy form, one head
    fused_macs: float | None = None  # deploy form at 224x224
    top1_300e: float | None = None
    top1_450e: float | None = None
    latency_iphone12_ms: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


_W09, _W10, _W11, _W23 = (48, 96, 192, 384), (56, 112, 224, 448), (64, 128, 256, 512), (80, 160, 320, 640)

VARIANTS: dict[str, RepViTConfig] = {
    "repvit_m0_6": RepViTConfig((40, 80, 160, 320), (1, 1, 8, 1)),
    "repvit_m0_9": RepViTConfig(_W09, (2, 2, 14, 2)),
    "repvit_m1_0": RepViTConfig(_W10, (2, 2, 14, 2)),
    "repvit_m1_1": RepViTConfig(_W11, (2, 2, 12, 2)),
    "repvit_m1_5": RepViTConfig(_W11, (4, 4, 24, 4)),
    "repvit_m2_3": RepViTConfig(_W23, (6, 6, 34, 2)),
    "repvit_m1": RepViTConfig(_W09, (2, 2, 14, 2), token_mixer="legacy"),
    "repvit_m2": RepViTConfig(_W11, (2, 2, 12, 2), token_mixer="legacy"),
    "repvit_m3": RepViTConfig(_W11, (4, 4, 18, 2), token_mixer="legacy"),
}

PUBLISHED: dict[str, PublishedInfo] = {
    "repvit_m0_6": PublishedInfo(2.81e6, 2.47e6, 0.385e9, 74.1, None, 0.6),
    "repvit_m0_9": PublishedInfo(5.489e6, 5.067e6, 0.816e9, 78.7, 79.1, 0.9),
    "repvit_m1_0": PublishedInfo(7.303e6, 6.810e6, 1.106e9, 80.0, 80.3, 1.0),
    "repvit_m1_1": PublishedInfo(8.803e6, 8.244e6, 1.337e9, 80.7, 81.2, 1.1),
    "repvit_m1_5": PublishedInfo(14.644e6, 14.050e6, 2.274e9, 82.3, 82.5, 1.5),
    "repvit_m2_3": PublishedInfo(23.689e6, 22.927e6, 4.516e9, 83.3, 83.7, 2.3),
    "repvit_m1": PublishedInfo(top1_300e=78.5),
    "repvit_m2": PublishedInfo(top1_300e=80.6),
    "repvit_m3": PublishedInfo(top1_300e=81.4),
}
