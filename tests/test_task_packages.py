"""The task packages mirror each other (the same file for the same role, no file for an empty role), and every public
name has one home: a module's ``__all__`` lists only what the module defines, and only package ``__init__`` files
gather names from their submodules."""

import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import repvit

SRC = Path(__file__).resolve().parents[1] / "src" / "repvit"

ROLES = {"__init__", "config", "model", "data", "metrics", "evaluate", "predict", "task"}
PACKAGES = {
    # package: (its files beyond the shared roles, the shared roles it has no file for)
    "classification": ({"distill"}, {"metrics"}),
    "dense/segmentation": ({"export", "authors"}, set()),
    "dense/detection": ({"export", "authors", "coco"}, set()),
    "sam_distill": ({"loss", "embed_cache", "mask_annotations", "prompt_sampling"}, {"metrics", "predict"}),
}


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_task_packages_have_the_same_files_for_the_same_roles(package):
    extra, empty = PACKAGES[package]
    files = {f.stem for f in (SRC / package).glob("*.py")}
    assert files == (ROLES - empty) | extra


def _modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(repvit.__path__, "repvit."):
        if not info.ispkg and info.name.rsplit(".", 1)[-1] != "__main__":
            names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("module", _modules())
def test_a_module_exports_only_what_it_defines(module):
    try:
        mod = importlib.import_module(module)
    except ImportError as e:  # a module of an optional extra that is not installed
        pytest.skip(f"{module}: {e}")
    borrowed = []
    for name in getattr(mod, "__all__", ()):
        obj = getattr(mod, name)
        home = getattr(obj, "__module__", None) if inspect.isfunction(obj) or inspect.isclass(obj) else None
        if home and home.startswith("repvit.") and home != module:
            borrowed.append(f"{name} (defined in {home})")
    assert not borrowed, f"{module} re-exports {borrowed}: import them from their home instead"
