"""RepViT-SAM distillation (``repvit sam distill``): the training code the authors did not release.

Phase 1 (``phase="encoder"``, the default): decoupled distillation as in MobileSAM and RepViT-SAM: the student image
encoder learns the teacher's (SAM ViT-H) image embeddings with an MSE loss; prompt encoder and mask decoder take no
part, and the student is later paired with the teacher's decoder. Phase 2 (``phase="prompt"``): EdgeSAM's
prompt-in-the-loop distillation of the student's whole SAM on the teacher's masks (:mod:`repvit.sam.prompt_distill`);
``phase="both"`` runs phase 1 into ``OUT/encoder`` and phase 2 from its ``best.pt`` into ``OUT/prompt``.
The teacher's embeddings are computed once into :class:`EmbeddingCache`; training is a
:class:`SamDistillTask` on the shared engine (:func:`repvit.engine.run_task`: resume, DDP, AMP, EMA, progress,
``metrics.jsonl``, curves). :func:`train` is the entry point (``distill`` is its older name).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset

from repvit.engine.amp import amp_dtype, autocast_context
from repvit.engine.config import EngineConfig
from repvit.engine.distributed import all_reduce_sum, barrier
from repvit.engine.task import Task, TaskData

from .embed_cache import EmbeddingCache, default_cache_root, file_sha256, list_images, module_sha256
from .encoder import RepViTSamConfig, RepViTSamEncoder
from .mask_annotations import PROMPT_MASKS
from .preprocess import load_rgb, preprocess_image

__all__ = ["SamDistillConfig", "SamDistillTask", "EmbeddingPairs", "load_teacher_encoder", "load_teacher_sam",
           "train", "distill", "TEACHERS", "PHASES"]

_log = logging.getLogger("repvit.sam")
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
    # phase 2 (EdgeSAM's prompt-in-the-loop distillation; repvit.sam.prompt_distill)
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


def load_teacher_sam(name: str, checkpoint: str | Path) -> nn.Module:
    """The whole teacher SAM: ``segment_anything.sam_model_registry[name]`` (vit_h / vit_l / vit_b) or, for
    ``repvit_sam``, :func:`repvit.sam.build_repvit_sam`, with the local ``checkpoint``; nothing is downloaded."""
    from ._deps import require_sam

    sa = require_sam("the SAM teacher")
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"teacher checkpoint {path} does not exist; download SAM's {name} checkpoint "
                                "(e.g. sam_vit_h_4b8939.pth) and pass it with --teacher-checkpoint.")
    if name == "repvit_sam":
        from .build import build_repvit_sam

        return build_repvit_sam(path).eval()
    return sa.sam_model_registry[name](checkpoint=str(path)).eval()  # torch.load defaults to weights_only=True


def load_teacher_encoder(name: str, checkpoint: str | Path) -> nn.Module:
    """The teacher's image encoder (see :func:`load_teacher_sam`)."""
    return load_teacher_sam(name, checkpoint).image_encoder.eval()


class EmbeddingPairs(Dataset):
    """``(preprocessed image, teacher embedding)`` for the images ``indices`` of ``cache``."""

    def __init__(self, cache: EmbeddingCache, indices: list[int]):
        self.cache, self.indices = cache, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.indices[i]
        image = preprocess_image(load_rgb(self.cache.image_root / self.cache.files[idx]), self.cache.spec.img_size)
        return image, self.cache[idx]


def _collate(batch: list) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.stack([b[0] for b in batch]), torch.stack([b[1] for b in batch])


def split_indices(n: int, val_fraction: float) -> tuple[list[int], list[int]]:
    """A fixed (seed 0, independent of the run's seed) train / held-out split of ``n`` images."""
    if n < 2:
        raise ValueError(f"distillation needs at least 2 images (one held out), found {n}.")
    perm = np.random.default_rng(0).permutation(n)
    k = min(max(1, round(n * val_fraction)), n - 1)
    return sorted(perm[k:].tolist()), sorted(perm[:k].tolist())


