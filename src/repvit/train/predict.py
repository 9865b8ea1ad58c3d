"""Compatibility path: classification's prediction lives in :mod:`repvit.classification.predict`, ``list_images``
in :mod:`repvit.data.files`."""

from repvit.classification.predict import class_names_for, predict_images
from repvit.data.files import list_images

__all__ = ["list_images", "predict_images", "class_names_for"]
