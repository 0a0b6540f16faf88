"""The pure-Python twin of ``csrc/_execution.pxi``: per-execution helpers."""

from __future__ import annotations

from ._pycore import Task
from ._status import Status

__all__ = ["begin_execution", "set_status", "undo_attempt"]


def begin_execution(task: Task) -> float | None:
    """Count an execution and mark the task Running.

    Returns the task's own timeout in seconds, or None: the worker needs it
    next, and handing it back here saves a property lookup per task.
    """
    task.parts.attempt.increment()
    task.parts.status = Status.Running
    return task.parts.timeout


def undo_attempt(task: Task) -> None:
    """Un-count an execution that was interrupted before it could finish."""
    attempt = task.parts.attempt
    if attempt._count > 0:
        attempt._count -= 1


def set_status(task: Task, status: Status) -> None:
    """Set a task's status."""
    task.parts.status = status
