"""The teacher-embedding cache of SAM distillation: computed once, sharded, resumable, reused across runs.

Decoupled distillation only needs the teacher's image embedding of every training image, so a ViT-H teacher runs
once per image set instead of once per epoch. The cache lives in ``ROOT/KEY/``, where ``KEY`` hashes everything the
embeddings depend on: the teacher (name and the SHA-256 of its checkpoint, or of a module's weights), the image list
(relative paths, sizes and modification times) and the preprocessing (``img_size``, SAM's mean/std, storage dtype).
A run with the same teacher, images and preprocessing finds the same directory and reads it without recomputing.

Layout: ``spec.json`` (what the key hashes) and ``shard_NNNNN.safetensors`` holding ``embeddings`` of the images
``[N * shard_size, (N + 1) * shard_size)`` of the sorted list. A shard is written to a temporary file and renamed
into place (:func:`repvit.io.atomic_write`), so a killed pass leaves only complete shards; the next
pass skips them and continues with the missing ones. Under torchrun rank ``r`` computes the shards ``N % world == r``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from repvit.data.files import IMAGE_EXTENSIONS
from repvit.io import atomic_write
from repvit.sam.preprocess import load_rgb, preprocess_image, sam_pixel_stats

__all__ = ["CacheSpec", "EmbeddingCache", "training_images", "file_sha256", "module_sha256", "default_cache_root"]

_log = logging.getLogger(__name__)
_MAX_OPEN_SHARDS = 32  # open shard files kept per process (a shuffled epoch touches every shard)
_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def default_cache_root() -> Path:
    """``$REPVIT_CACHE/sam_embeddings``, else ``$XDG_CACHE_HOME/repvit/sam_embeddings`` (``~/.cache``)."""
    base = os.environ.get("REPVIT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "repvit")
    return Path(base) / "sam_embeddings"


def training_images(root: str | os.PathLike, limit: int | None = None) -> list[str]:
    """Image files under ``root`` (recursively), as sorted POSIX paths relative to ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist or is not a directory (--images DIR).")
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                   if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() and not p.name.startswith("."))
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {root}.")
    return files[:limit] if limit else files


def file_sha256(path: str | os.PathLike, memo_dir: Path | None = None) -> str:
    """SHA-256 of a file, memoised in ``memo_dir/hashes.json`` by (absolute path, size, mtime)."""
    path = Path(path).resolve()
    st = path.stat()
    tag = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    memo_file = memo_dir / "hashes.json" if memo_dir else None
    memo: dict[str, str] = {}
    if memo_file and memo_file.is_file():
        try:
            memo = json.loads(memo_file.read_text())
        except ValueError:
            memo = {}
    if tag in memo:
        return memo[tag]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            h.update(chunk)
    digest = h.hexdigest()
    if memo_file:
        memo[tag] = digest
        atomic_write(memo_file, lambda tmp: Path(tmp).write_text(json.dumps(memo, indent=1)))
    return digest


def module_sha256(module: torch.nn.Module) -> str:
    """SHA-256 of a module's state dict (names, shapes, values): the identity of a teacher given as a module."""
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        t = v.detach().cpu().contiguous().reshape(-1)  # (0-d tensors cannot be viewed as bytes)
        h.update(str((tuple(v.shape), str(t.dtype))).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@dataclass(frozen=True)
class CacheSpec:
    """Everything the cached embeddings depend on; :meth:`key` hashes it."""

    teacher: str  # e.g. "vit_h:sha256:..." or "module:sha256:..."
    images_sha256: str  # of the (relative path, size, mtime) list
    num_images: int
    img_size: int
    pixel_mean: tuple[float, ...]
    pixel_std: tuple[float, ...]
    dtype: str = "float16"
    shard_size: int = 64
    version: int = 1

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:24]


def images_fingerprint(root: Path, files: Sequence[str]) -> str:
    h = hashlib.sha256()
    for f in files:
        st = (root / f).stat()
        h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


