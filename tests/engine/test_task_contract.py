"""The engine names no task; the classification task's hooks keep its checkpoints from before the engine served
other tasks resumable; one AMP helper."""

import ast
from pathlib import Path

import pytest
import torch

import repvit.engine
from repvit.classification import ClassifyTask
from repvit.engine import TaskData, amp_dtype, autocast_context

ENGINE = Path(repvit.engine.__file__).parent
HIGHER = ("repvit.classification", "repvit.dense", "repvit.sam", "repvit.roadmap", "repvit.train", "repvit.cli",
          "repvit.bench", "repvit.deploy")


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


def test_an_old_classification_checkpoint_is_upgraded_then_checked():
    old = {"model": {}, "optimizer": {}, "epoch": 0, "config": {"model": "repvit_m0_6"}, "num_classes": 10,
           "best_top1": 87.5}  # written before checkpoints named their task
    task = ClassifyTask()
    ck = task.upgrade_checkpoint(old)
    assert ck["task"] == "classify" and ck["best"] == 87.5 and ck["meta"] == {"num_classes": 10}
    assert "task" not in old  # the checkpoint as read is left alone
    task.check_resume(ck, _cfg(), TaskData([], [], meta={"num_classes": 10}), "old.pt")
    with pytest.raises(ValueError, match=r"cannot resume old\.pt: it is a classify run of repvit_m0_6 with 10 "
                                         r"classes, this run is a classify run of repvit_m0_6 with 3 classes\."):
        task.check_resume(ck, _cfg(), TaskData([], [], meta={"num_classes": 3}), "old.pt")
    with pytest.raises(ValueError, match="of repvit_m0_6 with 10 classes, this run is a classify run of repvit_m1_1"):
        task.check_resume(ck, _cfg("repvit_m1_1"), TaskData([], [], meta={"num_classes": 10}), "old.pt")
    seg = {**old, "task": "segment", "best": 0.5}
    assert task.upgrade_checkpoint(seg) is seg
    with pytest.raises(ValueError, match="it is a segment run"):
        task.check_resume(seg, _cfg(), TaskData([], [], meta={"num_classes": 10}), "seg.pt")


def test_a_run_resumes_from_a_checkpoint_in_the_old_layout(tmp_path):
    pytest.importorskip("sklearn", reason="the digits set needs scikit-learn (pip install 'repvit-pytorch[digits]')")
    from repvit.classification import train
    from repvit.engine.checkpoint import load_train_checkpoint, save_train_checkpoint
    from tests.train._tiny import tiny

    first = train(tiny(tmp_path, epochs=1, model_ema=False, train_subset=64, val_subset=32))
    ck = load_train_checkpoint(tmp_path / "last.pt")
    for key in ("task", "best", "meta"):  # what the engine's checkpoints added later
        ck.pop(key)
    save_train_checkpoint(tmp_path / "last.pt", ck)
    res = train(tiny(tmp_path, epochs=2, model_ema=False, train_subset=64, val_subset=32, resume="auto"))
    assert res["epochs"] == 2 and res["steps"] == 2 * first["steps"]
    assert res["best_top1"] >= first["best_top1"]
    assert load_train_checkpoint(tmp_path / "last.pt")["task"] == "classify"


def test_amp_dtype_and_autocast():
    assert amp_dtype("float16") is torch.float16 and amp_dtype("bfloat16") is torch.bfloat16
    a = torch.ones(2, 2)
    with autocast_context(torch.device("cpu"), True, "bfloat16"):
        assert (a @ a).dtype == torch.bfloat16
    with autocast_context(torch.device("cpu"), False, torch.bfloat16):
        assert (a @ a).dtype == torch.float32
