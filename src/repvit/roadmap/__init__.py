"""The modernization roadmap from MobileNetV3-L to RepViT (registered as ``roadmap_*`` models).

:mod:`.config` is the design space, :mod:`.steps` the steps (importing it registers them), :mod:`.model` the
network that builds any point of the space, and :mod:`.runner` measures the steps (``repvit roadmap``).
"""

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
