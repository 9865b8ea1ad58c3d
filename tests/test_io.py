"""``repvit.io``: atomic writes, safe loading, safetensors, and refusing another task's checkpoint."""

from __future__ import annotations

import pytest
import torch

from repvit import io


class _NotPlainData:
    pass


def test_atomic_write_replaces_or_leaves_the_old_file(tmp_path):
    target = tmp_path / "sub" / "a.bin"
    assert io.atomic_write(target, lambda tmp: open(tmp, "wb").write(b"one")) == target
    assert target.read_bytes() == b"one"

    def fail(tmp):
        open(tmp, "wb").write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        io.atomic_write(target, fail)
    assert target.read_bytes() == b"one"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.bin"]  # no temporary file left behind


def test_load_torch_is_weights_only_with_readable_errors(tmp_path):
    torch.save({"w": torch.ones(2)}, tmp_path / "ok.pt")
    assert torch.equal(io.load_torch(tmp_path / "ok.pt")["w"], torch.ones(2))
    torch.save({"w": _NotPlainData()}, tmp_path / "obj.pt")
    with pytest.raises(io.CheckpointError, match="not plain data"):
        io.load_torch(tmp_path / "obj.pt")
    (tmp_path / "bad.pt").write_bytes((tmp_path / "ok.pt").read_bytes()[:200])  # truncated
    with pytest.raises(io.CheckpointError, match="corrupt or truncated"):
        io.load_torch(tmp_path / "bad.pt")


def test_read_safetensors_matches_the_library(tmp_path):
    from safetensors.torch import load_file, save_file

    sd = {"a": torch.randn(3, 2), "b": torch.arange(4)}
    save_file(sd, tmp_path / "w.safetensors", metadata={"format": "x"})
    got, meta = io.read_safetensors(tmp_path / "w.safetensors")
    ref = load_file(tmp_path / "w.safetensors")
    assert got.keys() == ref.keys() and all(torch.equal(got[k], ref[k]) for k in ref) and meta == {"format": "x"}
    (tmp_path / "t.safetensors").write_bytes((tmp_path / "w.safetensors").read_bytes()[:40])
    with pytest.raises(io.CheckpointError, match="corrupt or truncated"):
        io.read_safetensors(tmp_path / "t.safetensors")


def test_strip_prefixes():
    t = torch.zeros(1)
    assert list(io.strip_prefixes({"module._orig_mod.a": t, "module._orig_mod.b": t})) == ["a", "b"]
    assert list(io.strip_prefixes({"model.a": t, "head.b": t})) == ["model.a", "head.b"]


def test_check_task_names_both_tasks():
    seg = {"model": {}, "optimizer": {}, "config": {}, "task": "segment"}
    io.check_task(seg, "segment")
    with pytest.raises(io.WrongTaskError, match=r"x\.pt is a training checkpoint of task 'segment', not of "
                                                r"`repvit detect train` \(a detection checkpoint"):
        io.check_task(seg, "detect", "x.pt")
    no_task = {"model": {}, "optimizer": {}, "config": {}}  # a checkpoint names its task, or is not a training one
    assert io.checkpoint_task(no_task) is None and io.checkpoint_task({"w": torch.ones(1)}) is None
    with pytest.raises(io.WrongTaskError, match="is not a training checkpoint, not of `repvit train`"):
        io.check_task(no_task, "classify")
    with pytest.raises(ValueError, match="not a training checkpoint.*Use --backbone-checkpoint"):
        io.check_task({"w": torch.ones(1)}, "segment", hint="Use --backbone-checkpoint.")
