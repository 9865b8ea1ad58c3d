"""SAM distillation's settings: :class:`SamDistillConfig` (the engine's fields plus the teacher, the embedding cache
and phase 2's prompts), the teachers, phases and prompt kinds it accepts, and :class:`LoopSettings` (what one
prompt-in-the-loop pass of phase 2 does)."""

from __future__ import annotations

from dataclasses import dataclass

from repvit.engine.config import EngineConfig
from repvit.sam.encoder import RepViTSamConfig

from .mask_annotations import PROMPT_MASKS

__all__ = ["SamDistillConfig", "LoopSettings", "TEACHERS", "PHASES", "PROMPT_TYPES"]

TEACHERS = ("vit_h", "vit_l", "vit_b", "repvit_sam")  # repvit_sam: any checkpoint build_repvit_sam reads
PHASES = ("encoder", "prompt", "both")
PROMPT_TYPES = ("box", "point")


@dataclass(frozen=True)
class SamDistillConfig(EngineConfig):
    """Distillation: the engine's fields (``model`` is the student trunk, ``data`` the image folder) plus these.

    Defaults follow MobileSAM's decoupled distillation (batch 8, AdamW, 1e-3, cosine) at SAM's 1024 x 1024.
    """

    model: str = "repvit_m2_3"
    data: str = ""
    output_dir: str = "runs/sam_distill"
    img_size: int = 1024
    epochs: int = 8
    batch_size: int = 8
    lr: float = 1e-3
    lr_base_batch: int = 8
    min_lr: float = 1e-6
    weight_decay: float = 0.01
    clip_grad: float | None = None
    model_ema: bool = False
    teacher: str = "vit_h"  # vit_h | vit_l | vit_b (segment_anything.sam_model_registry)
    teacher_checkpoint: str | None = None  # the SAM checkpoint file (sam_vit_h_4b8939.pth); never downloaded
    init: str | None = None  # a RepViT classification checkpoint for the trunk (any format repvit reads)
    drop_path: float = 0.0
    cache_dir: str | None = None  # default: ~/.cache/repvit/sam_embeddings
    cache_dtype: str = "float16"
    shard_size: int = 64
    teacher_batch_size: int = 4
    val_fraction: float = 0.02  # held-out images (at least 1)
    max_images: int | None = None  # use only the first N images of the sorted list
    # phase 2 (EdgeSAM's prompt-in-the-loop distillation; SamPromptDistillTask)
    phase: str = "encoder"  # encoder | prompt | both (phase 1 into OUT/encoder, then phase 2 into OUT/prompt)
    train_decoder: bool = True  # EdgeSAM: the mask decoder trains with the encoder (prompt encoder frozen)
    max_prompts: int = 16  # prompts per image and step
    refine_iters: int = 2  # refinement decodes after the first, each adding points_per_refine points
    points_per_refine: int = 1
    prompt_types: str = "box,point"  # each batch draws one of these
    bce_weight: float = 5.0
    dice_weight: float = 5.0
    mask_input: bool = False  # feed each model's previous best low-res logits back as mask input
    eval_prompts: int = 8  # held-out: this many boxes and as many points per image, fixed
    prompt_masks: str = "auto"  # phase 2's prompts from: auto (COCO/SA-1B masks when the folder has them) | teacher
    # | annotations
    prompt_epochs: int | None = None  # phase=both: phase 2's epochs / iters / lr (None: phase 1's)
    prompt_iters: int | None = None
    prompt_lr: float | None = None

    def __post_init__(self):
        super().__post_init__()
        if not self.data:
            raise ValueError("distillation needs an image folder: --images DIR.")
        if self.teacher not in TEACHERS:
            raise ValueError(f"--teacher must be one of {', '.join(TEACHERS)}, got {self.teacher!r}.")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}.")
        if self.phase not in PHASES:
            raise ValueError(f"--phase must be one of {', '.join(PHASES)}, got {self.phase!r}.")
        self.prompt_type_list()
        if self.prompt_masks not in PROMPT_MASKS:
            raise ValueError(f"--prompt-masks must be one of {', '.join(PROMPT_MASKS)}, got {self.prompt_masks!r}.")
        if self.max_prompts < 1 or self.refine_iters < 0 or self.points_per_refine < 1 or self.eval_prompts < 1:
            raise ValueError("max_prompts, points_per_refine and eval_prompts must be >= 1 and refine_iters >= 0 "
                             f"(got {self.max_prompts}, {self.points_per_refine}, {self.eval_prompts}, "
                             f"{self.refine_iters}).")

    def prompt_type_list(self) -> tuple[str, ...]:
        """``prompt_types`` as a tuple (``"box,point"`` -> ``("box", "point")``)."""
        kinds = tuple(k.strip() for k in str(self.prompt_types).split(",") if k.strip())
        if not kinds or any(k not in PROMPT_TYPES for k in kinds):
            raise ValueError(f"prompt_types must be a comma-separated subset of box,point; got {self.prompt_types!r}.")
        return kinds

    def sam_config(self) -> RepViTSamConfig:
        return RepViTSamConfig(self.model, img_size=self.img_size)


@dataclass(frozen=True)
class LoopSettings:
    """What one prompt-in-the-loop pass does (from :class:`SamDistillConfig`)."""

    max_prompts: int = 16
    refine_iters: int = 2
    points_per_refine: int = 1
    prompt_types: tuple[str, ...] = ("box", "point")
    bce_weight: float = 5.0
    dice_weight: float = 5.0
    mask_input: bool = False

    @classmethod
    def from_config(cls, cfg: SamDistillConfig) -> LoopSettings:
        return cls(cfg.max_prompts, cfg.refine_iters, cfg.points_per_refine, cfg.prompt_type_list(),
                   cfg.bce_weight, cfg.dice_weight, cfg.mask_input)
