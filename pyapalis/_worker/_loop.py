"""The consumer loops of one worker run: pull a task, run it, record it, again.

``.concurrency(n)`` runs *n* loops in the run's nursery; each pulls its next
task itself (no trio task is spawned per task), drains several tasks per
scheduler turn and checkpoints every :data:`CHECKPOINT_EVERY` tasks so
cancellation and fairness stay intact. A loop stops pulling while the worker
is paused or shutting down, or while a layer is not ready.

A task goes one of two ways, chosen at build
(:class:`~pyapalis._worker._pipeline.Dispatch`):

* without layers, the loop itself starts the execution (the compiled
  ``Invoker.begin``: attempt counted, task Running, handler called with its
  arguments), awaits it, and has the worker's ``Recorder`` record it — a
  success acknowledged synchronously in compiled code when the backend allows
  it. Every handler takes this way, whatever it injects, plain ``def`` or
  ``async def``, with or without a time limit.
* with layers, the task goes through :class:`~pyapalis._worker._pipeline.Layered`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from .._implementation import Task
from ._context import LoopMark, WorkerContext, WorkerState
from ._events import IDLE
from ._pipeline import Dispatch, FailureStops, failure_of
from ._source import TaskSource

__all__ = ["CHECKPOINT_EVERY", "Consumers"]

CHECKPOINT_EVERY = 64
"""A consumer loop yields to the scheduler at least once per this many tasks."""

_RUNNING = WorkerState.Running
_PAUSED = WorkerState.Paused


class Consumers:
    """The consumer loops of one run of a worker over one :class:`TaskSource`.

    ``on_failure(exc)`` is told of a backend failure (an exception escaping a
    loop): the worker stops. ``on_last_exit()`` runs when the last loop ends.
    """

    def __init__(
        self,
        context: WorkerContext,
        source: TaskSource,
        dispatch: Dispatch,
        on_failure: Callable[[Exception], None],
        on_last_exit: Callable[[], None],
        loops: int,
    ) -> None:
        self._context = context
        self._source = source
        self._dispatch = dispatch
        self._on_failure = on_failure
        self._on_last_exit = on_last_exit
        self._live = loops
        self._idle = 0

    async def consume(self) -> None:
        """One consumer loop (a trio task of the run's nursery).

        An exception escaping the loop is a backend failure: every loop stops
        pulling, in-flight work finishes, and ``run()`` raises it. The loop is
        the task's root coroutine: one frame less to resume per wake-up.
        """
        context = self._context
        control = context.control
        listeners = control.listeners
        source = self._source
        take_nowait = source.take_nowait
        take_or_wake = source.take_or_wake
        dispatch = self._dispatch
        layered = dispatch.layered
        begin = dispatch.begin
        handler = dispatch.handler
        recorder = dispatch.recorder
        done_nowait = recorder.done_nowait
        settle = recorder.settle
        readiness = dispatch.readiness
        ready_now = dispatch.ready_now
        checkpoint = trio.lowlevel.checkpoint
        budget = CHECKPOINT_EVERY
        result: Any = None
        mark = LoopMark()
        control.loops.append(mark)
        try:
            # What escapes the loop stops the worker: a backend failure, or a stray
            # Cancelled out of a layer (a handler's own failed its task already).
            with FailureStops(f"a layer of worker {context.name!r}", self._on_failure):
                while True:
                    if control.state is not _RUNNING:
                        if control.state is _PAUSED:
                            result = None  # hold nothing of the last task while paused
                            await control.wait_resumed()
                            continue
                        return
                    # All ready now (the usual case): no await and no cancel scope.
                    if readiness and (ready_now is None or not _all_ready(ready_now)):
                        await self._wait_ready(readiness)
                        if control.state is not _RUNNING:
                            continue
                    task = take_nowait()
                    if task is None:
                        # Idle: wait for the backend (inlined for the push-to-handler latency).
                        result = None  # hold nothing of the last task while idle
                        if take_or_wake is not None and not listeners:
                            task = await take_or_wake()  # nobody to tell that we idle
                        else:
                            task = await self._wait_idle()
                        if task is None:
                            continue
                        budget = CHECKPOINT_EVERY
                    mark.busy = True
                    try:
                        if layered is not None:
                            await layered(task)
                        else:
                            try:
                                result = await begin(task)
                            except BaseException as raised:
                                failure = failure_of(raised, handler)
                                if failure is None:
                                    await recorder.release(task)
                                    raise
                                await settle(task, None, failure)
                            else:
                                if not done_nowait(task, result):
                                    await settle(task, result, None)
                    finally:
                        mark.busy = False
                    budget -= 1
                    if not budget:
                        budget = CHECKPOINT_EVERY
                        await checkpoint()
        finally:
            control.loops.remove(mark)
            self._live -= 1
            if not self._live:
                self._on_last_exit()

    async def _wait_idle(self) -> Task | None:
        """Wait for the backend, emitting ``Idle`` unless another loop of this run
        waits here already (loops that went idle while nobody listened are not counted)."""
        context = self._context
        self._idle += 1
        try:
            if self._idle == 1 and context.control.listeners:
                context.emit(IDLE)
            take_or_wake = self._source.take_or_wake
            if take_or_wake is not None:
                return await take_or_wake()
            return await self._wait_cancellable()
        finally:
            self._idle -= 1

    async def _wait_ready(self, readiness: Sequence[Callable[[], Awaitable[None]]]) -> None:
        """Await every layer's ready(); stop() and pause() interrupt the wait."""
        idle_scopes = self._context.control.idle_scopes
        with trio.CancelScope() as scope:
            idle_scopes.add(scope)
            try:
                for ready in readiness:
                    await ready()
            finally:
                idle_scopes.discard(scope)

    async def _wait_cancellable(self) -> Task | None:
        """Wait for a task in a scope that stop() and pause() cancel; None if they did."""
        idle_scopes = self._context.control.idle_scopes
        with trio.CancelScope() as scope:
            idle_scopes.add(scope)
            try:
                return await self._source.take()
            finally:
                idle_scopes.discard(scope)
        return None


def _all_ready(checks: Sequence[Callable[[], bool]]) -> bool:
    for is_ready in checks:  # noqa: SIM110 - all() with a generator costs more per task
        if not is_ready():
            return False
    return True
