"""``create_model``: build any registered model, optionally from a checkpoint and in deploy form."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from repvit.weights import (
    UnknownWeightsError,
    WeightsEntry,
    default_weights,
    get_weights,
    lookup,
    resolve_weights,
    url_weights,
)

from .checkpoint import (
    CheckpointError,
    LoadedCheckpoint,
    infer_config,
    load_checkpoint,
    name_for_config,
    read_checkpoint,
)
from .config import RepViTConfig
from .fuse import fuse_model
from .pretrained import set_data_config
from .registry import get_model_entry

__all__ = ["create_model"]


def _fit_channels(data: dict[str, Any], in_chans: int) -> dict[str, Any]:
    """Drop saved preprocessing that cannot apply to a model built with another number of input channels."""
    for key in ("input_size", "test_input_size"):
        size = data.get(key)
        if size is not None and int(size[0]) != in_chans:
            data[key] = (in_chans, *size[1:])
    for key in ("mean", "std"):
        if key in data and len(data[key]) not in (1, in_chans):
            del data[key]
    return data


_IGNORED_TIMM_KWARGS = ("scriptable", "exportable", "no_jit")


def _timm_kwargs(kwargs: dict[str, Any], checkpoint: Any) -> Any:
    """Accept timm's ``checkpoint_path`` and its no-op layer flags; refuse anything else by name."""
    if "checkpoint_path" in kwargs:
        path = kwargs.pop("checkpoint_path")
        if checkpoint is not None and path:
            raise ValueError("pass checkpoint= or checkpoint_path= (timm's name for it), not both.")
        checkpoint = path or checkpoint
    for k in _IGNORED_TIMM_KWARGS:
        kwargs.pop(k, None)
    if kwargs:
        raise TypeError(f"create_model() got unexpected keyword arguments {sorted(kwargs)}.")
    return checkpoint


def _split_tag(name: str | None) -> tuple[str | None, Any]:
    """timm's ``model.tag`` (``repvit_m0_9.dist_450e_in1k``) -> ``(model name, its weights entry)``; any other name
    -> ``(name, None)``."""
    if isinstance(name, str) and "." in name:
        try:
            entry = get_weights(name)
        except UnknownWeightsError:
            return name, None
        if entry.task == "classify":
            return entry.model, entry
    return name, None


def _overlay_source(name: str | None, overlay: dict[str, Any]) -> Any:
    """Where ``pretrained_cfg_overlay`` says the weights are (timm's ``file``, ``hf_hub_id``, ``url``), or None."""
    if overlay.get("file"):
        return Path(overlay["file"])
    if overlay.get("hf_hub_id"):
        repo = str(overlay["hf_hub_id"])
        return WeightsEntry(repo.replace("/", "--"), name or "", "huggingface", "timm", "classify", repo_id=repo,
                            filename=str(overlay.get("hf_hub_filename") or "model.safetensors"))
    if overlay.get("url"):
        return url_weights(str(overlay["url"]), name or "")
    return None


def _pretrained_source(name: str | None, pretrained: Any, overlay: dict[str, Any]) -> tuple[str | None, Any]:
    """The model name and where its weights come from: a :class:`repvit.weights.WeightsEntry`, a file, or None."""
    name, tagged = _split_tag(name)
    if pretrained is None or pretrained is False:
        return name, None
    if pretrained is True:
        source = _overlay_source(name, overlay) or tagged
        if source is None:
            if name is None:
                raise ValueError("pretrained=True needs a model name (e.g. create_model('repvit_m0_9', "
                                 "pretrained=True)); or pass a weights name or file: "
                                 "pretrained='repvit_m0_9.dist_450e_in1k'.")
            source = default_weights(get_model_entry(name).name)
    elif isinstance(pretrained, (str, os.PathLike)):
        source = lookup(pretrained, kind="classify")
    else:
        raise TypeError(f"pretrained must be True/False, a weights name or a file path, got "
                        f"{type(pretrained).__name__}.")
    if isinstance(source, WeightsEntry) and source.model:
        if name is None:
            name = source.model
        elif get_model_entry(name).name != source.model:
            raise ValueError(f"weights {source.name!r} are for {source.model}, not {get_model_entry(name).name}; "
                             f"drop the model name or pick its weights (repvit weights list '{name}*').")
    return name, source


