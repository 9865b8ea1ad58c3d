"""The tasks repvit trains, registered in one place.

A task has a name (recorded in its training checkpoints), a command that trains it, a ``repvit`` sub-command whose
module registers that command, and a kind of published weights (:mod:`repvit.weights`) with the file layouts of that
kind and the function that loads them. Everything else reads this table: :func:`repvit.io.check_task` (whose
checkpoint is this), the weights registry and ``repvit weights list --task``, the ``repvit`` parser, and
:func:`repvit.create_model` (which weights are not a classifier's).

Adding a task: its package, its CLI module, and one :class:`TaskSpec` line in :data:`TASKS`. Modules are named by
dotted strings, so this module imports nothing of repvit and sits below every other package.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TaskSpec", "TASKS", "WEIGHT_KINDS", "WEIGHT_LAYOUTS", "get_task", "weights_task"]


@dataclass(frozen=True)
class TaskSpec:
    """One task.

    Attributes:
        name: the task recorded in its training checkpoints (``classify``, ``segment``, ...).
        checkpoint: what its training checkpoint is, for error messages.
        command: the command that trains it (``repvit segment train``).
        cli: the ``repvit`` sub-command that holds its commands (``segment``).
        cli_module: the module that registers that sub-command (``register(subparsers)``).
        weights: the kind of published weights it makes (``WeightsEntry.task`` in :mod:`repvit.weights`).
        layouts: the layouts of published weights of that kind.
        loader: the function that loads published weights of that kind, for error messages.
    """

    name: str
    checkpoint: str
    command: str
    cli: str
    cli_module: str
    weights: str
    layouts: tuple[str, ...]
    loader: str


TASKS: dict[str, TaskSpec] = {t.name: t for t in (
    TaskSpec("classify", "a classification checkpoint", "repvit train", "train", "repvit.cli.train_cmd",
             "classify", ("timm", "authors_cls"), "repvit.create_model"),
    TaskSpec("segment", "a segmentation checkpoint", "repvit segment train", "segment", "repvit.cli.segment_cmd",
             "segment", ("mmseg_semfpn",), "repvit.load_segmenter"),
    TaskSpec("detect", "a detection checkpoint", "repvit detect train", "detect", "repvit.cli.detect_cmd",
             "detect", ("mmdet_maskrcnn",), "repvit.load_detector"),
    TaskSpec("sam-distill", "a RepViT-SAM distillation checkpoint", "repvit sam distill", "sam",
             "repvit.cli.sam_cmd", "sam", ("repvit_sam", "edge_sam", "edgetam"), "repvit.sam.build_repvit_sam"),
)}

# the kinds of published weights and their layouts, in the order of TASKS
WEIGHT_KINDS: tuple[str, ...] = tuple(t.weights for t in TASKS.values())
WEIGHT_LAYOUTS: tuple[str, ...] = tuple(layout for t in TASKS.values() for layout in t.layouts)


def get_task(name: str) -> TaskSpec:
    """The task of that name.

    Raises:
        KeyError: not a registered task (the message lists them).
    """
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; the tasks are {', '.join(TASKS)}.") from None


def weights_task(kind: str) -> TaskSpec:
    """The task whose published weights are of ``kind`` (``classify``, ``segment``, ``detect``, ``sam``).

    Raises:
        KeyError: no task makes weights of that kind.
    """
    for task in TASKS.values():
        if task.weights == kind:
            return task
    raise KeyError(f"unknown weights kind {kind!r}; the kinds are {', '.join(WEIGHT_KINDS)}.")
