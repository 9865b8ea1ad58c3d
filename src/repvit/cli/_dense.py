"""Parts the dense commands (``repvit segment``, ``repvit detect``) share: the command's parser, the checkpoint and
backbone arguments, the training settings, the training summary and the JSON-or-text output."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from typing import Any

from ._engine_flags import config_from_args
from ._pretrained import add_backbone_pretrained_arg, apply_backbone_pretrained


def add_task_parser(sub: argparse._SubParsersAction, name: str, *, help: str, description: str,
                    actions: Sequence[Callable[[argparse._SubParsersAction], None]]) -> None:
    """``repvit NAME`` with its sub-commands (``NAME_command``), each added by one of ``actions``; without a
    sub-command it prints its help and returns 2."""
    p = sub.add_parser(name, help=help, description=description)
    p.set_defaults(func=lambda a: p.print_help() or 2)
    sub_commands = p.add_subparsers(dest=f"{name}_command", metavar="ACTION")
    for add in actions:
        add(sub_commands)


def add_checkpoint_arg(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--checkpoint", required=True, metavar="NAME_OR_PATH", help=help)


def add_backbone_args(p: argparse.ArgumentParser, checkpoint_help: str) -> None:
    """``--backbone-pretrained`` and ``--backbone-checkpoint`` (the config's ``backbone_checkpoint``)."""
    add_backbone_pretrained_arg(p)
    p.add_argument("--backbone-checkpoint", metavar="F", help=checkpoint_help)


def task_config(args: argparse.Namespace, cls: type):
    """The ``cls`` config the training arguments describe (``--backbone-pretrained`` resolved to a file first)."""
    apply_backbone_pretrained(args)
    return config_from_args(args, cls)


def describe_run(res: dict[str, Any], command: str, best: str) -> str:
    """The end of a training run: how to resume it, or ``best`` (the best score, said) and the files written."""
    if res["interrupted"]:
        return (f"interrupted after {res['epochs']} complete epochs; resume with: repvit {command} train ... "
                f"--resume auto (checkpoint {res['last_checkpoint']})")
    text = (f"done: {res['epochs']} epochs ({res['steps']} steps) in {res['wall_time_s']:.0f} s, {best}\n"
            f"  best: {res['best_checkpoint']}\n  last: {res['last_checkpoint']}")
    return text + (f"\n  curves: {res['curves_png']}" if res["curves_png"] else "")


def print_result(args: argparse.Namespace, res: Any, text: Callable[[Any], str]) -> None:
    """``res`` as one JSON object with ``--json``, else as ``text(res)``."""
    print(json.dumps(res) if args.json else text(res))
