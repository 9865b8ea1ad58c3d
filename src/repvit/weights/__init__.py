"""Published RepViT weights by name: the registry, the downloader and the cache (see ``docs/weights.md``)."""

from .download import (
    WeightsDownloadError,
    WeightsError,
    cached_path,
    check_weights_file,
    download_weights,
    is_offline,
    manual_path,
    resolve_weights,
    weights_url,
)
from .registry import (
    DEFAULT_TAGS,
    GITHUB_RELEASE,
    UnknownWeightsError,
    WeightsEntry,
    default_weights,
    get_weights,
    list_weights,
)

__all__ = [
    "WeightsDownloadError",
    "WeightsError",
    "cached_path",
    "check_weights_file",
    "download_weights",
    "is_offline",
    "manual_path",
    "resolve_weights",
    "weights_url",
    "DEFAULT_TAGS",
    "GITHUB_RELEASE",
    "UnknownWeightsError",
    "WeightsEntry",
    "default_weights",
    "get_weights",
    "list_weights",
]
