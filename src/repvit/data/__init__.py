"""Data: the built-in digits set, ImageFolder trees, timm/torchvision transforms and bundled class names."""

from .class_names import imagenet_class_names
from .datasets import DataBundle, build_datasets, build_eval_dataset, is_digits
from .digits import DIGITS_CLASSES, DigitsDataset, digits_transform, load_digits_split
from .files import IMAGE_EXTENSIONS, list_images
from .folder import BadSample, RobustImageFolder, check_image_folder, skip_bad_collate
from .transforms import DEFAULT_CROP_PCT, digits_train_transform, eval_transform, resize_size, train_transform

__all__ = [
    "imagenet_class_names",
    "DataBundle",
    "build_datasets",
    "build_eval_dataset",
    "is_digits",
    "DIGITS_CLASSES",
    "DigitsDataset",
    "digits_transform",
    "load_digits_split",
    "IMAGE_EXTENSIONS",
    "list_images",
    "BadSample",
    "RobustImageFolder",
    "check_image_folder",
    "skip_bad_collate",
    "DEFAULT_CROP_PCT",
    "digits_train_transform",
    "eval_transform",
    "resize_size",
    "train_transform",
]
