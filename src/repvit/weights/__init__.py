"""Published RepViT weights by name: the registry, the downloader and the cache, and the one resolver from a name, a
path or a URL to a local file (see ``docs/weights.md``)."""

from .download import (
    WeightsDownloadError,
    WeightsError,
    cached_path,
    check_weights_file,
    download_weights,
    is_offline,
    manual_path,
    second_url,
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
from .resolve import (
    CHECKPOINT_SUFFIXES,
    WeightsFileNotFoundError,
    WrongWeightsError,
    is_path,
    is_url,
    lookup,
    resolve_weights,
    url_weights,
)

__all__ = [
    "WeightsDownloadError",
    "WeightsError",
    "cached_path",
    "check_weights_file",
    "download_weights",
    "is_offline",
    "manual_path",
    "second_url",
    "weights_url",
    "DEFAULT_TAGS",
    "GITHUB_RELEASE",
    "UnknownWeightsError",
    "WeightsEntry",
    "default_weights",
    "get_weights",
    "list_weights",
    "CHECKPOINT_SUFFIXES",
    "WeightsFileNotFoundError",
    "WrongWeightsError",
    "is_path",
    "is_url",
    "lookup",
    "resolve_weights",
    "url_weights",
]
