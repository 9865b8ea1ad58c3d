"""From what a user passes (a published name, a path or a URL) to a local file: the one resolver every loader uses.

One rule tells a path from a name (:func:`is_path`): an existing file or folder, a ``PathLike``, or a string with a
path separator or a checkpoint suffix (:data:`CHECKPOINT_SUFFIXES`). A path must exist; anything else is an
``http(s)://`` URL (downloaded once into torch.hub's cache) or a name from ``repvit weights list``. :func:`lookup`
says which without downloading, so a loader can check the registry entry (its kind, model and layout) first;
:func:`resolve_weights` gives the local file.
"""

from __future__ import annotations

import os
from pathlib import Path

from repvit.io import CheckpointError
from repvit.tasks import weights_task

from .download import download_weights
from .registry import UnknownWeightsError, WeightsEntry, get_weights

__all__ = ["CHECKPOINT_SUFFIXES", "WeightsFileNotFoundError", "WrongWeightsError", "is_path", "is_url",
           "url_weights", "lookup", "resolve_weights"]

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".pth.tar", ".tar", ".bin", ".ckpt", ".safetensors")


class WeightsFileNotFoundError(CheckpointError, FileNotFoundError):
    """A weights path that does not exist (a :class:`CheckpointError`, a ``FileNotFoundError`` and a ``ValueError``)."""


class WrongWeightsError(ValueError):
    """Published weights of another kind than the one asked for (a detector's where a classifier's was expected)."""


def is_url(source: object) -> bool:
    """Whether ``source`` is an ``http://`` or ``https://`` URL."""
    return isinstance(source, str) and source.lower().startswith(("http://", "https://"))


def is_path(source: object) -> bool:
    """Whether ``source`` means a local file rather than a published name: a ``PathLike``, an existing file or
    folder, or a string with a path separator or ending in one of :data:`CHECKPOINT_SUFFIXES`."""
    if isinstance(source, os.PathLike):
        return True
    if not isinstance(source, str) or is_url(source):
        return False
    return (os.path.exists(source) or "/" in source or os.sep in source
            or source.lower().endswith(CHECKPOINT_SUFFIXES))


def url_weights(url: str, model: str = "") -> WeightsEntry:
    """A registry entry for weights at ``url`` (downloaded into torch.hub's cache under the URL's file name); its
    kind and layout are read from the file."""
    filename = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    if not filename:
        raise ValueError(f"{url} names no file; pass the URL of the weights file itself.")
    return WeightsEntry(filename.split(".", 1)[0], model, "url", None, None, filename=filename, url=url)


def _check_kind(entry: WeightsEntry, kind: str) -> None:
    if entry.task is None or entry.task == kind:
        return
    loader = weights_task(entry.task).loader
    raise WrongWeightsError(f"weights {entry.name!r} are {entry.task} weights ({entry.layout} layout), not {kind} "
                            f"weights; load them with {loader}.")


def lookup(source: str | os.PathLike, *, kind: str | None = None) -> Path | WeightsEntry:
    """What ``source`` names, without downloading: an existing file, or the entry of a published name or a URL.

    Args:
        source: a path, an ``http(s)://`` URL, or a name from ``repvit weights list`` (a model name gives its
            default weights).
        kind: the kind of weights expected (``classify``, ``segment``, ``detect``, ``sam``); published weights of
            another kind are refused. Files are not checked: their loaders read them.

    Raises:
        WeightsFileNotFoundError: a path (see :func:`is_path`) that does not exist.
        UnknownWeightsError: neither a path nor a URL nor a registered name (the message lists the closest names).
        WrongWeightsError: published weights of another kind than ``kind``.
        CheckpointError: a folder.
    """
    if is_path(source):
        path = Path(source)
        if path.is_dir():
            raise CheckpointError(f"{path} is a directory; pass the weights file inside it (e.g. {path}/best.pt) or "
                                  "a weights name.")
        if not path.is_file():
            raise WeightsFileNotFoundError(f"weights file {path} does not exist; check the path, or pass a name from "
                                           "`repvit weights list`.")
        return path
    if not isinstance(source, str):
        raise TypeError(f"weights must be a name, a path or a URL, got {type(source).__name__}.")
    if is_url(source):
        entry = url_weights(source)
    else:
        try:
            entry = get_weights(source)
        except UnknownWeightsError as err:
            raise UnknownWeightsError(f"{source!r} is neither an existing file nor a published weights name: "
                                      f"{err}") from None
    if kind is not None:
        _check_kind(entry, kind)
    return entry


def resolve_weights(source: str | os.PathLike | WeightsEntry, *, kind: str | None = None) -> Path:
    """A local weights file: an existing path as it is; a published name or a URL downloaded once (or found in the
    cache). See :func:`lookup` for ``source`` and ``kind``.

    Raises:
        WeightsFileNotFoundError, UnknownWeightsError, WrongWeightsError: see :func:`lookup`.
        WeightsError: offline and not cached, or the download failed.
        CheckpointError: the file is not a complete checkpoint.
    """
    found = source if isinstance(source, WeightsEntry) else lookup(source, kind=kind)
    if isinstance(found, WeightsEntry):
        if kind is not None:
            _check_kind(found, kind)
        return download_weights(found)
    return found
