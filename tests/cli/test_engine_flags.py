"""The training commands' shared flags (``repvit.cli._engine_flags``): made from ``EngineConfig``'s fields, resolved
the same way by ``train``, ``segment train``, ``detect train`` and ``sam distill``, printed on rank 0 only."""

from __future__ import annotations

import argparse
import dataclasses
import json

import pytest

from repvit.cli import _engine_flags
from repvit.cli.main import build_parser, main
from repvit.engine import EngineConfig
from repvit.runtime import device_arg

COMMANDS = [("train",), ("segment", "train"), ("detect", "train"), ("sam", "distill")]


def _subparser(path: tuple[str, ...]) -> argparse.ArgumentParser:
    p = build_parser()
    for name in path:
        p = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    return p


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_engine_flags_follow_the_fields(path):
    fields = {f.name: f for f in dataclasses.fields(EngineConfig)}
    seen = set()
    for a in _subparser(path)._actions:
        if a.dest not in fields:
            continue
        seen.add(a.dest)
        f = fields[a.dest]
        assert a.default is None, a.dest  # an unset flag overrides nothing
        if a.dest == "device":
            assert a.type is device_arg
        elif "bool" in str(f.type):
            assert isinstance(a, argparse._StoreTrueAction if f.default is False else argparse._StoreFalseAction)
        elif str(f.type).startswith(("int", "float")):
            assert a.type.__name__ == str(f.type).split()[0], a.dest
    assert {"data", "output_dir", "model", "epochs", "batch_size", "seed", "resume", "workers", "device", "threads",
            "amp", "img_size"} <= seen


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_print_config_defaults_set_flags(path, capsys):
    needs = ["--images", "photos"] if path == ("sam", "distill") else []  # its config wants a folder
    argv = [*path, *needs, "--set", "seed=5", "--set", "workers=3", "--seed", "7", "--epochs", "2", "--device", "auto",
            "--no-progress", "--amp", "--print-config"]
    assert main(argv) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert (cfg["seed"], cfg["workers"], cfg["epochs"], cfg["device"], cfg["progress"], cfg["amp"]) == (
        7, 3, 2, "auto", False, True)
    assert cfg["data"] == ("photos" if needs else "digits")
    with pytest.raises(SystemExit):
        main([*path, "--epochs", "two"])
    assert "invalid int value" in capsys.readouterr().err


def test_only_rank_zero_prints(monkeypatch, capsys):
    args = argparse.Namespace(print_config=False, json=False)
    res = {"interrupted": False}
    kw = {"summary": lambda r: {"ok": 1}, "describe": lambda r: "done"}
    monkeypatch.setenv("RANK", "1")
    assert _engine_flags.run_training(args, None, lambda cfg: res, **kw) == 0
    assert capsys.readouterr().out == ""
    monkeypatch.setenv("RANK", "0")
    assert _engine_flags.run_training(args, None, lambda cfg: res, **kw) == 0
    assert capsys.readouterr().out == "done\n"
    args.json, res["interrupted"] = True, True
    assert _engine_flags.run_training(args, None, lambda cfg: res, **kw) == 130
    assert json.loads(capsys.readouterr().out) == {"ok": 1}


def test_unknown_engine_field_is_refused():
    with pytest.raises(ValueError, match="not EngineConfig fields"):
        _engine_flags.add_engine_flags(argparse.ArgumentParser(), ["epochs", "detector"])
