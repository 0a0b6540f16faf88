"""What a shared backend's queue handle does the same way, written once.

SqliteStorage, PostgresStorage and RedisStorage are handles on one queue of a
shared store, optionally a view of some task names (``only_task_names``).
:class:`QueueHandle` holds the handle logic they share: the queue and task-name
properties, ``async with`` closing through ``aclose``, and the task-name part
of their ``repr``.
"""

from __future__ import annotations

from types import TracebackType

__all__ = ["QueueHandle"]


class QueueHandle:
    """A handle on one queue (``_queue``), a view of some task names or of all (``_names``)."""

    _queue: str
    _names: frozenset[str] | None

    @property
    def task_names(self) -> frozenset[str] | None:
        """The task names this handle's consumers claim (None: every task)."""
        return self._names

    @property
    def queue_name(self) -> str:
        return self._queue

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _names_repr(self) -> str:
        """The ``repr`` part naming the view's task names ('' for a handle on every task)."""
        return "" if self._names is None else f", task_names={sorted(self._names)!r}"