class SamDistillTask(Task):
    """Decoupled SAM distillation on the shared engine.

    Args:
        teacher: a teacher image encoder module instead of ``cfg.teacher`` / ``cfg.teacher_checkpoint`` (tests,
            custom teachers); its weights' hash identifies it in the cache key.
    """

    name: ClassVar[str] = "sam-distill"
    best_metric: ClassVar[str] = "neg_mse"
    default_eval_batch_size: ClassVar[int] = 4
    plot_label: ClassVar[str] = "- embedding MSE (held out)"

    def __init__(self, teacher: nn.Module | None = None):
        self.teacher = teacher
        self.cache: EmbeddingCache | None = None
        self.shards_computed = 0

    def _teacher_id(self, cfg: SamDistillConfig, root: Path) -> str:
        if self.teacher is not None:
            return f"module:{module_sha256(self.teacher)}"
        if not cfg.teacher_checkpoint:
            raise ValueError("distillation needs the teacher's weights: --teacher-checkpoint sam_vit_h.pth.")
        return f"{cfg.teacher}:{file_sha256(cfg.teacher_checkpoint, root)}"

    def build_data(self, cfg: SamDistillConfig, info) -> TaskData:
        root = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_root()
        root.mkdir(parents=True, exist_ok=True)
        files = list_images(cfg.data, cfg.max_images)
        cache = EmbeddingCache(root, cfg.data, files, self._teacher_id(cfg, root), cfg.img_size, cfg.cache_dtype,
                               cfg.shard_size)
        if any(i % info.world_size == info.rank for i in cache.missing_shards()):
            teacher = self.teacher if self.teacher is not None else load_teacher_encoder(cfg.teacher,
                                                                                         cfg.teacher_checkpoint)
            teacher = teacher.to(info.device).eval()
            use_amp = cfg.amp and info.device.type == "cuda"
            dtype = amp_dtype(cfg.amp_dtype)

            def embed(x: torch.Tensor) -> torch.Tensor:
                with autocast_context(info.device, use_amp, dtype):
                    return teacher(x.to(info.device))

            if info.is_main:
                _log.info("teacher embeddings: %d of %d shards to compute into %s", len(cache.missing_shards()),
                          cache.num_shards, cache.dir)
            self.shards_computed = cache.fill(embed, batch_size=cfg.teacher_batch_size, rank=info.rank,
                                              world_size=info.world_size, progress=info.is_main and cfg.progress)
            if self.teacher is None:
                del teacher
        barrier()
        missing = cache.missing_shards()
        if missing:
            raise RuntimeError(f"teacher-embedding cache {cache.dir} still misses shards {missing[:5]} after filling; "
                               "another process may have failed. Run again to continue.")
        self.cache = cache
        train_idx, val_idx = split_indices(len(files), cfg.val_fraction)
        meta = {"sam_config": cfg.sam_config().to_dict(), "teacher": cache.spec.teacher, "cache_key": cache.spec.key(),
                "num_images": len(files), "num_val": len(val_idx)}
        return TaskData(self._pairs(cache, train_idx), self._pairs(cache, val_idx), self._collate_fn(), meta)

    def _pairs(self, cache: EmbeddingCache, indices: list[int]) -> Dataset:
        return EmbeddingPairs(cache, indices)

    def _collate_fn(self):
        return _collate

    def build_model(self, cfg: SamDistillConfig, data: TaskData) -> nn.Module:
        model = RepViTSamEncoder(cfg.sam_config(), drop_path_rate=cfg.drop_path)
        if cfg.init and not self.resuming:
            res = model.load_trunk(cfg.init, strict=True)
            _log.info("student trunk initialised from %s (%s format)", cfg.init, res.source_format)
        return model

    def train_step(self, model: nn.Module, batch: Any, device: torch.device) -> tuple[torch.Tensor, int]:
        x, target = batch
        x, target = x.to(device, non_blocking=True), target.to(device, non_blocking=True)
        return F.mse_loss(model(x).float(), target.float()), x.shape[0]

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader, device: torch.device) -> dict[str, Any]:
        was_training = model.training
        model.eval()
        sums = torch.zeros(3, dtype=torch.float64)  # squared error, elements, images
        use_amp = bool(self.cfg and self.cfg.amp)
        dtype = amp_dtype(self.cfg.amp_dtype if self.cfg else None)
        for x, target in loader:
            with autocast_context(device, use_amp, dtype):
                out = model(x.to(device))
            err = (out.float() - target.to(device).float()).pow(2)
            sums += torch.tensor([err.sum().item(), err.numel(), x.shape[0]], dtype=torch.float64)
        model.train(was_training)
        sums = all_reduce_sum(sums)
        mse = sums[0].item() / max(sums[1].item(), 1.0)
        return {"mse": mse, "neg_mse": -mse, "loss": mse, "images": int(sums[2].item())}

    def describe(self, metrics: dict[str, Any]) -> str:
        return f"val embedding MSE {metrics['mse']:.5f}" if "mse" in metrics else ""


