"""Classification's model: :func:`build_model`, the student a run trains (``cfg.model`` with the data's class count,
a distillation head when distilling, optional fine-tune weights from a file or a published name)."""

from __future__ import annotations

import logging

import torch.nn as nn

from .config import TrainConfig

__all__ = ["build_model"]

_log = logging.getLogger(__name__)


def _finetune_file(finetune: str) -> str:
    """A fine-tuning source: a file as it is, or published weights by name (downloaded once, then cached)."""
    import os

    if os.path.exists(finetune):
        return finetune
    from repvit.weights import UnknownWeightsError, download_weights, get_weights

    try:
        entry = get_weights(finetune)
    except UnknownWeightsError:
        return finetune  # the loader says the file does not exist
    return str(download_weights(entry))


def build_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    """The student: ``cfg.model`` with ``num_classes``, a distillation head when distilling, optional fine-tune
    weights (any checkpoint format; a head with another class count is dropped and re-initialised)."""
    from repvit.models import create_model
    from repvit.models.checkpoint import load_checkpoint

    model = create_model(cfg.model, num_classes=num_classes, in_chans=cfg.in_chans,
                                distillation=cfg.distillation != "none", drop_rate=cfg.drop_rate,
                                drop_path_rate=cfg.drop_path)
    if cfg.finetune:
        res = load_checkpoint(model, _finetune_file(cfg.finetune), strict=False)
        body_missing = [k for k in res.missing if not k.startswith("head.")]
        if body_missing or res.unexpected:
            raise ValueError(f"--set finetune={cfg.finetune} does not fit {cfg.model}: missing {body_missing[:5]}, "
                             f"unexpected {res.unexpected[:5]}. Pick the model the checkpoint was trained as.")
        _log.info("fine-tuning from %s (%s format%s)", cfg.finetune, res.source_format,
                  ", new head" if res.dropped else "")
    return model
