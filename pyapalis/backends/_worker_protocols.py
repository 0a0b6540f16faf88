"""What a worker uses of a backend beyond :class:`~pyapalis.backends.Backend`, declared.

Each protocol is optional: a worker checks its backend against them once,
when it is built (and a session's once per run, see :class:`WorkerSessions`),
and uses what the backend offers. A backend author implements the ones that
make sense:

* :class:`Bindable`: learn the trio run the worker serves, when it starts.
* :class:`Wakeable`: an idle wait the worker can interrupt without a cancel
  scope (``take_or_wake`` / ``wake_takers``).
* :class:`SyncAck`: acknowledge a final outcome without awaiting (the hot path).
* :class:`RunsAlongside`: a task of the backend's own beside the worker.
* :class:`WorkerSessions`: a per-run session (a fresh worker id, acks flushed
  and prefetched tasks released when the run ends), for backends shared by
  several workers and processes.
* :class:`FiltersTaskNames`: a view of the queue that hands out only tasks of
  given names (a :class:`~pyapalis.WorkerPool` consumes one with the names it
  registered).

(``RegisterWorker``, the heartbeat, is a capability users call too: it lives
with the others in :mod:`pyapalis.backends._capabilities`.) Backends never
import the worker: these protocols are the whole contract.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

from .._implementation import Task, TaskId
from .._status import Status
from ._protocols import Backend

__all__ = [
    "Bindable",
    "FiltersTaskNames",
    "RunsAlongside",
    "SyncAck",
    "Wakeable",
    "WorkerIdentity",
    "WorkerSession",
    "WorkerSessions",
]


@runtime_checkable
class Bindable(Protocol):
    """Optional: a backend told when a worker starts consuming it."""

    def bind(self) -> None:
        """Called on the trio thread when a worker run starts consuming.

        Lets a backend learn the trio run it serves (to be woken from other
        threads, to convert wall-clock schedules into trio deadlines).
        """


@runtime_checkable
class Wakeable(Protocol):
    """Optional: a backend whose idle wait the worker can interrupt cheaply.

    Without it, a worker waits in :meth:`Backend.take` inside a cancel scope
    that ``stop()`` and ``pause()`` cancel; with it, the worker waits in
    :meth:`take_or_wake` and calls :meth:`wake_takers` instead (cheaper per
    idle wait, and the push-to-handler latency of an idle worker is lower).
    """

    async def take_or_wake(self) -> Task | None:
        """Wait for the next due task; None once :meth:`wake_takers` is called.

        Cancelling the wait must never lose a task, as for ``take``.
        """

    def wake_takers(self) -> None:
        """Make every waiting :meth:`take_or_wake` return None now (from the trio thread)."""


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


@dataclass(frozen=True, slots=True)
class WorkerIdentity:
    """Who is consuming: one worker *run* (a worker that runs again is a new identity).

    ``id`` is a fresh ULID for every run; ``name`` is only a label (several
    processes may run workers of one name). ``started_at`` is UNIX seconds.
    """

    name: str
    id: str
    host: str
    pid: int
    started_at: float
    concurrency: int

    @classmethod
    def mint(cls, name: str, concurrency: int) -> WorkerIdentity:
        """A new identity for a run of worker ``name`` in this process, starting now."""
        return cls(
            name=name,
            id=str(TaskId.generate()),
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=time.time(),
            concurrency=concurrency,
        )


@runtime_checkable
class WorkerSession(Backend, Protocol):
    """A backend as one worker run consumes it, open for the length of the run.

    Entering it starts the run's session (claims made under the run's worker
    id); leaving it — normally, after an error, or because the run was
    cancelled — flushes pending acknowledgements and hands back the tasks
    the session prefetched but did not run. ``async with`` returns the backend
    to consume (usually the session itself). It may implement the optional
    protocols of this module and ``RegisterWorker`` (its heartbeat).
    """

    async def __aenter__(self) -> Backend:
        """Open the session; the backend the run consumes."""

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        """Close the session: flush acknowledgements, hand back prefetched tasks."""


@runtime_checkable
class WorkerSessions(Protocol):
    """Optional: a backend consumed through a session per worker run.

    A worker whose backend has it mints a :class:`WorkerIdentity` for each
    run, enters ``async with backend.session(identity) as session:`` around the
    whole run, and consumes ``session`` instead of the backend.
    """

    def session(self, worker: WorkerIdentity) -> WorkerSession:
        """A session for the run of ``worker`` (entered by the worker)."""


@runtime_checkable
class FiltersTaskNames(Protocol):
    """Optional: a backend that can hand a consumer only tasks of the names it knows.

    The name is a typed task's ``TASK_NAME``, which the backend records when
    the task is pushed (``pyapalis.backends._kit._names.task_name_of``). A
    :class:`~pyapalis.WorkerPool` checks each queue's handle for it once, when
    it builds its workers, and consumes ``handle.only_task_names(registered)``:
    tasks of other names (and tasks that are not typed) stay Pending for a
    consumer that knows them, so a mixed-version deploy never fails a task
    type an older pool lacks. Without it, a pool takes every task and fails
    an unknown name with ``UnknownTaskError``.
    """

    def only_task_names(self, names: Iterable[str]) -> Backend:
        """A view of this queue whose takes and worker sessions claim only tasks named in ``names``.

        Pushes, acks and management calls behave as on the backend itself.
        The view shares the backend's resources and needs no closing of its
        own: it lasts as long as the backend is open. Raises
        ``ValueError`` for an empty set, ``TypeError`` for a name that is not
        a non-empty str.
        """
