"""The engine names no task; a task refuses to resume another run's checkpoint; one AMP helper."""

import ast
from pathlib import Path

import pytest
import torch

import repvit.engine
from repvit.classification import ClassifyTask
from repvit.engine import TaskData, amp_dtype, autocast_context

ENGINE = Path(repvit.engine.__file__).parent
HIGHER = ("repvit.classification", "repvit.dense", "repvit.sam", "repvit.roadmap", "repvit.cli", "repvit.bench",
          "repvit.deploy")


def _imports(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            out.append(node.module or "")
    return out


@pytest.mark.parametrize("path", sorted(ENGINE.glob("*.py")), ids=lambda p: p.name)
def test_the_engine_imports_and_names_no_task(path):
    assert not [m for m in _imports(path) if m.startswith(HIGHER)]
    text = path.read_text(encoding="utf-8")
    assert "classify" not in text and "top1" not in text


def _cfg(model="repvit_m0_6"):
    return type("Cfg", (), {"model": model})()


def test_check_resume_refuses_another_run():
    ck = {"model": {}, "optimizer": {}, "epoch": 0, "config": {"model": "repvit_m0_6"}, "task": "classify",
          "best": 87.5, "meta": {"num_classes": 10}}
    task = ClassifyTask()
    task.check_resume(ck, _cfg(), TaskData([], [], meta={"num_classes": 10}), "old.pt")
    with pytest.raises(ValueError, match=r"cannot resume old\.pt: it is a classify run of repvit_m0_6 with 10 "
                                         r"classes, this run is a classify run of repvit_m0_6 with 3 classes\."):
        task.check_resume(ck, _cfg(), TaskData([], [], meta={"num_classes": 3}), "old.pt")
    with pytest.raises(ValueError, match="of repvit_m0_6 with 10 classes, this run is a classify run of repvit_m1_1"):
        task.check_resume(ck, _cfg("repvit_m1_1"), TaskData([], [], meta={"num_classes": 10}), "old.pt")
    seg = {**ck, "task": "segment", "best": 0.5}
    with pytest.raises(ValueError, match="it is a segment run"):
        task.check_resume(seg, _cfg(), TaskData([], [], meta={"num_classes": 10}), "seg.pt")


def test_amp_dtype_and_autocast():
    assert amp_dtype("float16") is torch.float16 and amp_dtype("bfloat16") is torch.bfloat16
    a = torch.ones(2, 2)
    with autocast_context(torch.device("cpu"), True, "bfloat16"):
        assert (a @ a).dtype == torch.bfloat16
    with autocast_context(torch.device("cpu"), False, torch.bfloat16):
        assert (a @ a).dtype == torch.float32
