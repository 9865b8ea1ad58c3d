"""The task registry (``repvit.tasks``): every task's CLI module, checkpoint kind and weights kind come from it."""

from __future__ import annotations

import importlib

import pytest

from repvit import io
from repvit.tasks import TASKS, WEIGHT_KINDS, get_task, weights_task
from repvit.weights import WeightsEntry, get_weights, list_weights


@pytest.mark.parametrize("name", list(TASKS))
def test_each_task_has_its_command_and_its_checkpoint_kind(name):
    from repvit.cli.main import COMMANDS, build_parser

    task = get_task(name)
    assert COMMANDS[task.cli] == task.cli_module
    assert callable(importlib.import_module(task.cli_module).register)
    assert task.command.split()[1] in build_parser()._subparsers._group_actions[0].choices
    with pytest.raises(io.WrongTaskError, match=f"`{task.command}` \\({task.checkpoint} was expected\\)"):
        io.check_task({"model": {}, "task": "another"}, name)


def test_every_published_weight_is_of_a_registered_kind_and_layout():
    for n in list_weights():
        e = get_weights(n)
        assert e.layout in weights_task(e.task).layouts, n
    assert {get_weights(n).task for n in list_weights()} == set(WEIGHT_KINDS)


def test_unregistered_names_are_refused():
    with pytest.raises(KeyError, match="classify"):
        get_task("track")
    with pytest.raises(KeyError, match="sam"):
        weights_task("video")
    with pytest.raises(ValueError, match="unknown layout"):
        WeightsEntry("x", "m", "github", "mystery", "classify")
