"""Old path of checkpoint evaluation and prediction: they live in :mod:`.evaluate` (:func:`evaluate_checkpoint`)
and :mod:`.predict` (:func:`predict_images`, :func:`palette`) now."""

from .evaluate import evaluate_checkpoint
from .predict import palette, predict_images

__all__ = ["evaluate_checkpoint", "predict_images", "palette"]
