"""What happens to one task inside a worker: the execution, its time limit, the acknowledgement.

Per execution the compiled :class:`~pyapalis._twin.Invoker` counts the
attempt, marks the task Running and calls the handler with the arguments
resolved at build (:func:`invoker_for`); a task limited by its own timeout or
the worker's runs through :func:`call_timed`. What the execution returned or
raised is judged by the worker's ``Judge`` and recorded by its
:class:`~pyapalis._worker._recorder.Recorder`.

A worker without layers does all of that in its consumer loop (see
:mod:`pyapalis._worker._loop`). With layers, its stack is ``task layers ->
Acknowledge -> execution layers -> Execute`` (the zones are described in
:mod:`pyapalis._worker._service`), run by :class:`Layered` and put together by :func:`assemble`:

* :class:`Execute` (only under execution layers) starts the execution and
  raises its failure, so the execution layers see a handler's ``False`` as a
  :class:`TaskFailedError`.
* :class:`Acknowledge` records the outcome of what is inside it, then passes
  the result or the exception on unchanged so task layers see what happened.
  Without execution layers it starts the execution itself.

Two handler mistakes get a clear outcome instead of a false ``Done`` or a
worker that silently stops: a plain ``def`` handler's returned awaitable is
awaited (a returned generator fails the task; see
:func:`~pyapalis._worker._handler.finish_returned`), and a ``trio.Cancelled`` that
escapes a handler while the worker is not being cancelled fails the task with
:class:`StrayCancelledError` (see :func:`failure_of`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import trio

from .._errors import BuildError, StrayCancelledError, TaskTimeoutError
from .._implementation import Invoker, Judge, Task, set_status
from .._status import Status
from ._context import WorkerContext
from ._handler import PLAIN_RESULTS, RETURNS_LATER, Handler, finish_returned
from ._recorder import Recorder
from ._service import (
    AlwaysReady,
    LayerLike,
    Service,
    Zone,
    compose,
    readiness_checks,
    readiness_nowait,
    zone_of,
)

__all__ = [
    "Acknowledge",
    "BackendFailure",
    "Dispatch",
    "Execute",
    "FailureStops",
    "Layered",
    "StrayCancelledError",
    "assemble",
    "call_timed",
    "failure_of",
    "invoker_for",
]

logger = logging.getLogger("pyapalis.worker")

_DONE = Status.Done
_QUEUED = Status.Queued


# -- the execution ------------------------------------------------------------------


def invoker_for(handler: Handler, timeout: float | None) -> Invoker:
    """The compiled invoker of ``handler``, with the worker's ``timeout`` (None: none)."""
    return Invoker(
        handler.function,
        handler.steps,
        handler.keywords,
        is_async=handler.is_async,
        timeout=timeout,
        timed=call_timed,
        plain_results=PLAIN_RESULTS,
        returns_later=RETURNS_LATER,
        finish_returned=finish_returned,
    )


async def call_timed(invoker: Invoker, task: Task, seconds: float) -> Any:
    """The handler's call for ``task``, limited to ``seconds`` (``TaskTimeoutError`` past it).

    What :meth:`Invoker.begin` returns for a task with a time limit: its own
    ``timeout``, else the worker's.
    """
    result: Any = None
    with trio.move_on_after(seconds) as scope:
        result = await invoker.call(task)
    if scope.cancelled_caught:
        raise TaskTimeoutError(seconds)
    return result


def failure_of(raised: BaseException, source: str | None) -> Exception | None:
    """The failure that ``raised`` is, or None if it interrupts what was running.

    An ``Exception`` is the failure itself. A ``trio.Cancelled`` raised by
    ``source`` ("handler 'send'", "a layer of worker 'w'") while the current
    task is not being cancelled is stray — raised outside the scope that was
    cancelled — and becomes a :class:`StrayCancelledError` naming ``source``,
    caused by it. Any other ``BaseException`` (a real cancellation,
    ``KeyboardInterrupt``, any ``Cancelled`` when ``source`` is None)
    interrupts: the task is handed back and the exception propagates.
    """
    if isinstance(raised, Exception):
        return raised
    if (
        source is None
        or not isinstance(raised, trio.Cancelled)
        or trio.current_effective_deadline() == -math.inf  # a real cancellation
    ):
        return None
    error = StrayCancelledError(
        f"{source} raised trio.Cancelled while the worker was not being cancelled; a "
        f"Cancelled must not be raised outside the cancel scope that was cancelled "
        f"(catch it only to re-raise it at once)"
    )
    error.__cause__ = raised
    return error


