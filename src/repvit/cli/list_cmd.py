"""``repvit list [PATTERN]``: the registered models."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list the registered models")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'repvit_m1*'")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from repvit.models import get_model_entry, list_models

    names = list_models(args.pattern)
    if args.json:
        print(json.dumps(names))
        return 0
    width = max((len(n) for n in names), default=10)
    for n in names:
        print(f"{n:<{width}}  {get_model_entry(n).description}")
    return 0
