"""The contract between a worker and the backend it consumes.

A backend is a source of tasks. The worker pulls with :meth:`Backend.take_nowait`
(the fast path, no await) and falls back to :meth:`Backend.take` to wait; it
reports every execution's end with :meth:`Backend.ack` (final), :meth:`Backend.retry`
(run again later) or :meth:`Backend.release` (handed back unfinished). Backends
never import the worker: data flows producer -> backend -> worker -> ack.

The optional extras a worker uses (acknowledging without awaiting, an idle
wait it can interrupt, a task beside its loops, a session per run) are
declared in :mod:`pyapalis.backends._worker_protocols`.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from .._implementation import Task
from .._status import Status

__all__ = ["Backend"]


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
