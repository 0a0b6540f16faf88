"""Recording an execution's outcome with the backend: the one place a worker tells it.

The worker's :class:`~pyapalis._twin.Judge` (compiled) decides what an
outcome means — Done, retry after a delay, Failed or Killed — and the
:class:`Recorder` tells the backend (``ack_nowait`` or ``ack`` for a final
status, ``retry`` for a retry, ``release`` for an execution that was
interrupted) and emits the ``Success`` and ``Error`` events. Every way a task
leaves a worker goes through it: the consumer loop of a worker without layers,
the acknowledgement inside a stack of layers, and a task a layer answered or
refused in the handler's place.
"""

from __future__ import annotations

from typing import Any

import trio

from .._errors import NotReadyError
from .._implementation import Judge, SyncDone, Task, set_status
from .._status import Status
from ..backends._protocols import Backend
from ._context import WorkerContext
from ._events import Event, EventKind

__all__ = ["Recorder"]

_DONE = Status.Done
_PENDING = Status.Pending
_QUEUED = Status.Queued
_RUNNING = Status.Running


class Recorder:
    """Tells the backend what became of each execution (see the module documentation).

    ``Recorder(judge, context)``; :meth:`attach` gives it the backend of a run
    (the worker's, or the run's session) and its ``ack_nowait`` if it has one.
    :meth:`done_nowait` is the hot path: a success recorded without awaiting,
    in compiled code, when the backend allows it.
    """

    __slots__ = ("_backend", "_context", "_listeners", "_sync", "done_nowait", "judge")

    def __init__(self, judge: Judge, context: WorkerContext) -> None:
        self.judge = judge
        self._context = context
        self._listeners = context.control.listeners
        self._sync = SyncDone(judge, self._listeners, self._emit_success)
        self.done_nowait = self._sync.record
        """``done_nowait(task, result) -> bool``: record a success now if the backend
        acknowledges synchronously and the judge says it is one; False otherwise."""
        self._backend: Backend | None = None

    def attach(self, backend: Backend, ack_nowait: Any) -> None:
        """Record with ``backend`` from now on; ``ack_nowait`` is its ``SyncAck`` method or None."""
        self._backend = backend
        self._sync.attach(ack_nowait)

    def _emit_success(self, task: Task, result: Any) -> None:
        self._context.emit(Event(EventKind.Success, task.parts.task_id, result=result))

    async def settle(self, task: Task, result: Any, error: BaseException | None) -> None:
        """Record an execution of ``task`` that returned ``result`` or raised ``error``.

        A task still ``Queued`` was answered or refused by a layer in the
        handler's place: a refusal counts as an attempt all the same (so a
        layer that always refuses cannot bounce a task forever), except a
        :class:`NotReadyError`, which hands the task back unchanged.
        """
        backend = self._backend
        assert backend is not None, "Recorder.settle before attach()"
        parts = task.parts
        failure = self.judge.failure(result, error)
        if parts.status is _QUEUED:
            if failure is not None:
                parts.attempt.increment()
            set_status(task, _RUNNING)
            if isinstance(failure, NotReadyError):
                await self.release(task)  # handed back, the attempt un-counted
                return
        if failure is None:
            if not self.done_nowait(task, result):
                await backend.ack(task, _DONE, result, None)
                if self._listeners:
                    self._emit_success(task, result)
            return
        verdict = self.judge.decide(task, None, failure)
        if verdict.status is _PENDING:
            await backend.retry(task, verdict.delay, failure)
        else:
            await backend.ack(task, verdict.status, None, failure)
        if self._listeners:
            self._context.emit(Event(EventKind.Error, parts.task_id, error=failure))

    async def release(self, task: Task) -> None:
        """Hand an interrupted execution back to the backend, even while being cancelled.

        The backend un-counts the execution it takes back; one that never
        started (the task still ``Queued``) is counted first.
        """
        backend = self._backend
        assert backend is not None, "Recorder.release before attach()"
        parts = task.parts
        if parts.status is _QUEUED:
            parts.attempt.increment()
            set_status(task, _RUNNING)
        with trio.CancelScope(shield=True):
            await backend.release(task)
