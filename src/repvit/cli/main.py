"""``repvit`` entry point: builds the parser from the sub-command modules and turns errors into one line."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

__all__ = ["main", "build_parser", "COMMANDS"]

# sub-command name -> module in repvit.cli (each has ``register(subparsers)`` that sets ``func`` on its parser)
COMMANDS = {
    "list": "list_cmd",
    "info": "info_cmd",
    "convert": "convert_cmd",
    "demo": "demo_cmd",
    "train": "train_cmd",
    "eval": "eval_cmd",
    "predict": "predict_cmd",
    "export": "export_cmd",
    "bench": "bench_cmd",
    "roadmap": "roadmap_cmd",
    "segment": "segment_cmd",
    "detect": "detect_cmd",
    "sam": "sam_cmd",
    "weights": "weights_cmd",
}


def build_parser() -> argparse.ArgumentParser:
    from repvit import __version__

    parser = argparse.ArgumentParser(prog="repvit", description="RepViT models: build, fuse, train, export, measure.")
    parser.add_argument("--version", action="version", version=f"repvit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS.values():
        try:
            mod = importlib.import_module(f"repvit.cli.{module}")
        except ModuleNotFoundError as e:
            if e.name == f"repvit.cli.{module}":
                continue  # sub-command not available in this build
            raise
        mod.register(sub)
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
