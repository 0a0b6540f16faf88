"""TestWorker: run a handler against a backend one execution at a time, in tests."""

from __future__ import annotations

import math
from collections.abc import Callable
from types import TracebackType
from typing import Any

import outcome
import trio

from .._implementation import TaskId
from .._worker._context import WorkerContext
from .._worker._events import Event, EventKind
from .._worker._worker import Worker, WorkerBuilder
from ..backends._protocols import Backend

__all__ = ["TestWorker"]


class TestWorker:
    """A worker whose executions a test can await one by one.

    ``async with TestWorker(storage, handler) as tw: task_id, result = await
    tw.execute_next()``: ``result`` is ``outcome.Value(v)`` or
    ``outcome.Error(exc)``, one per execution (each retry is its own), in
    completion order. Pass a configured ``WorkerBuilder`` as ``builder`` to
    test with retries, timeouts, layers or data; its backend is replaced.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        backend: Backend,
        handler: Callable[..., Any],
        *,
        builder: WorkerBuilder | None = None,
    ) -> None:
        send, receive = trio.open_memory_channel[tuple[TaskId, outcome.Outcome[Any]]](math.inf)
        self._send = send
        self._receive = receive
        builder = builder if builder is not None else WorkerBuilder("test-worker")
        # Listening on this worker's context only: the builder may build others.
        self._worker: Worker = builder.backend(backend).build(handler)
        self._worker.context.add_listener(self._record)
        self._nursery_manager: Any = None

    @property
    def worker(self) -> Worker:
        """The worker under test."""
        return self._worker

    def _record(self, _ctx: WorkerContext, event: Event) -> None:
        if event.kind is EventKind.Success:
            assert event.task_id is not None
            self._send.send_nowait((event.task_id, outcome.Value(event.result)))
        elif event.kind is EventKind.Error:
            assert event.task_id is not None and event.error is not None
            self._send.send_nowait((event.task_id, outcome.Error(event.error)))

    async def execute_next(self) -> tuple[TaskId, outcome.Outcome[Any]]:
        """Wait for the next finished execution: its task id and outcome."""
        return await self._receive.receive()

    async def __aenter__(self) -> TestWorker:
        self._nursery_manager = trio.open_nursery()
        nursery = await self._nursery_manager.__aenter__()
        nursery.start_soon(self._worker.run)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        if not self._worker.context.is_shutting_down:
            self._worker.context.stop()
        result: bool | None = await self._nursery_manager.__aexit__(exc_type, exc, tb)
        return result