def _is_main() -> bool:
    return not (torch.distributed.is_available() and torch.distributed.is_initialized()) or \
        torch.distributed.get_rank() == 0


def train(cfg: SamDistillConfig, teacher: nn.Module | None = None) -> dict[str, Any]:
    """Run a distillation (``cfg.phase``; ``repvit sam distill``; also named ``distill``) and return the engine's
    summary plus ``sam_checkpoint`` (the whole RepViT-SAM in our format: after phase 1 the student's best encoder
    with the teacher checkpoint's prompt encoder and mask decoder, None without a teacher checkpoint; after phase 2
    the student's whole best SAM),
    ``teacher_shards_computed``, ``cache_dir`` and ``phase``. With ``phase="both"``, also ``phases``: phase 1's
    summary (without its model) under ``encoder``.

    Args:
        teacher: a module instead of the teacher checkpoint (tests, custom teachers): phase 1 takes an image
            encoder or a whole SAM (its ``image_encoder`` is used); phase 2 needs a whole SAM.
    """
    if cfg.phase == "both":
        return _distill_both(cfg, teacher)
    from repvit.engine.run import run_task

    if cfg.phase == "prompt":
        from .prompt_distill import SamPromptDistillTask

        if teacher is not None and not hasattr(teacher, "mask_decoder"):
            raise TypeError("phase 2 (prompt) needs the whole teacher SAM (image_encoder, prompt_encoder, "
                            "mask_decoder), not only its image encoder.")
        task: SamDistillTask = SamPromptDistillTask(teacher, cfg.prompt_masks)
    else:
        task = SamDistillTask(getattr(teacher, "image_encoder", teacher))
    res = run_task(task, cfg)
    res["phase"] = cfg.phase
    res["teacher_shards_computed"] = task.shards_computed
    res["cache_dir"] = str(task.cache.dir) if task.cache else None
    res["sam_checkpoint"] = None
    if _is_main() and not res["interrupted"] and Path(res["best_checkpoint"]).is_file():
        from .build import build_repvit_sam
        from .checkpoint import save_repvit_sam

        out = Path(cfg.output_dir) / "repvit_sam.safetensors"
        if cfg.phase == "prompt":  # the checkpoint holds the whole SAM
            sam = build_repvit_sam(res["best_checkpoint"])
            res["sam_checkpoint"] = str(save_repvit_sam(sam, out, {"teacher": str(cfg.teacher), "phase": "prompt"}))
        elif cfg.teacher_checkpoint:
            sam = build_repvit_sam(res["best_checkpoint"], decoder_checkpoint=cfg.teacher_checkpoint)
            res["sam_checkpoint"] = str(save_repvit_sam(sam, out, {"teacher": str(cfg.teacher)}))
    return res


distill = train  # the older name of the entry point


def phase_configs(cfg: SamDistillConfig) -> tuple[SamDistillConfig, SamDistillConfig]:
    """The two runs of ``phase="both"``: phase 1 into ``OUT/encoder``; phase 2 into ``OUT/prompt``, initialised from
    phase 1's ``best.pt``, with ``prompt_epochs`` / ``prompt_iters`` / ``prompt_lr`` where set."""
    if cfg.resume not in (None, "auto"):
        raise ValueError("--phase both resumes with --resume auto (each phase from its own folder), not a path.")
    out = Path(cfg.output_dir)
    first = cfg.replace(phase="encoder", output_dir=str(out / "encoder"))
    kw: dict[str, Any] = {"phase": "prompt", "output_dir": str(out / "prompt"),
                          "init": str(out / "encoder" / "best.pt")}
    if cfg.prompt_epochs is not None:
        kw.update(epochs=cfg.prompt_epochs, iters=None)
    if cfg.prompt_iters is not None:
        kw["iters"] = cfg.prompt_iters
    if cfg.prompt_lr is not None:
        kw["lr"] = cfg.prompt_lr
    return first, cfg.replace(**kw)


def _distill_both(cfg: SamDistillConfig, teacher: nn.Module | None) -> dict[str, Any]:
    from repvit.engine.distributed import cleanup_distributed, init_distributed

    first, second = phase_configs(cfg)
    already = torch.distributed.is_available() and torch.distributed.is_initialized()
    init_distributed(cfg.device)  # one process group for both phases
    try:
        res1 = train(first, teacher)
        if res1["interrupted"]:
            return res1
        res2 = train(second, teacher)
    finally:
        if not already:
            cleanup_distributed()
    res2["phases"] = {"encoder": {k: v for k, v in res1.items() if k != "model"}}
    return res2
