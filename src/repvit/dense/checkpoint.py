"""Reading dense checkpoints, shared by the segmentation and detection tasks: a file or a published name becomes a
:class:`DenseCheckpoint` whose ``layout`` says what it is (the authors' mmseg / mmdet files, or ours), and the
helpers both tasks use to map the authors' tensors (backbone split into timm's layout, renaming rules, a strict
load that lists every difference), and :func:`open_dense_model`, which both tasks' public loaders use. The per-task
mappings are in ``repvit.dense.segmentation.authors`` and ``repvit.dense.detection.authors``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

import repvit.weights
from repvit.io import CheckpointError, load_torch, strip_prefixes
from repvit.models.checkpoint import CheckpointMismatchError, authors_to_timm

__all__ = ["resolve_checkpoint", "read_dense_checkpoint", "read_authors_checkpoint", "DenseCheckpoint",
           "split_backbone", "backbone_model_name", "load_strict", "rename_key", "load_mapped", "open_dense_model"]

# ----------------------------------------------------------------------------------------------------- reading


def resolve_checkpoint(name_or_path: str | os.PathLike) -> Path:
    """A dense checkpoint's local file: a path, a URL, or a published name (``repvit_m1_1_ade20k``,
    ``repvit_m1_1_coco``) through :func:`repvit.weights.resolve_weights`; the readers tell its task from its layout.

    Raises:
        FileNotFoundError: a path that does not exist.
        ValueError: neither a path nor a URL nor a published name.
    """
    return Path(repvit.weights.resolve_weights(name_or_path))


@dataclass
class DenseCheckpoint:
    """A dense checkpoint file as read: its path, its layout and the loaded object.

    ``layout``: ``"mmseg"`` (the authors' Semantic FPN), ``"mmdet"`` (the authors' Mask R-CNN), ``"segment"`` /
    ``"detect"`` (ours, from ``repvit segment|detect train``).
    """

    path: Path
    layout: str
    obj: Any = field(repr=False)

    @property
    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.obj["state_dict"] if self.layout in ("mmseg", "mmdet") else self.obj["model"]


def _mm_layout(sd: Mapping[str, Any]) -> str | None:
    keys = list(sd)
    if not any(k.startswith("backbone.") for k in keys):
        return None
    if any(k.startswith("decode_head.") for k in keys):
        return "mmseg"
    if any(k.startswith(("rpn_head.", "roi_head.")) for k in keys):
        return "mmdet"
    return None


def _numpy_globals() -> list:
    """NumPy scalars and arrays as plain data for ``weights_only`` loading: mmcv's ``meta`` may hold them (e.g.
    an evaluation hook's best score). Both module names are listed: NumPy 1.x pickles say ``numpy.core``."""
    import numpy as np

    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # NumPy 1.x
        from numpy.core.multiarray import _reconstruct, scalar
    dtypes = {type(np.dtype(t)) for t in ("f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "b1")}
    out: list = [scalar, _reconstruct, np.ndarray, np.dtype, *dtypes]
    for name, obj in (("scalar", scalar), ("_reconstruct", _reconstruct)):
        for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            if f"{obj.__module__}.{obj.__name__}" != f"{module}.{name}":
                out.append((obj, f"{module}.{name}"))
    return out


def read_dense_checkpoint(name_or_path: str | os.PathLike) -> DenseCheckpoint:
    """Read a dense checkpoint (``weights_only=True``) and tell its layout; see :class:`DenseCheckpoint`."""
    path = resolve_checkpoint(name_or_path)
    with torch.serialization.safe_globals(_numpy_globals()):
        obj = load_torch(path)
    if isinstance(obj, Mapping):
        if obj.get("task") in ("segment", "detect") and isinstance(obj.get("model"), Mapping):
            return DenseCheckpoint(path, str(obj["task"]), obj)
        sd = obj.get("state_dict")
        if isinstance(sd, Mapping):
            sd = strip_prefixes(dict(sd))
            layout = _mm_layout(sd)
            if layout:
                return DenseCheckpoint(path, layout, {**obj, "state_dict": sd})
    keys = list(obj)[:6] if isinstance(obj, Mapping) else type(obj).__name__
    raise CheckpointError(
        f"{path} is not a dense checkpoint repvit knows (found {keys}). Expected the authors' mmseg/mmdet file "
        "({'meta', 'state_dict'} with backbone.features.N keys and decode_head.* or rpn_head./roi_head.* keys) or "
        "a checkpoint written by `repvit segment train` / `repvit detect train`.")


def read_authors_checkpoint(name_or_path: str | os.PathLike, layout: str) -> DenseCheckpoint | None:
    """The authors' checkpoint of ``layout`` (``"mmseg"`` or ``"mmdet"``) read, or None for anything else: a file of
    ours, of the other layout, or one that is not a dense checkpoint keeps its task's own reader (and its errors); a
    missing path is left to that reader too, which names it."""
    if repvit.weights.is_path(name_or_path) and not Path(name_or_path).is_file():
        return None
    try:
        ckpt = read_dense_checkpoint(name_or_path)
    except CheckpointError:
        return None
    return ckpt if ckpt.layout == layout else None


# ---------------------------------------------------------------------------------------------------- backbone


def split_backbone(sd: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``(backbone in our layout, the other keys)``; the authors' ``features.N`` keys are renamed (a classifier
    head inside the backbone, which the dense models never run, is left out)."""
    bb = {k[len("backbone."):]: v for k, v in sd.items() if k.startswith("backbone.")}
    rest = {k: v for k, v in sd.items() if not k.startswith("backbone.")}
    if not any(k.startswith("features.") for k in bb):
        raise CheckpointError(f"the backbone keys are not the authors' RepViT layout (first: {list(bb)[:4]}); "
                              "expected backbone.features.N...")
    try:
        bb = authors_to_timm(bb)
    except CheckpointError as e:
        raise CheckpointError(f"backbone: {e}") from None
    # a classifier left in the backbone is not used by mmseg/mmdet either (their loaders are not strict)
    return {k: v for k, v in bb.items() if not k.startswith("head.")}, rest


def backbone_model_name(bb: Mapping[str, torch.Tensor]) -> str:
    """The registered RepViT whose architecture the backbone state dict (our layout) has."""
    from repvit.models.checkpoint import infer_config
    from repvit.models.registry import get_model_entry, list_models

    cfg, extra = infer_config(bb)
    if extra["fused"]:
        raise CheckpointError("the backbone in this file is in fused (deploy) form; the authors' dense files are "
                              "unfused. Pass the unfused file (load_segmenter/load_detector(fused=True) fuses it).")
    names = [n for n in list_models("repvit_*") if get_model_entry(n).config == cfg]
    if not names:
        raise CheckpointError(f"the backbone (widths {list(cfg.widths)}, depths {list(cfg.depths)}) is not a "
                              "registered RepViT variant (see `repvit list`).")
    return sorted(names, key=len)[0]


def load_strict(model: nn.Module, sd: Mapping[str, torch.Tensor], where: str,
                 origin: Mapping[str, str] | None = None) -> None:
    """Load ``sd`` (model key names) requiring every tensor to be used and none missing; ``origin`` maps a model
    key to the file's key, so the error names the file's keys."""
    own = model.state_dict()
    name = dict(origin or {})
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(name.get(k, k) for k in set(sd) - set(own))
    mismatched = [f"{name.get(k, k)}: file {tuple(sd[k].shape)} vs model {k} {tuple(own[k].shape)}"
                  for k in sd if k in own and sd[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(
            f"{where} does not map onto the model exactly: model tensors the file lacks {missing[:6]} "
            f"({len(missing)}), file tensors the model has no place for {unexpected[:6]} ({len(unexpected)}), shape "
            f"differences {mismatched[:4]}. Is it the authors' unmodified file?", missing, unexpected, mismatched)
    model.load_state_dict({k: v.to(own[k].dtype) if v.is_floating_point() else v for k, v in sd.items()})


def rename_key(key: str, rules: tuple[tuple[str, str], ...], where: str) -> str:
    for pattern, repl in rules:
        new, n = re.subn(pattern, repl, key)
        if n:
            return new
    raise CheckpointError(f"{where}: unexpected key {key!r} (not part of the layout repvit maps).")


def load_mapped(model: nn.Module, backbone: Mapping[str, torch.Tensor], rest: Mapping[str, torch.Tensor], *,
                backbone_prefix: str, rules: tuple[tuple[str, str], ...], where: str,
                convert: Callable[[torch.Tensor, str], torch.Tensor] | None = None) -> None:
    """Load the authors' tensors into ``model`` with :func:`load_strict`: ``backbone`` (our layout, from
    :func:`split_backbone`) under ``backbone_prefix``, the ``rest`` renamed by ``rules`` (:func:`rename_key`) and,
    if given, passed through ``convert(value, model_key)``. Errors name the file's keys."""
    sd = {f"{backbone_prefix}{k}": v for k, v in backbone.items()}
    origin = {}
    for k, v in rest.items():
        new = rename_key(k, rules, where)
        sd[new], origin[new] = (convert(v, new) if convert else v), k
    load_strict(model, sd, where, origin)

# -------------------------------------------------------------------------------------------------- opening a model

_TASK_OF_LAYOUT = {"mmseg": "segment", "segment": "segment", "mmdet": "detect", "detect": "detect"}
_TASK_NOUN = {"segment": "segmentation", "detect": "detection"}
_PUBLIC_LOADER = {"segment": "repvit.load_segmenter", "detect": "repvit.load_detector"}


def open_dense_model(
    name_or_path: str | os.PathLike,
    task: str,
    *,
    from_authors: Callable[[DenseCheckpoint], tuple[nn.Module, dict[str, Any]]],
    from_ours: Callable[[Path], tuple[nn.Module, Any, dict[str, Any]]],
) -> tuple[nn.Module, DenseCheckpoint, dict[str, Any]]:
    """``(model in eval mode, the checkpoint read, meta)`` for a checkpoint of ``task`` (``"segment"``/``"detect"``).

    The authors' file goes through ``from_authors`` (gives the model and its meta); ours through ``from_ours`` (the
    task's checkpoint loader: model, config, meta), whose config is added to meta as ``config``. Meta gets the
    file's ``layout``.

    Raises:
        CheckpointError: the file is a checkpoint of the other task; the message names the loader to use.
    """
    ckpt = read_dense_checkpoint(name_or_path)
    found = _TASK_OF_LAYOUT[ckpt.layout]
    if found != task:
        raise CheckpointError(f"{ckpt.path} is a {_TASK_NOUN[found]} checkpoint, not a {_TASK_NOUN[task]} one; use "
                              f"{_PUBLIC_LOADER[found]} for it.")
    if ckpt.layout == task:
        model, cfg, meta = from_ours(ckpt.path)
        meta = {**meta, "config": cfg}
    else:
        model, meta = from_authors(ckpt)
    return model, ckpt, {**meta, "layout": ckpt.layout}
