"""The import structure of ``src/repvit``: packages sit in layers and import only from lower ones (lazy imports inside
functions count too), so there is no import cycle and the sibling tasks do not import each other."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "repvit"

# lowest first; a package may import only from a strictly lower layer
LAYERS = [
    {"tasks"},  # the task registry: names, checkpoint and weight kinds, CLI modules
    {"io", "runtime"},  # files, devices, threads
    {"weights"},  # the published weights: names, hosts, downloads
    {"models", "data"},  # the architectures and checkpoints; datasets, loaders, transforms
    {"engine", "deploy"},  # the task-neutral training engine; export and runtimes
    # what the tasks share; SAM's models
    {"dense.backbone", "dense.scenes", "dense.checkpoint", "dense.roi_align", "bench", "sam"},
    {"dense"},  # ``repvit.dense``: the shared dense parts, gathered
    {"classification", "dense.segmentation", "dense.detection", "sam_distill"},  # the four tasks, siblings
    {"roadmap"},  # the paper's roadmap (on classification)
    {"<root>"},  # the public facade: ``import repvit``
    {"cli"},
    {"__main__"},
]
LAYER = {pkg: i for i, layer in enumerate(LAYERS) for pkg in layer}


def _package(parts: list[str]) -> str:
    """``repvit.dense.detection.task`` -> ``dense.detection``; ``repvit.io`` -> ``io``; ``repvit`` -> ``<root>``."""
    if len(parts) < 2:
        return "<root>"
    if parts[1] == "dense" and len(parts) > 2:
        return "dense." + parts[2]
    return parts[1]


def _edges() -> dict[tuple[str, str], str]:
    """(importer package, imported package) -> one place it happens."""
    edges = {}
    for f in sorted(SRC.rglob("*.py")):
        parts = ["repvit", *f.relative_to(SRC).with_suffix("").parts]
        is_init = parts[-1] == "__init__"
        if is_init:
            parts = parts[:-1]
        here = _package(parts)
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name.split(".") for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = parts if is_init else parts[:-1]
                    base = base[: len(base) - node.level + 1]
                    mod = base + (node.module.split(".") if node.module else [])
                    targets = [mod] if node.module else [mod + [a.name] for a in node.names]
                else:
                    targets = [node.module.split(".")]
            else:
                continue
            for t in targets:
                if t[0] == "repvit" and _package(t) != here:
                    edges.setdefault((here, _package(t)), f"{f.relative_to(SRC.parent)}:{node.lineno}")
    return edges


EDGES = _edges()


def test_every_package_has_a_layer():
    packages = {p for e in EDGES for p in e}
    missing = sorted(packages - set(LAYER))
    assert not missing, f"place the new package(s) {missing} in a layer of LAYERS in {__file__}"


@pytest.mark.parametrize("edge", sorted(EDGES), ids=lambda e: f"{e[0]}->{e[1]}")
def test_imports_go_down_the_layers(edge):
    src, dst = edge
    if src in LAYER and dst in LAYER:
        assert LAYER[dst] < LAYER[src], (f"{EDGES[edge]}: {src} (layer {LAYER[src]}) imports {dst} (layer "
                                         f"{LAYER[dst]}); move the shared code down or the import up")


def test_the_check_sees_imports():
    """The parser finds what it must: the CLI imports the engine, a task imports it lazily inside a function."""
    assert ("cli", "engine") in EDGES and ("classification", "engine") in EDGES
    assert ("dense.segmentation", "dense.checkpoint") in EDGES  # only imported inside functions
    assert ("engine", "classification") not in EDGES
