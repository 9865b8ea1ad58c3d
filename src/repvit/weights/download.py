"""Finding, downloading and caching the published weights.

* Hugging Face files go through ``huggingface_hub.hf_hub_download`` into its own cache; ``HF_ENDPOINT`` (a mirror),
  ``HF_HOME`` / ``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` apply (read when the download is asked for).
* Weights with a second host (``edgetam``: Hugging Face, then the authors' GitHub repository) are fetched from it
  when the first host fails; that copy goes where a hand-downloaded one goes (:func:`manual_path`).
* GitHub release files, and weights at any other URL, go into torch.hub's cache (``torch.hub.get_dir()/checkpoints``;
  ``TORCH_HOME`` moves it); ``REPVIT_WEIGHTS_MIRROR`` replaces ``https://github.com/`` in their URLs.
* A hand-downloaded copy put at :func:`manual_path` (the torch.hub checkpoints folder) is used for either host.
* Downloads go to a temporary file that is renamed into place only when complete (huggingface_hub does the same in
  its cache), so an interrupted or cut transfer leaves nothing loadable and the next try starts clean.
* Offline (``HF_HUB_OFFLINE=1`` or ``REPVIT_OFFLINE=1``) cached weights are used with no network call; uncached
  ones fail with one line naming the weights, the URL and where to put a hand-downloaded copy.
"""

from __future__ import annotations

import os
import struct
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from repvit.io import CheckpointError, atomic_write

from .registry import WeightsEntry, get_weights

__all__ = [
    "WeightsError",
    "WeightsDownloadError",
    "download_weights",
    "cached_path",
    "manual_path",
    "weights_url",
    "second_url",
    "is_offline",
    "check_weights_file",
]

_GITHUB = "https://github.com/"
_TRUE = {"1", "true", "yes", "on"}


class WeightsError(RuntimeError):
    """Published weights that cannot be had (offline and not cached, a failed download)."""


class WeightsDownloadError(WeightsError):
    """A download that failed; nothing was left in the cache."""


def is_offline() -> bool:
    """Whether downloads are off: ``REPVIT_OFFLINE=1`` or ``HF_HUB_OFFLINE=1`` (read now, or at huggingface_hub's
    import)."""
    if any(os.environ.get(k, "").strip().lower() in _TRUE for k in ("REPVIT_OFFLINE", "HF_HUB_OFFLINE")):
        return True
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - timm depends on huggingface_hub
        return False
    return bool(constants.HF_HUB_OFFLINE)


def _hub_checkpoints() -> Path:
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def _hf_endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT", "").rstrip("/") or None


def _hf_cache_dir() -> str | None:
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return None  # huggingface_hub's default


def _entry(name: str | WeightsEntry) -> WeightsEntry:
    return name if isinstance(name, WeightsEntry) else get_weights(name)


def weights_url(name: str | WeightsEntry) -> str:
    """The URL the weights are downloaded from (after ``REPVIT_WEIGHTS_MIRROR`` / ``HF_ENDPOINT``)."""
    e = _entry(name)
    if e.host != "huggingface":
        assert e.url is not None
        return _mirrored(e.url)
    from huggingface_hub import hf_hub_url

    return hf_hub_url(e.repo_id, e.filename, repo_type=e.repo_type, endpoint=_hf_endpoint())


def second_url(name: str | WeightsEntry) -> str | None:
    """The URL of the weights' second host (after ``REPVIT_WEIGHTS_MIRROR``), or None when they have one host."""
    e = _entry(name)
    return None if e.second_url is None else _mirrored(e.second_url)


def _mirrored(url: str) -> str:
    """``url`` with ``https://github.com/`` replaced by ``REPVIT_WEIGHTS_MIRROR`` when that is set."""
    mirror = os.environ.get("REPVIT_WEIGHTS_MIRROR", "").strip()
    if mirror and url.startswith(_GITHUB):
        return mirror.rstrip("/") + "/" + url[len(_GITHUB):]
    return url


def manual_path(name: str | WeightsEntry) -> Path:
    """Where a hand-downloaded copy of the weights goes (it is used as it is, for either host)."""
    return _hub_checkpoints() / _entry(name).local_filename


def cached_path(name: str | WeightsEntry) -> Path | None:
    """The local copy of the weights (hand-downloaded, or in the torch.hub / Hugging Face cache), or ``None``."""
    e = _entry(name)
    manual = manual_path(e)
    if manual.is_file():
        return manual
    if e.host == "huggingface":
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(e.repo_id, e.filename, cache_dir=_hf_cache_dir(), repo_type=e.repo_type)
        if isinstance(found, str) and os.path.isfile(found):
            return Path(found)
    return None


