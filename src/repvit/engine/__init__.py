"""The task-neutral training engine that every task package runs on. It names no task: a task plugs in through
:class:`Task` (``docs/training.md`` lists the task packages).

* :mod:`.task`        — the :class:`Task` contract and :class:`TaskData`
* :mod:`.run`         — :func:`run_task`: one run from data to ``OUTPUT/best.pt``, in named steps
* :mod:`.loop`        — :func:`train_one_epoch`, :class:`StepOptions`, :class:`NonFiniteLossError`
* :mod:`.config`      — :class:`EngineConfig` (every task's config extends it), recipes, ``--set`` overrides
* :mod:`.optim`       — optimiser, schedule with its warm-up cap, EMA (timm's factories)
* :mod:`.amp`         — the ``amp_dtype`` string as a torch dtype, the autocast context
* :mod:`.checkpoint`  — atomic training checkpoints, RNG state for exact resume
* :mod:`.distributed` — torchrun process group, all-reduce / all-gather helpers
* :mod:`.records`     — ``metrics.jsonl``, TensorBoard, the curves PNG
"""

from .amp import amp_dtype, autocast_context
from .config import EngineConfig, load_config, parse_overrides
from .loop import NonFiniteLossError, StepOptions, train_one_epoch
from .optim import build_ema, build_optimizer, build_scheduler, warmup_steps
from .run import RunContext, run_task
from .task import Task, TaskData

__all__ = [
    "EngineConfig",
    "load_config",
    "parse_overrides",
    "Task",
    "TaskData",
    "run_task",
    "RunContext",
    "train_one_epoch",
    "StepOptions",
    "NonFiniteLossError",
    "build_optimizer",
    "build_scheduler",
    "build_ema",
    "warmup_steps",
    "amp_dtype",
    "autocast_context",
]