def _read_pretrained(source: Any) -> tuple[LoadedCheckpoint, str]:
    """Get the weights file (downloading it once) and read it; errors name the file."""
    if isinstance(source, WeightsEntry):
        path = resolve_weights(source)
        label = f"weights {source.name!r} ({path})"
    else:
        path, label = source, str(source)
    try:
        ckpt = read_checkpoint(path)
    except CheckpointError as e:
        msg = str(e) if str(path) in str(e) else f"{label}: {e}"
        raise CheckpointError(msg) from None
    expected = {"timm": ("timm", "repvit"), "authors_cls": ("authors", "authors_legacy")}
    if (isinstance(source, WeightsEntry) and source.layout is not None
            and ckpt.source_format not in expected.get(source.layout, ())):
        raise CheckpointError(f"{label} is not what its name promises: a {source.layout} checkpoint was expected, "
                              f"the file is in {ckpt.source_format} layout. Delete it and download it again "
                              f"(repvit weights download {source.name} --force).")
    return ckpt, label


def _adapt_in_chans(ckpt: LoadedCheckpoint, in_chans: int) -> None:
    """Fit the stem's first convolution to ``in_chans`` input channels, as timm does for pretrained weights."""
    from timm.models import adapt_input_conv

    for key in ("stem.conv1.c.weight", "stem.conv1.weight"):
        w = ckpt.state_dict.get(key)
        if w is not None and w.shape[1] != in_chans:
            ckpt.state_dict[key] = adapt_input_conv(in_chans, w)


def _apply_overlay(model: nn.Module, overlay: dict[str, Any], source: Any) -> None:
    """Record where the weights came from and apply ``pretrained_cfg_overlay`` to the model's pretrained_cfg."""
    from .pretrained import DATA_KEYS, refresh_pretrained_cfg

    cfg = dict(model.pretrained_cfg)
    if isinstance(source, WeightsEntry):
        tag = source.name.split(".", 1)[1] if "." in source.name else source.name
        cfg.update(tag=tag, hf_hub_id=source.repo_id if source.host == "huggingface" else None,
                   url=source.url or "", source="hf-hub" if source.host == "huggingface" else None)
    elif isinstance(source, Path):
        cfg["file"] = str(source)
    data = {k: v for k, v in overlay.items() if k in DATA_KEYS or k == "img_size"}
    cfg.update({k: v for k, v in overlay.items() if k not in data and k not in ("num_classes", "first_conv",
                                                                                 "classifier", "pool_size")})
    model.pretrained_cfg = model.default_cfg = cfg
    if data:
        set_data_config(model, **data)
    else:
        refresh_pretrained_cfg(model)


def _load(model: nn.Module, ckpt: LoadedCheckpoint, strict: bool, label: str | None) -> None:
    try:
        load_checkpoint(model, ckpt, strict=strict)
    except CheckpointError as e:
        if label is None:
            raise
        e.args = (f"{label} does not fit the model: {e}",)
        raise


