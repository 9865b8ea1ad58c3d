"""``repvit`` entry point: builds the parser from the sub-command modules and turns errors into one line."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from repvit.tasks import TASKS

__all__ = ["main", "build_parser", "COMMANDS"]

# sub-command name -> its module (each has ``register(subparsers)`` that sets ``func`` on its parser); the tasks'
# sub-commands come from repvit.tasks
COMMANDS: dict[str, str] = {
    "list": "repvit.cli.list_cmd",
    "info": "repvit.cli.info_cmd",
    "convert": "repvit.cli.convert_cmd",
    "demo": "repvit.cli.demo_cmd",
    "eval": "repvit.cli.eval_cmd",
    "predict": "repvit.cli.predict_cmd",
    "export": "repvit.cli.export_cmd",
    "bench": "repvit.cli.bench_cmd",
    "roadmap": "repvit.cli.roadmap_cmd",
    **{task.cli: task.cli_module for task in TASKS.values()},
    "weights": "repvit.cli.weights_cmd",
}


def build_parser() -> argparse.ArgumentParser:
    from repvit import __version__

    parser = argparse.ArgumentParser(prog="repvit", description="RepViT models: build, fuse, train, export, measure.")
    parser.add_argument("--version", action="version", version=f"repvit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS.values():
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
        return int(rc or 0)
    except KeyboardInterrupt:
        print("repvit: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, FileNotFoundError, ImportError, RuntimeError, OSError) as e:
        if args.verbose:
            raise
        print(f"repvit {args.command}: error: {e}", file=sys.stderr)
        return 1
