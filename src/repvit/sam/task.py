"""SAM distillation's task and entry point: :class:`SamDistillTask` (phase 1, the student encoder learns the
teacher's image embeddings, MSE) on the shared engine, and :func:`train`, which runs ``cfg.phase`` (``encoder``,
``prompt``: :class:`~repvit.sam.prompt_distill.SamPromptDistillTask`, or ``both``, one after the other)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset

from repvit.engine.amp import amp_dtype, autocast_context
from repvit.engine.distributed import all_reduce_sum, barrier
from repvit.engine.task import Task, TaskData

from .config import SamDistillConfig
from .data import EmbeddingPairs, collate_embedding_pairs, split_indices
from .embed_cache import EmbeddingCache, default_cache_root, file_sha256, list_images, module_sha256
from .encoder import RepViTSamEncoder
from .model import load_teacher_encoder

__all__ = ["SamDistillTask", "train", "distill", "phase_configs"]

_log = logging.getLogger("repvit.sam")


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
        from .checkpoint import save_repvit_sam
        from .model import build_repvit_sam

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
