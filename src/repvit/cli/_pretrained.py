"""``--pretrained [NAME]``: the flag the train, eval, predict, export and bench commands share."""

from __future__ import annotations

import argparse

__all__ = ["add_pretrained_arg", "pretrained_weights", "pretrained_file", "checkpoint_and_model",
           "add_backbone_pretrained_arg", "apply_backbone_pretrained"]


def add_pretrained_arg(p: argparse.ArgumentParser, what: str) -> None:
    """Add ``--pretrained [NAME]``: alone, the model's default published weights; with a NAME, those weights."""
    p.add_argument("--pretrained", nargs="?", const=True, default=None, metavar="NAME",
                   help=f"{what}: published weights by name (repvit weights list), downloaded once and cached; "
                        "alone, the --model's default weights (timm's default tag)")


def pretrained_weights(value: bool | str, model: str | None):
    """The :class:`repvit.weights.WeightsEntry` of a classifier that ``--pretrained`` (with ``--model``) names."""
    from repvit.weights import WeightsEntry, lookup

    if value is True:
        if not model:
            raise ValueError("--pretrained without a NAME needs --model (e.g. --model repvit_m0_9 --pretrained), "
                             "or name the weights: --pretrained repvit_m0_9.dist_450e_in1k.")
        value = model
    found = lookup(str(value), kind="classify")
    if not isinstance(found, WeightsEntry):
        raise ValueError(f"--pretrained takes published weights (repvit weights list); pass the file {found} with "
                         "--checkpoint.")
    return found


def pretrained_file(value: bool | str, model: str | None) -> tuple[str, str]:
    """``(local file, model name)`` for ``--pretrained``: the weights downloaded (or found in the cache)."""
    from repvit.weights import resolve_weights

    entry = pretrained_weights(value, model)
    return str(resolve_weights(entry)), entry.model or model


def checkpoint_and_model(args: argparse.Namespace) -> tuple[str, str | None]:
    """``(checkpoint file, model name)`` from ``--checkpoint`` / ``--pretrained`` and ``--model`` (eval, predict):
    exactly one of the first two; published weights are downloaded (or found in the cache) and name their model."""
    if args.pretrained is not None:
        if args.checkpoint:
            raise ValueError("pass --checkpoint or --pretrained, not both.")
        return pretrained_file(args.pretrained, args.model)
    if not args.checkpoint:
        raise ValueError("pass --checkpoint FILE or --pretrained [NAME] (see `repvit weights list`).")
    return args.checkpoint, args.model


def add_backbone_pretrained_arg(p: argparse.ArgumentParser) -> None:
    """Add ``--backbone-pretrained NAME`` (segment train, detect train)."""
    p.add_argument("--backbone-pretrained", metavar="NAME",
                   help="backbone weights by published name, downloaded once and cached: a classifier "
                        "(repvit_m1_1.dist_450e_in1k, or a model name for its default weights) or the authors' dense "
                        "files (repvit_m1_1_ade20k, repvit_m1_1_coco); sets --model to its architecture")


def apply_backbone_pretrained(args: argparse.Namespace) -> None:
    """Turn ``--backbone-pretrained NAME`` into ``--backbone-checkpoint FILE`` (downloaded or found in the cache) and,
    when ``--model`` is not given, ``--model`` (the weights' architecture)."""
    name = getattr(args, "backbone_pretrained", None)
    if not name:
        return
    from repvit.weights import get_weights, resolve_weights

    if getattr(args, "backbone_checkpoint", None):
        raise ValueError("pass --backbone-checkpoint or --backbone-pretrained, not both.")
    entry = get_weights(name)
    if entry.task not in ("classify", "segment", "detect"):
        raise ValueError(f"--backbone-pretrained {entry.name} holds {entry.task} weights; give a classifier's "
                         "(repvit weights list) or the authors' _ade20k / _coco files.")
    if args.model and args.model != entry.model:
        raise ValueError(f"--backbone-pretrained {entry.name} holds a {entry.model} backbone, not --model "
                         f"{args.model}; drop --model or pick weights of that model.")
    args.backbone_checkpoint = str(resolve_weights(entry))
    args.model = entry.model
