"""The models ``repvit bench`` measures: RepViT variants (fused and unfused) and timm baselines, with published
ImageNet-1k top-1 accuracy.

Published top-1 (ImageNet-1k val, single crop) and the resolution it was measured at, from the papers / timm model
cards:

============================  ======  ====  ======================================================================
model                          top-1   res   source
============================  ======  ====  ======================================================================
mobilenetv3_large_100          75.8    224   timm model card ``mobilenetv3_large_100.ra_in1k`` (paper: 75.2)
mobilenetv4_conv_small         73.8    224   MobileNetV4 paper, Table 4 (timm ``e2400_r224_in1k`` card: 74.6)
efficientformerv2_s0           75.7    224   EfficientFormerV2 paper, Table 1 (300 epochs, distilled)
efficientformerv2_s1           79.0    224   EfficientFormerV2 paper, Table 1 (300 epochs, distilled)
mobilevitv2_100                78.1    256   MobileViTv2 paper, Table 4
fastvit_t8                     75.6    256   FastViT paper, Table 4
mobileone_s1                   75.9    224   MobileOne paper, Table 4
efficientvit_m4                74.3    224   EfficientViT (Liu et al., CVPR 2023), Table 1
repghostnet_100                74.2    224   RepGhost paper, Table 2 (RepGhostNet 1.0x)
repvit_*                       see ``repvit.models.PUBLISHED`` (RepViT paper, 300 epochs, distilled)
============================  ======  ====  ======================================================================

Every baseline is built with ``pretrained=False`` (only its speed is measured) and put into its deploy form with
``timm.utils.model.reparameterize_model`` (MobileOne, FastViT and RepGhostNet have train-time branches).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

__all__ = ["BenchModel", "TIMM_BASELINES", "DEFAULT_MODELS", "resolve_model", "build_bench_model"]


@dataclass(frozen=True)
class BenchModel:
    """One row group of the benchmark: how to build it and what was published about it."""

    name: str  # row label, e.g. "repvit_m0_9 (fused)" is name + variant
    source: str  # "repvit" or "timm"
    arch: str  # registry / timm name
    fused: bool
    top1: float | None
    top1_res: int | None
    top1_source: str
    weights: str | None = None  # published weights to load (repvit weights list); None: random weights


TIMM_BASELINES: dict[str, tuple[float, int, str]] = {
    "mobilenetv3_large_100": (75.8, 224, "timm card ra_in1k"),
    "mobilenetv4_conv_small": (73.8, 224, "MobileNetV4 paper"),
    "efficientformerv2_s0": (75.7, 224, "EfficientFormerV2 paper (300e, distilled)"),
    "efficientformerv2_s1": (79.0, 224, "EfficientFormerV2 paper (300e, distilled)"),
    "mobilevitv2_100": (78.1, 256, "MobileViTv2 paper"),
    "fastvit_t8": (75.6, 256, "FastViT paper"),
    "mobileone_s1": (75.9, 224, "MobileOne paper"),
    "efficientvit_m4": (74.3, 224, "EfficientViT paper (Liu et al. 2023)"),
    "repghostnet_100": (74.2, 224, "RepGhost paper"),
}

DEFAULT_MODELS: tuple[str, ...] = ("repvit_m0_9", "repvit_m0_9:unfused", "repvit_m1_1", *TIMM_BASELINES)


def resolve_model(spec: str) -> BenchModel:
    """Parse a model spec: ``repvit_m0_9`` (fused), ``repvit_m0_9:unfused``, ``timm:repvit_m0_9`` (timm's port,
    reparameterized) or a baseline name from :data:`TIMM_BASELINES` (any timm name works, without a top-1)."""
    from repvit.models import PUBLISHED, UnknownModelError, get_model_entry

    name, _, variant = spec.partition(":")
    if name == "timm":
        arch = variant
        top1 = PUBLISHED.get(arch)
        return BenchModel(f"timm:{arch}", "timm", arch, True, top1.top1_300e if top1 else None, 224,
                          "RepViT paper (300e)" if top1 else "")
    if variant not in ("", "fused", "unfused"):
        raise ValueError(f"model spec {spec!r}: the suffix must be ':fused' or ':unfused'.")
    try:
        entry = get_model_entry(name)
    except UnknownModelError:
        entry = None
    if entry is not None:
        pub = PUBLISHED.get(entry.name)
        fused = variant != "unfused"
        return BenchModel(f"{entry.name}{'' if fused else ' (unfused)'}", "repvit", entry.name, fused,
                          pub.top1_300e if pub else None, 224, "RepViT paper (300e, distilled)")
    import timm

    if name not in TIMM_BASELINES and not timm.is_model(name):
        raise ValueError(f"unknown model {name!r}: not a repvit model (`repvit list`), nor a timm model.")
    top1, res, src = TIMM_BASELINES.get(name, (None, None, ""))
    return BenchModel(name, "timm", name, True, top1, res, src)


def build_bench_model(bm: BenchModel) -> nn.Module:
    """Build the model of a :class:`BenchModel` in eval mode (random weights unless ``weights``; deploy form when
    ``fused``)."""
    if bm.source == "repvit":
        from repvit.models import create_model

        return create_model(bm.arch, pretrained=bm.weights or False, fused=bm.fused).eval()
    import timm
    from timm.utils.model import reparameterize_model

    model = timm.create_model(bm.arch, pretrained=False).eval()
    return reparameterize_model(model) if bm.fused else model
