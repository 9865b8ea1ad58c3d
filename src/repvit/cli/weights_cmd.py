"""``repvit weights list|download|path``: the published weights by name (see docs/weights.md)."""

from __future__ import annotations

import argparse
import json

from repvit.tasks import WEIGHT_KINDS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("weights", help="published weights: list, download, path",
                       description="The published RepViT weights (timm's on Hugging Face, the authors' GitHub "
                                   "release, EdgeSAM) by name. Hugging Face files go to its cache (HF_HOME, "
                                   "HF_ENDPOINT); GitHub files to torch.hub's (TORCH_HOME; REPVIT_WEIGHTS_MIRROR "
                                   "replaces https://github.com/). HF_HUB_OFFLINE=1 or REPVIT_OFFLINE=1: no downloads.")
    wsub = p.add_subparsers(dest="weights_command", metavar="ACTION")
    ls = wsub.add_parser("list", help="every name with its model, host, URL and whether it is cached")
    ls.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'repvit_m1_1*'")
    ls.add_argument("--task", choices=WEIGHT_KINDS, help="only weights of this kind")
    ls.add_argument("--json", action="store_true", help="one JSON list")
    ls.set_defaults(func=run_list)
    dl = wsub.add_parser("download", help="download weights into the cache (with a progress bar)")
    dl.add_argument("names", nargs="+", metavar="NAME", help="weights names (or model names: their default)")
    dl.add_argument("--force", action="store_true", help="download again, replacing a cached copy")
    dl.add_argument("--no-progress", action="store_true")
    dl.set_defaults(func=run_download)
    pa = wsub.add_parser("path", help="the local file of the weights (downloaded first if needed)")
    pa.add_argument("name", metavar="NAME")
    pa.add_argument("--no-download", action="store_true",
                    help="print where the file is, or where a hand-downloaded copy goes; exit 1 if absent")
    pa.set_defaults(func=run_path)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _row(name: str) -> dict:
    from repvit.weights import cached_path, get_weights, manual_path, second_url, weights_url

    e = get_weights(name)
    found = cached_path(e)
    return {"name": e.name, "model": e.model, "task": e.task, "host": e.host, "layout": e.layout,
            "url": weights_url(e), "second_url": second_url(e), "cached": found is not None,
            "path": str(found or manual_path(e)),
            "description": e.description}


def run_list(args: argparse.Namespace) -> int:
    from repvit.weights import list_weights

    rows = [_row(n) for n in list_weights(args.pattern, task=args.task)]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print(f"no weights match {args.pattern!r}")
        return 1
    w = max(len(r["name"]) for r in rows)
    m = max(len(r["model"]) for r in rows)
    for r in rows:
        print(f"{r['name']:<{w}}  {r['model']:<{m}}  {r['task']:<8}  {r['host']:<11}  "
              f"{'cached' if r['cached'] else '-':<6}  {r['url']}")
    return 0


def run_download(args: argparse.Namespace) -> int:
    from repvit.weights import download_weights, get_weights

    entries = [get_weights(n) for n in args.names]  # unknown names fail before anything is downloaded
    for e in entries:
        path = download_weights(e, progress=not args.no_progress, force=args.force)
        print(f"{e.name}: {path}")
    return 0


def run_path(args: argparse.Namespace) -> int:
    from repvit.weights import cached_path, get_weights, manual_path, resolve_weights

    if args.no_download:
        e = get_weights(args.name)
        found = cached_path(e)
        print(found or manual_path(e))
        return 0 if found else 1
    print(resolve_weights(args.name))
    return 0