def check_weights_file(path: str | os.PathLike, what: str = "") -> Path:
    """Refuse a file that cannot be a complete checkpoint (a truncated zip, an HTML page, an empty file).

    A cheap look at the container only (PyTorch zip, legacy pickle or safetensors header); the loaders check the
    layout and shapes.

    Raises:
        CheckpointError: naming the file, with the fix.
    """
    path = Path(path)
    fix = (f" Delete it and download again (repvit weights download {what} --force)." if what
           else " Download or export it again.")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(9)
    ok = False
    if head[:4] == b"PK\x03\x04":
        ok = zipfile.is_zipfile(path)  # also finds a truncated zip (no central directory)
    elif head[:1] == b"\x80":  # torch.save's legacy (non-zip) pickle format
        ok = size > 64
    elif len(head) == 9:  # safetensors: u64 little-endian header length, then a JSON object
        (n,) = struct.unpack("<Q", head[:8])
        ok = head[8:9] == b"{" and 8 + n <= size
    if not ok:
        raise CheckpointError(f"{path} is not a complete checkpoint ({size} bytes; not a PyTorch or safetensors "
                              f"file, or cut short).{fix}")
    return path


def _not_cached(e: WeightsEntry) -> WeightsError:
    also = f" (or {second_url(e)})" if e.second_url else ""
    return WeightsError(
        f"weights {e.name!r} are not cached and downloads are off (HF_HUB_OFFLINE/REPVIT_OFFLINE): download "
        f"{weights_url(e)}{also} and save it as {manual_path(e)}, or go online.")


def _http_download(url: str, dst: Path, progress: bool) -> Path:
    """Download ``url`` to ``dst`` through a temporary file beside it (:func:`repvit.io.atomic_write`), renamed only
    when complete and a checkpoint."""
    from tqdm.auto import tqdm

    def fetch(tmp: str) -> None:
        req = urllib.request.Request(url, headers={"User-Agent": "repvit-pytorch"})
        with open(tmp, "wb") as out, urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310 - https/mirror
            total = resp.headers.get("Content-Length")
            total = int(total) if total is not None else None
            got = 0
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=dst.name,
                      disable=not progress) as bar:
                while chunk := resp.read(1 << 20):
                    out.write(chunk)
                    got += len(chunk)
                    bar.update(len(chunk))
        if total is not None and got != total:
            raise WeightsDownloadError(f"could not download {url}: the transfer was cut short ({got} of {total} "
                                       "bytes); nothing was saved, try again.")
        check_weights_file(tmp)

    return atomic_write(dst, fetch, suffix=".part")


def download_weights(name: str | WeightsEntry, progress: bool = True, *, force: bool = False) -> Path:
    """Download the weights (unless a local copy exists) and return the local file.

    Args:
        name: a weights name (``repvit weights list``) or a model name (its default weights).
        progress: show a progress bar on stderr.
        force: download again even when a copy is cached (replaces it).

    Raises:
        UnknownWeightsError: an unknown name.
        WeightsError: offline and not cached, or the download failed (nothing is left behind).
        CheckpointError: the file is not a complete checkpoint.
    """
    e = _entry(name)
    if not force:
        found = cached_path(e)
        if found is not None:
            return check_weights_file(found, e.name)
    if is_offline():
        raise _not_cached(e)
    url = weights_url(e)
    if e.host != "huggingface":
        return _url_download(e, url, progress)
    try:
        return check_weights_file(_hf_download(e, url, progress, force), e.name)
    except WeightsDownloadError as first:
        if e.second_url is None:
            raise
        try:
            return _url_download(e, second_url(e), progress)
        except WeightsDownloadError as second:
            raise WeightsDownloadError(f"{first} The second host failed too: {second}") from None


def _url_download(e: WeightsEntry, url: str, progress: bool) -> Path:
    """Download ``url`` into :func:`manual_path` (torch.hub's checkpoints folder)."""
    try:
        return _http_download(url, manual_path(e), progress)
    except (urllib.error.URLError, OSError) as err:
        raise WeightsDownloadError(
            f"could not download weights {e.name!r} from {url}: {err}. Nothing was saved; try again, set "
            f"REPVIT_WEIGHTS_MIRROR, or download it by hand to {manual_path(e)}.") from None
    except CheckpointError as err:
        raise WeightsDownloadError(f"{url} did not give a checkpoint for weights {e.name!r} ({err}); nothing "
                                   "was saved.") from None


def _hf_download(e: WeightsEntry, url: str, progress: bool, force: bool) -> Path:
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    except ImportError as err:  # pragma: no cover - timm depends on it
        raise ImportError("downloading from Hugging Face needs huggingface_hub: pip install huggingface_hub") from err
    kwargs = {}
    if not progress:
        from tqdm.auto import tqdm

        class _Quiet(tqdm):
            def __init__(self, *a, **kw):
                kw["disable"] = True
                super().__init__(*a, **kw)

        kwargs["tqdm_class"] = _Quiet
    try:
        return Path(hf_hub_download(e.repo_id, e.filename, repo_type=e.repo_type, cache_dir=_hf_cache_dir(),
                                    endpoint=_hf_endpoint(), force_download=force, library_name="repvit-pytorch",
                                    **kwargs))
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as err:
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise WeightsDownloadError(
            f"could not download weights {e.name!r} from {url}: {detail}. Nothing was saved; try again, set "
            f"HF_ENDPOINT to a mirror, or download it by hand to {manual_path(e)}.") from None
