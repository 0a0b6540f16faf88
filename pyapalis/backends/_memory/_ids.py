"""The ids a MemoryStorage was given to keep, so that a second push of one stores nothing.

Every backend follows one rule for ``push_task``: a task whose
id already exists is not stored again, whatever its status, until it is
deleted; the push returns that id. That is what makes a periodic tick pushed
by several processes (``Pipe(CronStream(...), storage)``) run once. A
MemoryStorage does not track its tasks in flight (that would cost every
take), so it remembers the ids given to ``push_task`` instead: the most
recent ``limit`` of them, whatever became of their tasks since.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from ..._implementation import TaskId

__all__ = ["RememberedIds"]


class RememberedIds:
    """The last ``limit`` ids added, oldest forgotten first; safe from any thread."""

    __slots__ = ("_ids", "_limit", "_lock")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._ids: OrderedDict[TaskId, None] = OrderedDict()
        # push_task_nowait runs on any thread: the look-up and the insert are one step.
        self._lock = threading.Lock()

    @property
    def limit(self) -> int:
        """How many ids are remembered at most."""
        return self._limit

    def add(self, task_id: TaskId) -> bool:
        """Remember ``task_id``; False if it was remembered already."""
        if not self._limit:
            return True
        with self._lock:
            ids = self._ids
            if task_id in ids:
                return False
            ids[task_id] = None
            if len(ids) > self._limit:
                ids.popitem(last=False)
            return True

    def discard(self, task_id: TaskId) -> None:
        """Forget ``task_id`` (its push did not store it after all)."""
        with self._lock:
            self._ids.pop(task_id, None)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)
