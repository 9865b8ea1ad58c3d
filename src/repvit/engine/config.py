"""The engine's configuration: :class:`EngineConfig` (a frozen dataclass every task's config extends), YAML recipes
in ``configs/`` (found by :func:`find_recipe`), ``key=value`` overrides (:func:`parse_overrides`) and
:func:`load_config`, which merges the three.

Learning rate: ``lr`` is the rate for a total batch of ``lr_base_batch``; the rate used is
``lr × batch_size × world_size / lr_base_batch`` (:meth:`EngineConfig.scaled_lr`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import yaml

__all__ = ["EngineConfig", "load_config", "parse_overrides", "find_recipe", "recipe_dir"]


@dataclass(frozen=True)
class EngineConfig:
    """The fields every training job shares, whatever its task.

    A task's config subclasses this one and adds its own fields; every field can be set from YAML or ``--set``.
    """

    # what
    model: str = "repvit_m0_6"
    data: str = "digits"
    output_dir: str = "runs/train"
    num_classes: int | None = None  # default: from the data (tasks without classes ignore it)
    img_size: int = 32
    # schedule and optimiser (timm factories)
    epochs: int = 8
    iters: int | None = None  # total optimiser steps; when set it overrides epochs (the last epoch is cut short)
    batch_size: int = 64  # per process
    eval_batch_size: int | None = None  # per process; None: the task's choice
    lr: float = 1.6e-2  # for a total batch of lr_base_batch
    lr_base_batch: int = 512
    min_lr: float = 1e-5
    warmup_lr: float = 1e-6
    warmup_epochs: int = 1
    warmup_steps: int | None = None  # linear warm-up in optimiser steps; when set it overrides warmup_epochs
    warmup_max_fraction: float = 0.25  # a longer warm-up is capped to this fraction of the run's steps (logged)
    sched: str = "cosine"  # timm: cosine | poly | multistep | step | plateau-free others
    decay_rate: float = 0.1  # poly: the power; step/multistep: the factor
    decay_milestones: tuple[int, ...] | None = None  # multistep: the epochs at which the rate is multiplied
    opt: str = "adamw"
    opt_eps: float = 1e-8
    opt_fused: bool = True  # torch's fused Adam/AdamW kernel (CPU and CUDA): same maths, far fewer kernel launches
    weight_decay: float = 0.025
    clip_grad: float | None = 0.02
    clip_mode: str = "agc"
    model_ema: bool = True
    model_ema_decay: float = 0.99
    model_ema_warmup: bool = True  # timm's EMA warm-up (decay ramps up over the first steps; short runs)
    bn_momentum: float | None = None  # every BatchNorm's running-statistics momentum (None: the model's, torch's 0.1)
    # runtime
    seed: int = 0
    workers: int | None = None  # loader processes; None: 0 for digits (in-memory tensors), else min(8, CPUs)
    device: str = "auto"  # auto | cpu | cuda
    threads: int | None = 1  # torch CPU threads per process (None: torch's default); 1 is robust on a busy machine
    amp: bool = False
    amp_dtype: str = "bfloat16"  # bfloat16 | float16 (fp16 only on CUDA)
    channels_last: bool | None = False  # None: on for CPU training (oneDNN's NHWC kernels), off on CUDA
    compile: bool = False
    sync_bn: bool = False
    strict_data: bool = False
    resume: str | None = None  # auto | PATH
    eval_every: int = 1
    progress: bool = True
    tensorboard: bool = True
    plot: bool = True

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1 (got {self.epochs}, {self.batch_size}).")
        if self.iters is not None and self.iters < 1:
            raise ValueError(f"iters must be >= 1 (got {self.iters}); leave it unset to train by epochs.")
        if self.amp_dtype not in ("bfloat16", "float16"):
            raise ValueError(f"amp_dtype must be bfloat16 or float16, got {self.amp_dtype!r}.")

    def resolved_workers(self) -> int:
        """``workers``, or its automatic value: 0 for the in-memory digits set, else min(8, CPU count)."""
        if self.workers is not None:
            return self.workers
        from repvit.data import is_digits

        return 0 if is_digits(self.data) else min(8, os.cpu_count() or 1)

    def scaled_lr(self, world_size: int = 1) -> float:
        """The learning rate used: ``lr × total_batch / lr_base_batch``."""
        return self.lr * self.batch_size * world_size / self.lr_base_batch

    def to_dict(self) -> dict[str, Any]:
        """Plain data (the ``config`` entry of a training checkpoint; ``model`` is the model name)."""
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]):
        """Build from a dict, rejecting unknown keys with the list of valid ones."""
        names = {f.name for f in fields(cls)}
        bad = sorted(set(d) - names)
        if bad:
            raise ValueError(f"unknown config keys {bad}; valid keys: {', '.join(sorted(names))}.")
        return cls(**{k: _coerce(cls, k, v) for k, v in d.items()})

    def replace(self, **kw: Any):
        """A copy with some fields changed (values coerced like overrides)."""
        return dataclasses.replace(self, **{k: _coerce(type(self), k, v) for k, v in kw.items()})


def _field_type(cls, key: str) -> str:
    return str(next(f.type for f in fields(cls) if f.name == key))


def _coerce(cls, key: str, value: Any) -> Any:
    """Turn strings from the command line (or YAML) into the field's type."""
    names = {f.name for f in fields(cls)}
    if key not in names:
        raise ValueError(f"unknown config key {key!r}; valid keys: {', '.join(sorted(names))}.")
    t = _field_type(cls, key)
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() in ("none", "null", "~") and "None" in t:
        return None
    base = t.split("|")[0].strip()
    try:
        if base == "bool":
            if isinstance(value, str):
                v = value.strip().lower()
                if v not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError(value)
                return v in ("1", "true", "yes", "on")
            return bool(value)
        if base == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if base == "float":
            return float(value)
        if base == "str":
            return str(value)
        if base.startswith("tuple[int"):
            if isinstance(value, str):
                value = [v for v in value.replace(",", " ").split() if v]
            if not isinstance(value, (list, tuple)):
                value = [value]
            return tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"config key {key!r} expects {t}, got {value!r}.") from None
    return value


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["epochs=5", "lr=1e-3"]`` -> ``{"epochs": "5", "lr": "1e-3"}`` (typed later by the config)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--set takes key=value, got {item!r}.")
        k, v = item.split("=", 1)
        out[k.strip().replace("-", "_")] = yaml.safe_load(v) if v.strip() else ""
    return out


