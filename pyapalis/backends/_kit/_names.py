"""The task name a shared backend stores beside a task, decided in one place.

A typed task (:class:`~pyapalis.BackgroundTask`) is stored as the envelope
``{"task_name": ..., "payload": ...}``, and a :class:`~pyapalis.WorkerPool`
dispatches on that name. A shared backend stores the name in a column (a hash
field) when the task is pushed, so that a claim can take only the names a
consumer knows (``LeaseStore.exchange(..., names=...)``, used by a pool
through ``FiltersTaskNames``): in a mixed-version deploy, a pool that does not
know a new task type leaves its tasks Pending for a pool that does. Every
backend, and the pool's decoding, reads the name with :func:`task_name_of`, so
they all take the same decision (an envelope pushed by hand is named too).

:data:`TYPED_INFO_KEY` is where a typed task keeps its name, uniqueness hash
and creation time in its metadata (read by backends that index the hash).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["TYPED_INFO_KEY", "check_task_names", "task_name_of", "typed_unique_key"]

TYPED_INFO_KEY = "pyapalis.background"
"""The task-metadata key under which a typed task keeps its name, hash and creation time."""


def task_name_of(args: Any) -> str | None:
    """The name of a typed task's envelope ``args`` (its ``"task_name"``), or None (not one)."""
    if not isinstance(args, dict):
        return None
    name = args.get("task_name")
    return name if isinstance(name, str) and name else None


def typed_unique_key(ctx: Any, separator: str) -> str | None:
    """A typed task's uniqueness key from its metadata ``ctx``, or None (it has none).

    The key is the task's name and its ``uniq()`` hash (``TaskHash``), joined by
    ``separator`` (each backend keeps the separator its stored keys use).
    """
    if not isinstance(ctx, dict):
        return None
    info = ctx.get(TYPED_INFO_KEY)
    if not isinstance(info, dict):
        return None
    name, uniq = info.get("task_name"), info.get("uniq")
    if isinstance(name, str) and isinstance(uniq, str):
        return f"{name}{separator}{uniq}"
    return None


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