def create_model(
    name: str | None = None,
    pretrained: bool | str | os.PathLike = False,
    *,
    num_classes: int | None = None,
    in_chans: int | None = None,
    distillation: bool | None = None,
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
    global_pool: str | None = None,
    checkpoint: str | os.PathLike | Mapping[str, torch.Tensor] | None = None,
    fused: bool = False,
    features_only: bool = False,
    out_indices: Sequence[int] = (0, 1, 2, 3),
    strict: bool = True,
    pretrained_cfg_overlay: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a model by name, optionally loading a checkpoint and fusing it into deploy form.

    Args:
        name: a registered name (``repvit_m0_9``; ``m0_9`` works too), or timm's ``model.tag``
            (``repvit_m0_9.dist_450e_in1k``: the tag picks the weights ``pretrained=True`` loads). May be omitted
            when ``checkpoint`` or a weights name in ``pretrained`` is given.
        pretrained: ``True`` loads the model's published weights (the tag in ``name``, else timm's default tag,
            see ``repvit weights list``); a weights name (``repvit_m0_9_distill_450e``) or a file path loads those.
            Files are downloaded once and cached (see :mod:`repvit.weights`).
        num_classes: head classes. Defaults to the checkpoint's (when given), else 1000. A checkpoint with another
            class count loads without its head, with a warning, for fine-tuning.
        in_chans: input channels; defaults to the checkpoint's, else 3.
        distillation: add the distillation head; defaults to the checkpoint's, else False.
        drop_rate: dropout before the head.
        drop_path_rate: stochastic depth rate.
        global_pool: ``"avg"`` (default) or ``""`` (no pooling: with ``num_classes=0`` the model returns the
            ``(N, C, H, W)`` features), as in timm.
        checkpoint: a file (or state dict) in any supported format: ours, timm, the authors' release, fused.
        fused: return the deploy form (re-parameterized, no BatchNorm, one head).
        features_only: return the backbone, giving the stage outputs at strides 4, 8, 16, 32.
        out_indices: which stages ``features_only`` returns.
        strict: refuse checkpoints whose keys do not match (the head excepted, see above).
        pretrained_cfg_overlay: timm's: entries replacing those of the model's ``pretrained_cfg`` (``mean``,
            ``crop_pct``, ...); with ``pretrained``, ``file`` (a local file), ``hf_hub_id`` (+ ``hf_hub_filename``)
            or ``url`` name where the weights come from.
        kwargs: timm's ``checkpoint_path`` (= ``checkpoint``); ``scriptable``, ``exportable`` and ``no_jit`` are
            accepted and have no effect (every RepViT layer is scriptable and exportable).

    Published weights with another input channel count are adapted as timm does (the stem's first convolution is
    summed or repeated over the channels); with another class count the head is left out, with a warning.

    The model's ``pretrained_cfg`` (timm's, alias ``default_cfg``) holds the paper's preprocessing, or the one saved
    in the checkpoint (a model trained on another data set keeps its own input size, mean and std).
    """
    checkpoint = _timm_kwargs(kwargs, checkpoint)
    overlay = dict(pretrained_cfg_overlay or {})
    name, source = _pretrained_source(name, pretrained, overlay)
    ckpt, label = _read_weights(source, checkpoint, in_chans)
    if name is None and ckpt is None:
        raise ValueError("create_model needs a model name or a checkpoint; see `repvit list` for the names.")
    name, cfg_from_ckpt, inferred = _from_checkpoint(ckpt, name)
    in_chans = in_chans if in_chans is not None else inferred.get("in_chans", 3)
    build = dict(num_classes=num_classes if num_classes is not None else inferred.get("num_classes", 1000),
                 in_chans=in_chans, drop_rate=drop_rate, drop_path_rate=drop_path_rate,
                 distillation=distillation if distillation is not None else bool(inferred.get("distillation", False)))
    if features_only:
        build.update(features_only=True, out_indices=tuple(out_indices))
    elif global_pool is not None:
        build["global_pool"] = global_pool
    model = _build(name, cfg_from_ckpt, build)
    if getattr(model, "pretrained_cfg", None) is not None:
        _set_pretrained_cfg(model, ckpt, in_chans)
        _apply_overlay(model, overlay, source)
    return _load_weights(model, ckpt, fused=fused, strict=strict, label=label)


def _read_weights(source: Any, checkpoint: Any, in_chans: int | None) -> tuple[LoadedCheckpoint | None, str | None]:
    """The weights read from ``pretrained=`` (``source``; the label names them in errors) or ``checkpoint=``."""
    if source is not None and checkpoint is not None:
        raise ValueError("pass either pretrained= (published weights or a file) or checkpoint=, not both.")
    if source is None:
        return (read_checkpoint(checkpoint) if checkpoint is not None else None), None
    ckpt, label = _read_pretrained(source)
    if in_chans is not None:
        _adapt_in_chans(ckpt, in_chans)
    return ckpt, label


def _load_weights(model: nn.Module, ckpt: LoadedCheckpoint | None, *, fused: bool, strict: bool,
                  label: str | None) -> nn.Module:
    """Load ``ckpt`` into ``model`` and return the model, in deploy form when ``fused``."""
    ckpt_fused = ckpt is not None and ckpt.fused
    if ckpt_fused and not fused:
        raise CheckpointError("this checkpoint is in fused (deploy) form; pass fused=True (CLI: --fused) to build "
                              "the deploy model it belongs to.")
    if ckpt_fused:
        model = fuse_model(model, inplace=True)  # fused weights load into the deploy form
    if ckpt is not None:
        _load(model, ckpt, strict, label)
    if fused and not ckpt_fused:
        model = fuse_model(model, inplace=True)
    return model


def _from_checkpoint(ckpt: LoadedCheckpoint | None, name: str | None,
                     ) -> tuple[str | None, RepViTConfig | None, dict[str, Any]]:
    """``(model name, architecture, saved settings)`` a checkpoint tells: its config or the one its tensors imply,
    and its ``num_classes`` / ``in_chans`` / ``distillation``; ``name`` wins when given."""
    if ckpt is None:
        return name, None, {}
    meta = ckpt.meta
    cfg: RepViTConfig | None = None
    inferred: dict[str, Any] = {}
    if isinstance(meta.get("config"), Mapping):
        try:
            cfg = RepViTConfig.from_dict(dict(meta["config"]))
        except ValueError:
            # another design space (e.g. a roadmap_* model): the registered name rebuilds it
            if not (name or meta.get("model_name")):
                raise
    try:
        inferred_cfg, inferred = infer_config(ckpt.state_dict)
        cfg = cfg or inferred_cfg
    except CheckpointError:
        if name is None and cfg is None and not meta.get("model_name"):
            raise
    for k in ("num_classes", "in_chans", "distillation"):
        if k in meta and k not in inferred:
            inferred[k] = meta[k]
    if name is None:
        name = meta.get("model_name") or (cfg and name_for_config(cfg))
    return name, cfg, inferred


def _build(name: str | None, cfg: RepViTConfig | None, kwargs: dict[str, Any]) -> nn.Module:
    """The registered model ``name`` (else the architecture ``cfg``), with ``build_info`` for save_checkpoint."""
    features_only = bool(kwargs.get("features_only"))
    if name is not None:
        entry = get_model_entry(name)
        if features_only and not entry.supports_features:
            raise ValueError(f"model {entry.name!r} does not support features_only=True.")
        model = entry.builder(**kwargs)
        name, config = entry.name, entry.config
    else:
        from .variants import build_repvit

        model = build_repvit(cfg, **kwargs)
        config = cfg
    model.build_info = {
        "model_name": name,
        "config": config.to_dict() if hasattr(config, "to_dict") else None,
        "features_only": features_only,
    }
    return model


def _set_pretrained_cfg(model: nn.Module, ckpt: LoadedCheckpoint | None, in_chans: int) -> None:
    """Name the architecture in ``pretrained_cfg`` and apply the preprocessing the checkpoint saved."""
    model.pretrained_cfg["architecture"] = model.build_info["model_name"]
    saved = ckpt.meta.get("pretrained_cfg") if ckpt is not None else None
    if isinstance(saved, Mapping) and saved:
        saved = _fit_channels(dict(saved), in_chans)
        if len(saved.get("label_names") or ()) != getattr(model, "num_classes", 0):
            saved.pop("label_names", None)  # another class count (fine-tuning): the names do not apply
        set_data_config(model, **saved)
