"""Compatibility path: the :class:`Task` contract lives in :mod:`repvit.engine.task`."""

from repvit.engine.task import Task, TaskData

__all__ = ["TaskData", "Task"]
