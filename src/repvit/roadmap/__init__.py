"""The modernization roadmap from MobileNetV3-L to RepViT (registered as ``roadmap_*`` models).

:mod:`.config` is the design space, :mod:`.steps` the steps (importing it registers them), :mod:`.model` the
network that builds any point of the space, :mod:`.ablation` the paper's ablations as variants of a step, and
:mod:`.runner` measures the steps and ablations (``repvit roadmap``).
"""

from .ablation import ABLATIONS, Ablation, RoadmapVariant, ablation_variants, parse_ablations, register_variant
from .config import (
    BlockSpec,
    DownsampleSpec,
    RoadmapConfig,
    StageSpec,
    with_expansion,
    with_kernel,
    with_se,
    with_token_mixer,
)
from .model import RoadmapNet
from .steps import STEPS, RoadmapStep, build_roadmap, mobilenetv3_large, step_names

__all__ = [
    "ABLATIONS",
    "Ablation",
    "RoadmapVariant",
    "ablation_variants",
    "parse_ablations",
    "register_variant",
    "BlockSpec",
    "DownsampleSpec",
    "RoadmapConfig",
    "StageSpec",
    "with_expansion",
    "with_kernel",
    "with_se",
    "with_token_mixer",
    "RoadmapNet",
    "STEPS",
    "RoadmapStep",
    "build_roadmap",
    "mobilenetv3_large",
    "step_names",
]
