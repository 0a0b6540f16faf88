"""The contract between a worker and the backend it consumes.

A backend is a source of tasks. The worker pulls with :meth:`Backend.take_nowait`
(the fast path, no await) and falls back to :meth:`Backend.take` to wait; it
reports every execution's end with :meth:`Backend.ack` (final), :meth:`Backend.retry`
(run again later) or :meth:`Backend.release` (handed back unfinished). Backends
never import the worker: data flows producer -> backend -> worker -> ack.

Two optional extras, each found once when the worker is built: :class:`SyncAck`
(acknowledge without awaiting) and :class:`RunsAlongside` (a task the worker
runs beside its consumer loops, as a ``Pipe`` needs).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from .._implementation import Task
from .._status import Status

__all__ = ["Backend", "RunsAlongside", "SyncAck"]


@runtime_checkable
class Backend(Protocol):
    """What a worker needs from a source of tasks."""

    def bind(self) -> None:
        """Called on the trio thread when a worker starts consuming.

        Lets a backend learn the trio run it serves (to be woken from other
        threads, to convert wall-clock schedules into trio deadlines).
        """

    def take_nowait(self) -> Task | None:
        """The next due task, or None if none is ready now. Must not block."""

    async def take(self) -> Task:
        """Wait for and return the next due task.

        Cancelling the wait must never lose a task: either a task is returned,
        or the call raises ``Cancelled`` with the task still in the backend.
        """

    async def ack(
        self, task: Task, status: Status, result: Any, error: BaseException | None
    ) -> None:
        """Record a final outcome: ``Done`` (with ``result``), ``Failed`` or ``Killed``."""

    async def retry(self, task: Task, delay: float, error: BaseException) -> None:
        """Queue ``task`` again to run no sooner than ``delay`` seconds from now."""

    async def release(self, task: Task) -> None:
        """Take back a task whose execution was interrupted (shutdown, cancellation).

        The interrupted execution does not count as an attempt.
        """


@runtime_checkable
class SyncAck(Protocol):
    """Optional: a backend that can record a final outcome without awaiting.

    The worker uses it on the hot path when present (MemoryStorage does).
    """

    def ack_nowait(
        self, task: Task, status: Status, result: Any, error: BaseException | None
    ) -> None:
        """Like :meth:`Backend.ack`, synchronously."""


@runtime_checkable
class RunsAlongside(Protocol):
    """Optional: a backend that needs a task of its own running beside the worker.

    A ``Pipe`` is one: it feeds the backend it wraps while the worker consumes
    that backend. A worker whose backend has this method starts ``await
    backend.run_alongside()`` in its run's nursery together with its consumer
    loops, and cancels it once the last loop has ended (after ``stop()``, a
    backend failure, or a cancelled run). Returning early is fine: the worker
    keeps consuming. An exception stops the worker as a backend failure does:
    pulling stops, in-flight tasks finish, and ``run()`` raises it.
    """

    async def run_alongside(self) -> None:
        """Run for as long as the worker runs (see the class)."""