class FailureStops:
    """``with FailureStops(source, stop):`` — what the block raises stops the worker.

    A failure (see :func:`failure_of`, ``source`` naming what runs in the
    block for a stray ``Cancelled``) is handed to ``stop(failure)`` and
    swallowed; an interruption propagates. Around a consumer loop (a failure
    that escapes it is the backend's or a layer's) and the backend's own task.
    """

    __slots__ = ("_source", "_stop")

    def __init__(self, source: str, stop: Callable[[Exception], None]) -> None:
        self._source = source
        self._stop = stop

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc is None:
            return False
        failure = failure_of(exc, self._source)
        if failure is None:
            return False
        self._stop(failure)
        return True


# -- a stack of layers ------------------------------------------------------------------


class BackendFailure(BaseException):
    """Carries an error of the backend (an ack that failed) out through the layers.

    It is not the task's failure: as a ``BaseException`` it passes layers that
    handle task errors (a circuit breaker must not count it, a retry layer
    must not retry it), and the worker unwraps it and stops, as it does for a
    backend failure without layers.
    """

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


class Execute(AlwaysReady):
    """The innermost service under execution layers: one execution, its failure raised.

    ``Execute(invoker, judge, handler)``; ``handler`` ("handler 'send'") is
    named by the :class:`StrayCancelledError` a stray ``Cancelled`` out of it
    becomes.
    """

    __slots__ = ("_begin", "_handler", "_judge")

    def __init__(self, invoker: Invoker, judge: Judge, handler: str) -> None:
        self._begin = invoker.begin
        self._handler = handler
        self._judge = judge

    async def __call__(self, task: Task) -> Any:
        try:
            result = await self._begin(task)
        except BaseException as raised:
            failure = failure_of(raised, self._handler)
            if failure is None or failure is raised:
                raise
            raise failure from raised
        false = self._judge.failure(result, None)  # a TaskFailedError for False
        if false is not None:
            raise false
        return result


class Acknowledge(AlwaysReady):
    """Records the outcome of the services inside it, then passes it on unchanged.

    ``Acknowledge(inner, recorder, handler)``: ``inner`` is the execution
    layers over :class:`Execute`, or, without execution layers, the invoker's
    ``begin`` itself, when ``handler`` names the handler so a stray
    ``Cancelled`` out of it fails the task (see :func:`failure_of`). A
    backend error while recording is raised as :class:`BackendFailure`.
    """

    __slots__ = ("_handler", "_inner", "_recorder")

    def __init__(
        self,
        inner: Service | Callable[[Task], Awaitable[Any]],
        recorder: Recorder,
        handler: str | None,
    ) -> None:
        self._inner = inner
        self._recorder = recorder
        self._handler = handler

    async def __call__(self, task: Task) -> Any:
        recorder = self._recorder
        try:
            result = await self._inner(task)
        except BaseException as raised:
            failure = failure_of(raised, self._handler)
            if failure is None:
                await recorder.release(task)
                raise
            try:
                await recorder.settle(task, None, failure)
            except Exception as backend_error:
                raise BackendFailure(backend_error) from backend_error
            if failure is raised:
                raise
            raise failure from raised
        try:
            # A task still Queued was answered in the handler's place: settle()
            # marks it, so the worker does not settle it again.
            if task.parts.status is _QUEUED or not recorder.done_nowait(task, result):
                await recorder.settle(task, result, None)
        except Exception as backend_error:
            raise BackendFailure(backend_error) from backend_error
        return result


