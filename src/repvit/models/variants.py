"""Registers the published RepViT variants (m0_6 … m2_3 and the legacy m1/m2/m3)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch.nn as nn

from .config import PUBLISHED, VARIANTS, RepViTConfig
from .registry import ModelEntry, register_model
from .repvit import RepViT, RepViTFeatures

__all__ = ["build_repvit"]


def build_repvit(
    cfg: RepViTConfig,
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    distillation: bool = False,
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
    features_only: bool = False,
    out_indices: Sequence[int] = (0, 1, 2, 3),
    global_pool: str = "avg",
) -> nn.Module:
    """Build a RepViT classifier, or its feature backbone with ``features_only=True``.

    ``global_pool`` is ``"avg"`` or ``""`` (no pooling; with ``num_classes=0`` the model returns ``(N, C, H, W)``).
    """
    if features_only:
        return RepViTFeatures(cfg, in_chans=in_chans, out_indices=out_indices, drop_path_rate=drop_path_rate)
    return RepViT(
        cfg,
        num_classes=num_classes,
        in_chans=in_chans,
        distillation=distillation,
        drop_rate=drop_rate,
        drop_path_rate=drop_path_rate,
        global_pool=global_pool,
    )


def _describe(name: str, cfg: RepViTConfig) -> str:
    kind = "legacy RepVGGDW (first release)" if cfg.token_mixer == "legacy" else "RepVGGDW"
    short = name.removeprefix("repvit_").upper().replace("_", ".")
    return f"RepViT {short}: widths {cfg.widths}, depths {cfg.depths}, {kind}"


for _name, _cfg in VARIANTS.items():
    register_model(
        ModelEntry(
            name=_name,
            builder=partial(build_repvit, _cfg),
            config=_cfg,
            description=_describe(_name, _cfg),
            published=PUBLISHED.get(_name),
            tags=("repvit", "legacy") if _cfg.token_mixer == "legacy" else ("repvit",),
        )
    )