def recipe_dir() -> Path | None:
    """Where recipes are looked up by name: ``$REPVIT_CONFIG_DIR``, else the ``configs/`` folder of a source
    checkout, else the copy a wheel install puts in ``<prefix>/share/repvit/configs``."""
    import sys

    env = os.environ.get("REPVIT_CONFIG_DIR")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "configs").is_dir() and (parent / "pyproject.toml").exists():
            return parent / "configs"
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        installed = Path(prefix) / "share" / "repvit" / "configs"
        if installed.is_dir():
            return installed
    return None


def find_recipe(name_or_path: str) -> Path:
    """A YAML recipe by path, or by name in ``configs/`` (``repvit_m0_9_300e`` or ``repvit_m0_9_300e.yaml``)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    d = recipe_dir()
    if d is not None:
        for cand in (d / name_or_path, d / f"{name_or_path}.yaml"):
            if cand.is_file():
                return cand
    known = sorted(q.stem for q in d.glob("*.yaml")) if d is not None else []
    raise FileNotFoundError(f"config {name_or_path!r} not found (a YAML path, or one of: {', '.join(known) or '-'}).")


def load_config(path: str | os.PathLike | None = None, overrides: Mapping[str, Any] | None = None,
                cls: type[EngineConfig] = EngineConfig):
    """The defaults of ``cls``, then the YAML recipe at ``path`` (if any; it may ``base:`` another recipe), then
    ``overrides``.

    Args:
        cls: the task's config class (a subclass of :class:`EngineConfig`).

    A ``None`` in ``overrides`` sets the key to None (``--set clip_grad=null`` turns a recipe's clipping off); the
    command line leaves flags that were not given out of ``overrides``.
    """
    merged: dict[str, Any] = {}
    if path is not None:
        merged.update(_read_yaml(find_recipe(str(path))))
    merged.update(overrides or {})
    return cls.from_dict(merged)


def _read_yaml(path: Path, depth: int = 0) -> dict[str, Any]:
    """The recipe's keys over those of its ``base:`` chain."""
    with open(path, encoding="utf-8") as f:
        d = yaml.safe_load(f) or {}
    if not isinstance(d, dict):
        raise ValueError(f"{path} must hold a YAML mapping of config keys.")
    base = d.pop("base", None)
    if base and depth < 5:
        b = _read_yaml(find_recipe(str(path.parent / base) if (path.parent / base).exists() else base), depth + 1)
        b.update(d)
        d = b
    return d