class Layered:
    """A task's trip through the worker's stack of layers.

    The task is marked ``Queued`` first, so that what the layers did not
    settle shows: a task layer that answered or refused without calling the
    services inside (the task still ``Queued``) has its outcome recorded here.
    A layer that raises after the task succeeded is logged (the task stays
    Done). A :class:`BackendFailure` is unwrapped and raised: the worker stops.
    """

    __slots__ = ("_recorder", "_stack", "_worker")

    def __init__(self, stack: Service, recorder: Recorder, worker: str) -> None:
        self._stack = stack
        self._recorder = recorder
        self._worker = worker

    async def __call__(self, task: Task) -> None:
        recorder = self._recorder
        set_status(task, _QUEUED)
        try:
            result = await self._stack(task)
        except BackendFailure as failure:
            raise failure.error from None  # the backend broke: stop the worker
        except Exception as exc:
            status = task.parts.status
            if status is _QUEUED:
                await recorder.settle(task, None, exc)
            elif status is _DONE:
                logger.error(
                    "a layer of worker %r raised after task %s succeeded (it stays Done)",
                    self._worker,
                    task.parts.task_id,
                    exc_info=exc,
                )
        except BaseException:
            if task.parts.status is _QUEUED:
                await recorder.release(task)
            raise
        else:
            if task.parts.status is _QUEUED:
                await recorder.settle(task, result, None)


# -- how a worker runs each task --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dispatch:
    """How a worker runs each task it pulls (built once, at ``build()``)."""

    begin: Callable[[Task], Awaitable[Any]]
    """The invoker's ``begin``: starts an execution of the handler."""
    handler: str
    """``handler 'name'``: what a stray ``Cancelled`` out of the handler names."""
    recorder: Recorder
    layered: Layered | None
    """The stack of layers, or None: the loop runs the handler itself."""
    readiness: Sequence[Callable[[], Awaitable[None]]]
    """The layers' ``ready()`` to await before a pull."""
    ready_now: Sequence[Callable[[], bool]] | None
    """Their ``ready_nowait()`` (None unless every one has it)."""


def assemble(
    handler: Handler,
    name: str,
    timeout: float | None,
    judge: Judge,
    layers: Sequence[LayerLike],
    context: WorkerContext,
) -> Dispatch:
    """How a worker built with ``layers`` runs ``handler`` (named ``name``, "handler 'f'").

    The stack is ``task layers -> Acknowledge -> execution layers -> Execute``;
    when no layer adds a service, the consumer loops run the handler
    themselves (``layered`` None). A handler taking a type that only a layer
    supplies (:class:`~pyapalis._worker._handler.LayerProvided`) without that
    execution layer is a :class:`BuildError`.
    """
    execution_layers = [layer for layer in layers if zone_of(layer) is Zone.Execution]
    task_layers = [layer for layer in layers if zone_of(layer) is Zone.Task]
    for needed in handler.layer_provided:
        if not any(needed.provided_by(layer) for layer in execution_layers):
            raise BuildError(
                "MissingLayer",
                f"{name} takes a {needed.__qualname__}, which only {needed.missing_layer()}",
            )
    recorder = Recorder(judge, context)
    invoker = invoker_for(handler, timeout)
    execute = Execute(invoker, judge, name)
    inner, execution_services = compose(execution_layers, execute, context)
    acknowledged: Service
    if inner is execute:
        # No execution layer added a service: the acknowledgement starts the
        # execution itself, and judges what the handler raised.
        acknowledged, execution_services = Acknowledge(invoker.begin, recorder, name), []
    else:
        acknowledged = Acknowledge(inner, recorder, None)
    stack, task_services = compose(task_layers, acknowledged, context)
    services = [*task_services, *execution_services]
    checks = readiness_checks(services)
    in_loop = stack is acknowledged and inner is execute
    return Dispatch(
        begin=invoker.begin,
        handler=name,
        recorder=recorder,
        layered=None if in_loop else Layered(stack, recorder, context.name),
        readiness=checks,
        ready_now=readiness_nowait(services) if checks else None,
    )
