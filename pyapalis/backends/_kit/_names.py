"""The task name a shared backend stores beside a task, decided in one place.

A typed task (:class:`~pyapalis.BackgroundTask`) carries its ``TASK_NAME`` in
its metadata, under :data:`TYPED_INFO_KEY`. A shared backend stores that name
in a column (a hash field) when the task is pushed, so that a claim can take
only the names a consumer knows (``LeaseStore.exchange(..., names=...)``, used
by a :class:`~pyapalis.WorkerPool` through ``FiltersTaskNames``): in a
mixed-version deploy, a pool that does not know a new task type leaves its
tasks Pending for a pool that does. Every backend derives the name with
:func:`task_name_of`, so they all take the same decision.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["TYPED_INFO_KEY", "check_task_names", "task_name_of"]

TYPED_INFO_KEY = "pyapalis.background"
"""The task-metadata key under which a typed task keeps its name, hash and creation time."""


def task_name_of(ctx: Any) -> str | None:
    """The typed-task name recorded in a task's metadata ``ctx``, or None (not a typed task)."""
    if not isinstance(ctx, dict):
        return None
    info = ctx.get(TYPED_INFO_KEY)
    if not isinstance(info, dict):
        return None
    name = info.get("task_name")
    return name if isinstance(name, str) and name else None


def check_task_names(names: Iterable[str], owner: str) -> frozenset[str]:
    """``names`` as a frozenset of non-empty strings, at least one; else ValueError/TypeError.

    ``owner`` names the caller in the message (``"SqliteStorage.only_task_names"``).
    """
    if isinstance(names, (str, bytes)):
        raise TypeError(f"{owner}: names must be an iterable of task names, not one {names!r}")
    found = frozenset(names)
    for name in found:
        if not isinstance(name, str) or not name:
            raise TypeError(f"{owner}: every task name must be a non-empty str, got {name!r}")
    if not found:
        raise ValueError(
            f"{owner}: at least one task name is needed (a view of none takes nothing)"
        )
    return found