class EmbeddingCache:
    """Teacher embeddings of the images ``files`` under ``image_root``, stored under ``root``.

    Args:
        root: the cache root (one sub-directory per key).
        image_root: the image folder; ``files`` are relative to it.
        files: the sorted image list (see :func:`training_images`).
        teacher_id: the teacher's identity (name and weights hash).
        img_size: SAM's input side.
        dtype: storage dtype (``float16`` halves the disk use of ``float32``; ViT-H: 2 MiB per image).
        shard_size: images per shard.
    """

    def __init__(self, root: str | os.PathLike, image_root: str | os.PathLike, files: Sequence[str], teacher_id: str,
                 img_size: int, dtype: str = "float16", shard_size: int = 64):
        if dtype not in _DTYPES:
            raise ValueError(f"cache dtype must be one of {sorted(_DTYPES)}, got {dtype!r}.")
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}.")
        self.image_root, self.files = Path(image_root), list(files)
        mean, std = sam_pixel_stats()
        self.spec = CacheSpec(teacher_id, images_fingerprint(self.image_root, self.files), len(self.files), img_size,
                              tuple(mean), tuple(std), dtype, shard_size)
        self.dir = Path(root) / self.spec.key()
        self._handles: dict[int, Any] = {}

    @property
    def num_shards(self) -> int:
        return -(-len(self.files) // self.spec.shard_size)

    def shard_path(self, i: int) -> Path:
        return self.dir / f"shard_{i:05d}.safetensors"

    def missing_shards(self) -> list[int]:
        return [i for i in range(self.num_shards) if not self.shard_path(i).is_file()]

    def complete(self) -> bool:
        return not self.missing_shards()

    def fill(self, embed: Callable[[torch.Tensor], torch.Tensor], *, batch_size: int = 4, rank: int = 0,
             world_size: int = 1, progress: bool = False, on_shard: Callable[[int], None] | None = None) -> int:
        """Compute this rank's missing shards with ``embed`` (preprocessed images ``(N, 3, S, S)`` -> embeddings)
        and return how many it wrote. ``on_shard(i)`` is called after shard ``i`` is on disk."""
        from safetensors.torch import save_file
        from tqdm.auto import tqdm

        self.dir.mkdir(parents=True, exist_ok=True)
        spec_file = self.dir / "spec.json"
        if not spec_file.exists() and rank == 0:
            atomic_write(spec_file, lambda tmp: Path(tmp).write_text(json.dumps(asdict(self.spec), indent=1)))
        todo = [i for i in self.missing_shards() if i % world_size == rank]
        s = self.spec.shard_size
        bar = tqdm(total=sum(len(self.files[i * s:(i + 1) * s]) for i in todo), desc="teacher embeddings",
                   disable=None if progress else True, dynamic_ncols=True, leave=False)
        for i in todo:
            names = self.files[i * s:(i + 1) * s]
            outs = []
            for j in range(0, len(names), batch_size):
                x = torch.stack([preprocess_image(load_rgb(self.image_root / n), self.spec.img_size)
                                 for n in names[j:j + batch_size]])
                with torch.no_grad():
                    outs.append(embed(x).float().cpu().to(_DTYPES[self.spec.dtype]))
                bar.update(len(names[j:j + batch_size]))
            emb = torch.cat(outs).contiguous()
            meta = {"files": json.dumps(names), "key": self.spec.key()}
            atomic_write(self.shard_path(i), lambda tmp, emb=emb, meta=meta: save_file({"embeddings": emb}, tmp, meta))
            if on_shard is not None:
                on_shard(i)
        bar.close()
        return len(todo)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        """The teacher embedding of image ``index`` (float32)."""
        from safetensors import safe_open

        shard, j = divmod(index, self.spec.shard_size)
        h = self._handles.pop(shard, None)
        if h is None:
            path = self.shard_path(shard)
            if not path.is_file():
                raise FileNotFoundError(f"teacher-embedding shard {path} is missing; fill the cache first.")
            h = safe_open(str(path), framework="pt", device="cpu")
            if len(self._handles) >= _MAX_OPEN_SHARDS:  # least recently used first (dicts keep insertion order)
                self._handles.pop(next(iter(self._handles)))
        self._handles[shard] = h
        return h.get_slice("embeddings")[j:j + 1][0].float()

    def __getstate__(self):  # loader workers open their own file handles
        d = dict(self.__dict__)
        d["_handles"] = {}
        return d
