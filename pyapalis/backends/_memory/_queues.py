"""How a task type's ``QUEUE`` name finds its backend handle.

A *queue family* is a backend object with a ``queue(name)`` method that returns
the handle of one named queue: :class:`~pyapalis.JsonStorage` (``storage.queue
("emails")`` is a second queue in the same file) and :class:`MemoryQueues`
(one :class:`~pyapalis.MemoryStorage` per name). Any other backend, a bare
``MemoryStorage`` included, is a single queue: every task type pushed to it
lands in it whatever its ``QUEUE``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._capabilities import Closeable, NamedQueue, QueueFamily
from .._kit._args import check_limit, check_name
from ._storage import MemoryStorage

__all__ = ["MemoryQueues", "is_queue_family", "open_queue"]


class MemoryQueues:
    """Named in-process queues: one :class:`MemoryStorage` per name, made on first use.

    ``queues.queue("emails")`` always returns the same storage for the same
    name, so producers and a :class:`~pyapalis.WorkerPool` built on one
    ``MemoryQueues`` meet in the same queues. ``maxsize`` applies to each queue.
    """

    __slots__ = ("_maxsize", "_queues")

    def __init__(self, maxsize: int | None = None) -> None:
        self._maxsize = check_limit(maxsize, "MemoryQueues: maxsize")
        self._queues: dict[str, MemoryStorage] = {}

    def queue(self, name: str) -> MemoryStorage:
        """The storage of the queue ``name`` (created empty the first time)."""
        check_name(name, "MemoryQueues.queue: name")
        storage = self._queues.get(name)
        if storage is None:
            storage = self._queues[name] = MemoryStorage(self._maxsize)
        return storage

    def names(self) -> list[str]:
        """The queues made so far, in creation order."""
        return list(self._queues)

    def __len__(self) -> int:
        """Tasks waiting in every queue."""
        return sum(len(storage) for storage in self._queues.values())

    def __repr__(self) -> str:
        return f"MemoryQueues({self.names()!r})"


def is_queue_family(backend: object) -> bool:
    """True if ``backend`` hands out one handle per queue name (:class:`QueueFamily`)."""
    return not isinstance(backend, type) and isinstance(backend, QueueFamily)


def open_queue(backend: Any, name: str) -> tuple[Any, Callable[[], None] | None]:
    """The handle serving queue ``name``, and how to close it if it was opened here.

    A single-queue backend is its own handle. A queue family's handle that
    already serves ``name`` (``queue_name == name``) is used as is; otherwise
    ``backend.queue(name)`` opens one, and the caller closes it when done (a
    JsonStorage file is released only once every handle on it is closed).
    """
    if not is_queue_family(backend) or (
        isinstance(backend, NamedQueue) and backend.queue_name == name
    ):
        return backend, None
    handle = backend.queue(name)
    return handle, handle.close if isinstance(handle, Closeable) else None
