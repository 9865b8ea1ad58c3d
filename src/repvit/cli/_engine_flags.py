"""The flags the training commands share (``train``, ``segment train``, ``detect train``, ``sam distill``) and the one
way from their arguments to the task's config.

A command picks the :class:`~repvit.engine.EngineConfig` fields it offers as flags; :func:`add_engine_flags` makes
each from its dataclass field: ``--img-size`` for ``img_size``, the field's type (``int``, ``float``, ``str``; a
bool field is a switch, ``--no-X`` when it defaults to True; ``--device`` is :func:`repvit.runtime.add_device_arg`'s).
Every one defaults to None, so a flag left unset overrides nothing. Besides them every training command gets
``--config``, ``--set``, ``--no-progress``, ``--print-config`` and ``--json``.

:func:`config_from_args` resolves the settings, defaults < ``--config`` YAML < ``--set KEY=VALUE`` < the named flags:
every parsed argument whose ``dest`` is a field of the config class and whose value is not None is a flag override
(so a task's own flags, added by its command with ``dest`` = the field, need no list either).
:func:`run_training` prints the config for ``--print-config``, trains, and prints the summary on rank 0 only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import typing
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from repvit.runtime import add_device_arg

__all__ = ["add_engine_flags", "config_from_args", "run_training", "is_rank_zero"]

# help of the engine fields offered as flags (a field's own ``metadata["help"]`` wins over these)
ENGINE_HELP: dict[str, str] = {
    "model": "model name (repvit list)",
    "data": "'digits' (built-in) or a data folder",
    "output_dir": "where last.pt, best.pt, metrics.jsonl and curves.png go",
    "num_classes": "class count (default: from the data)",
    "img_size": "input size",
    "epochs": "training epochs",
    "iters": "total optimiser steps (overrides --epochs)",
    "batch_size": "per process",
    "lr": "learning rate for a total batch of lr_base_batch (scaled to the real batch)",
    "seed": "random seed",
    "resume": "'auto' (OUTPUT/last.pt if present) or a checkpoint path",
    "workers": "data loader processes",
    "device": "auto (cuda when available), cpu, cuda or cuda:N",
    "threads": "CPU threads per process",
    "amp": "mixed precision (bfloat16; float16 via amp_dtype)",
    "amp_dtype": "the mixed-precision dtype",
    "channels_last": "channels-last memory format",
    "compile": "torch.compile the model",
    "sync_bn": "SyncBatchNorm under DDP",
    "strict_data": "stop on an unreadable image instead of skipping it",
    "model_ema": "no model EMA",
}
# fields whose values are a fixed set (argparse checks them before any work is done)
_CHOICES: dict[str, tuple[str, ...]] = {"amp_dtype": ("bfloat16", "float16")}


def _engine_fields() -> dict[str, tuple[dataclasses.Field, type]]:
    """``name -> (field, its type without None)`` of :class:`~repvit.engine.EngineConfig`."""
    from repvit.engine import EngineConfig

    hints = typing.get_type_hints(EngineConfig)
    out = {}
    for f in dataclasses.fields(EngineConfig):
        types = [t for t in typing.get_args(hints[f.name]) if t is not type(None)] or [hints[f.name]]
        out[f.name] = (f, types[0])
    return out


def add_engine_flags(p: argparse.ArgumentParser, keys: Sequence[str], *, helps: Mapping[str, str] | None = None,
                     names: Mapping[str, str] | None = None, exclusive: Collection[str] = (),
                     config_default: str | None = None, recipes: str = "", set_help: str | None = None) -> None:
    """Add ``--config``, ``--set``, a flag for each engine field in ``keys``, ``--no-progress``, ``--print-config``
    and ``--json`` to a training command's parser.

    Args:
        p: the command's parser.
        keys: the :class:`~repvit.engine.EngineConfig` fields the command offers, in the order of its ``--help``.
        helps: help for a field in this task's words (default: the field's ``metadata["help"]``, else the shared
            table).
        names: a flag named otherwise than ``--FIELD`` (e.g. ``{"data": "--images"}``).
        exclusive: fields whose flags exclude each other (``epochs`` and ``iters``).
        config_default: the recipe used without ``--config`` (None: the config class's defaults).
        recipes: example recipe names for ``--config``'s help.
        set_help: ``--set``'s help (default: "override any config key (repeatable)").

    Raises:
        ValueError: a key that is not an engine field.
    """
    fields = _engine_fields()
    unknown = [k for k in keys if k not in fields]
    if unknown:
        raise ValueError(f"{unknown} are not EngineConfig fields; add a task's own flags in its command module.")
    helps, names = dict(helps or {}), dict(names or {})
    p.add_argument("--config", default=config_default,
                   help="YAML recipe: a path or a name in configs/" + (f" ({recipes})" if recipes else ""))
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=set_help or "override any config key (repeatable)")
    group = p.add_mutually_exclusive_group() if exclusive else None
    for key in keys:
        f, ftype = fields[key]
        target = group if key in exclusive else p
        kw: dict[str, Any] = {"dest": key, "default": None,
                              "help": helps.get(key) or f.metadata.get("help") or ENGINE_HELP.get(key)}
        if key == "device":
            add_device_arg(target, default=None, help=kw["help"])
            continue
        if ftype is bool:
            kw["action"] = "store_false" if f.default is True else "store_true"
            flag = names.get(key) or ("--no-" if f.default is True else "--") + key.replace("_", "-")
        else:
            flag = names.get(key) or "--" + key.replace("_", "-")
            if key in _CHOICES:
                kw["choices"] = list(_CHOICES[key])
            elif ftype is not str:
                kw["type"] = ftype
        target.add_argument(flag, **kw)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--json", action="store_true", help="print the run summary as one JSON object")


def config_from_args(args: argparse.Namespace, cls: type):
    """The ``cls`` config the arguments describe: its defaults < ``--config`` < ``--set`` < the flags that were given
    (every argument named after a field of ``cls``)."""
    from repvit.engine import load_config, parse_overrides

    keys = {f.name for f in dataclasses.fields(cls)}
    overrides = parse_overrides(args.overrides)
    overrides.update({k: v for k, v in vars(args).items() if k in keys and v is not None})
    if args.no_progress:
        overrides["progress"] = False
    return load_config(args.config, overrides, cls=cls)


def is_rank_zero() -> bool:
    """Whether this process prints: rank 0 of a torchrun job, or a single process."""
    return int(os.environ.get("RANK", "0")) == 0


def run_training(args: argparse.Namespace, cfg, fit: Callable[[Any], dict[str, Any]], *,
                 summary: Callable[[dict[str, Any]], dict[str, Any]], describe: Callable[[dict[str, Any]], str]) -> int:
    """``--print-config``, or train with ``fit(cfg)`` and print (rank 0 only) the run's JSON ``summary`` (``--json``)
    or its ``describe`` text. Returns 130 for an interrupted run, else 0 (always 0 on other ranks)."""
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=1))
        return 0
    res = fit(cfg)
    if not is_rank_zero():
        return 0
    print(json.dumps(summary(res)) if args.json else describe(res))
    return 130 if res["interrupted"] else 0
