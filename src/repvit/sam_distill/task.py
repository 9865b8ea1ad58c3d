"""SAM distillation's tasks and entry point, on the shared engine: :class:`SamDistillTask` (phase 1, the student
encoder learns the teacher's image embeddings, MSE), :class:`SamPromptDistillTask` (phase 2, EdgeSAM's
prompt-in-the-loop distillation of the student's whole SAM), and :func:`train`, which runs ``cfg.phase``
(``encoder``, ``prompt`` or ``both``, one after the other)."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset

from repvit.engine.amp import amp_dtype, autocast_context
from repvit.engine.distributed import barrier
from repvit.engine.task import Task, TaskData
from repvit.sam.checkpoint import read_sam_decoder
from repvit.sam.encoder import RepViTSamEncoder
from repvit.sam.model import build_sam_from_encoder

from .config import LoopSettings, SamDistillConfig
from .data import (
    EmbeddingPairs,
    PromptPairs,
    collate_embedding_pairs,
    collate_prompt_pairs,
    prompt_masks_to,
    split_indices,
)
from .embed_cache import EmbeddingCache, default_cache_root, file_sha256, module_sha256, training_images
from .evaluate import evaluate_embeddings, evaluate_prompts
from .mask_annotations import PROMPT_MASKS, MaskAnnotations, find_mask_annotations
from .model import PromptDistillSam, TeacherHead, load_teacher_encoder, load_teacher_sam, read_encoder_state

__all__ = ["SamDistillTask", "SamPromptDistillTask", "train", "phase_configs"]

_log = logging.getLogger(__name__)


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
        files = training_images(cfg.data, cfg.max_images)
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
        return collate_embedding_pairs

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

    def evaluate(self, model: nn.Module, loader, device: torch.device) -> dict[str, Any]:
        return evaluate_embeddings(model, loader, device, self.cfg)

    def describe(self, metrics: dict[str, Any]) -> str:
        return f"val embedding MSE {metrics['mse']:.5f}" if "mse" in metrics else ""


class SamPromptDistillTask(SamDistillTask):
    """EdgeSAM's phase 2 on the shared engine (see :mod:`repvit.sam_distill`).

    Args:
        teacher: a whole SAM module (``image_encoder``, ``prompt_encoder``, ``mask_decoder``; e.g. a
            ``segment_anything`` ``Sam`` or :func:`~repvit.sam.build_repvit_sam`'s) instead of ``cfg.teacher`` /
            ``cfg.teacher_checkpoint``; its image encoder's weight hash keys the embedding cache, as in phase 1.
        prompt_masks: where prompts come from: ``"auto"`` (annotated masks when the image folder has COCO or SA-1B
            annotations, else the teacher's), ``"teacher"`` or ``"annotations"`` (an error without them).
    """

    name: ClassVar[str] = "sam-prompt-distill"
    best_metric: ClassVar[str] = "neg_mask_loss"
    default_eval_batch_size: ClassVar[int] = 2
    plot_label: ClassVar[str] = "- mask loss vs teacher (held out)"

    def __init__(self, teacher: nn.Module | None = None, prompt_masks: str = "auto"):
        if prompt_masks not in PROMPT_MASKS:
            raise ValueError(f"prompt_masks must be one of {', '.join(PROMPT_MASKS)}, got {prompt_masks!r}.")
        super().__init__(teacher.image_encoder if teacher is not None else None)
        self.teacher_sam = teacher
        self.prompt_masks = prompt_masks
        self.annotations: MaskAnnotations | None = None
        self.head: TeacherHead | None = None
        self.settings: LoopSettings | None = None

    def _find_annotations(self, cfg: SamDistillConfig) -> MaskAnnotations | None:
        if self.prompt_masks == "teacher":
            return None
        ann = find_mask_annotations(cfg.data, training_images(cfg.data, cfg.max_images))
        if ann is None and self.prompt_masks == "annotations":
            raise FileNotFoundError(
                f"prompt_masks='annotations' but {cfg.data} has no annotations: COCO instances*.json in the folder "
                "or its annotations/ folder, or SA-1B's NAME.json next to each NAME.jpg.")
        return ann

    def _pairs(self, cache: EmbeddingCache, indices: list[int]) -> Dataset:
        ann = self.annotations
        if ann is not None:
            indices = [i for i in indices if ann.has_masks(cache.files[i])]
        return PromptPairs(cache, indices, ann)

    def build_data(self, cfg: SamDistillConfig, info):
        self.annotations = self._find_annotations(cfg)  # before the teacher pass: bad annotations fail at once
        data = super().build_data(cfg, info)
        ann, root = self.annotations, self.cache.image_root
        if ann is None:
            data.meta["prompt_masks"] = {"source": "teacher"}
            if info.is_main:
                _log.info("phase 2 prompts: from the teacher's masks (%s)", "prompt_masks='teacher'"
                          if self.prompt_masks == "teacher" else f"no COCO instances*.json or SA-1B per-image JSON "
                          f"in {root}")
            return data
        data.meta["prompt_masks"] = ann.describe()
        data.meta["num_val"] = len(data.val)
        if info.is_main:
            where = ", ".join(str(s) for s in ann.sources) if ann.sources else "NAME.json next to each image"
            _log.info("phase 2 prompts: from the annotated masks (%s layout: %s) of %d of %d images", ann.layout,
                      where, len(self.cache.files) - len(ann.missing), len(self.cache.files))
            if ann.missing:
                _log.warning("phase 2 prompts: %d images have no annotated masks and are left out (%s%s)",
                             len(ann.missing), ", ".join(ann.missing[:5]), ", ..." if len(ann.missing) > 5 else "")
            if any(ann.left_out.values()):
                _log.info("phase 2 prompts: annotations giving no prompt: %s",
                          ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in ann.left_out.items() if v))
        if not len(data.train) or not len(data.val):
            raise ValueError(f"only {len(self.cache.files) - len(ann.missing)} of {len(self.cache.files)} images "
                             f"under {root} have annotated masks, too few for a training and a held-out image "
                             "(val_fraction); add annotations or images.")
        return data

    def _collate_fn(self):
        return collate_prompt_pairs

    def _teacher_decoder_state(self, cfg: SamDistillConfig) -> dict[str, torch.Tensor]:
        if self.teacher_sam is not None:
            return {f"{part}.{k}": v for part in ("prompt_encoder", "mask_decoder")
                    for k, v in getattr(self.teacher_sam, part).state_dict().items()}
        if not cfg.teacher_checkpoint:
            raise ValueError("prompt distillation needs the teacher's weights: --teacher-checkpoint sam_vit_h.pth.")
        if not Path(cfg.teacher_checkpoint).is_file():
            load_teacher_sam(cfg.teacher, cfg.teacher_checkpoint)  # raises the clear missing-file error
        return read_sam_decoder(cfg.teacher_checkpoint)

    def build_model(self, cfg: SamDistillConfig, data) -> nn.Module:
        sam = build_sam_from_encoder(RepViTSamEncoder(cfg.sam_config(), drop_path_rate=cfg.drop_path))
        model = PromptDistillSam(sam.image_encoder, sam.prompt_encoder, sam.mask_decoder)
        dec = self._teacher_decoder_state(cfg)
        head = TeacherHead(copy.deepcopy(model.prompt_encoder), copy.deepcopy(model.mask_decoder))
        head.load_state_dict(dec, strict=True)
        self.head = head.requires_grad_(False).eval()
        if not self.resuming:  # EdgeSAM: the student's prompt encoder and mask decoder start as the teacher's
            model.load_state_dict({**{f"image_encoder.{k}": v for k, v in model.image_encoder.state_dict().items()},
                                   **dec}, strict=True)
            if cfg.init:
                enc = read_encoder_state(cfg.init)
                if enc is not None:
                    model.image_encoder.load_state_dict(enc, strict=True)
                    _log.info("student encoder initialised from %s", cfg.init)
                else:
                    res = model.image_encoder.load_trunk(cfg.init, strict=True)
                    _log.info("student trunk initialised from %s (%s format)", cfg.init, res.source_format)
        model.prompt_encoder.requires_grad_(False)
        model.mask_decoder.iou_prediction_head.requires_grad_(False)  # no loss reaches the IoU head
        if not cfg.train_decoder:
            model.mask_decoder.requires_grad_(False)
        self.settings = LoopSettings.from_config(cfg)
        return model

    def prepare(self, model: nn.Module, data, device: torch.device) -> None:
        self.head.to(device)

    def train_step(self, model: nn.Module, batch: Any, device: torch.device) -> tuple[torch.Tensor, int]:
        x, emb, hw, _, masks = batch
        kinds = self.settings.prompt_types
        kind = kinds[0] if len(kinds) == 1 else kinds[int(torch.randint(len(kinds), ()).item())]
        loss, _ = model(x.to(device, non_blocking=True), emb.to(device, non_blocking=True), hw.to(device),
                        self.head, self.settings, kind, prompt_masks_to(masks, device))
        return loss, x.shape[0]

    def evaluate(self, model: nn.Module, loader, device: torch.device) -> dict[str, Any]:
        return evaluate_prompts(model, self.head, loader, device, self.cfg)

    def describe(self, metrics: dict[str, Any]) -> str:
        if "mask_loss" not in metrics:
            return ""
        return f"val mask loss {metrics['mask_loss']:.4f}  mIoU vs teacher {metrics['miou']:.3f}"


def _is_main() -> bool:
    return not (torch.distributed.is_available() and torch.distributed.is_initialized()) or \
        torch.distributed.get_rank() == 0


def train(cfg: SamDistillConfig, teacher: nn.Module | None = None) -> dict[str, Any]:
    """Run a distillation (``cfg.phase``; ``repvit sam distill``) and return the engine's
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
        return _train_both(cfg, teacher)
    from repvit.engine.run import run_task

    if cfg.phase == "prompt":
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
        from repvit.sam import build_repvit_sam, save_repvit_sam

        out = Path(cfg.output_dir) / "repvit_sam.safetensors"
        if cfg.phase == "prompt":  # the checkpoint holds the whole SAM
            sam = build_repvit_sam(res["best_checkpoint"])
            res["sam_checkpoint"] = str(save_repvit_sam(sam, out, {"teacher": str(cfg.teacher), "phase": "prompt"}))
        elif cfg.teacher_checkpoint:
            sam = build_repvit_sam(res["best_checkpoint"], decoder_checkpoint=cfg.teacher_checkpoint)
            res["sam_checkpoint"] = str(save_repvit_sam(sam, out, {"teacher": str(cfg.teacher)}))
    return res



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


def _train_both(cfg: SamDistillConfig, teacher: nn.Module | None) -> dict[str, Any]:
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
