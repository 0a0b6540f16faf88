"""What happens to one task inside a worker: attempt tracking, the handler, the ack.

The worker's stack is ``task layers -> Acknowledge -> execution layers -> Execute
-> handler`` (see :mod:`pyapalis._worker._service` for the two zones of layers):

* ``Execute`` counts the attempt (a first run sees 1), marks the task Running,
  applies the timeout, calls the handler and turns ``False`` into a failure.
* ``Acknowledge`` reports the outcome of the execution layers to the backend
  through a :class:`Settler` (done, retry later, failed, killed), then passes
  the result or the exception on unchanged so task layers see what happened.
  Without execution layers, :class:`SettlingExecute` does both in one frame.

Without layers the worker calls :meth:`Execute.settle_begun`, which does
both in one frame: the layer machinery costs nothing when unused. When, in
addition, the handler is an ``async def`` of the args alone, the worker sets no
timeout and the backend has ``ack_nowait``, the worker's loop runs those same
steps inline (see :attr:`Execute.direct_handler`); a task with its own timeout
still goes through :meth:`Execute.settle_begun`.

Two handler mistakes get a clear outcome instead of a false ``Done`` or a
worker that silently stops: a plain ``def`` handler's returned awaitable is
awaited (a returned generator fails the task; see
:func:`~pyapalis._worker._handler.finish_returned`), and a ``trio.Cancelled`` that
escapes a handler while the worker is not being cancelled fails the task with
:class:`StrayCancelledError` (see :func:`stray_cancelled`). Both checks sit off
the hot path: the first on the plain-``def`` path only, the second in
exception handlers.
"""

from __future__ import annotations

import math
from typing import Any

import trio

from .._errors import (
    AbortError,
    DeferredError,
    RetryAfterError,
    StrayCancelledError,
    TaskFailedError,
    TaskTimeoutError,
)
from .._implementation import Task, begin_execution, set_status
from .._status import Status
from ..backends._protocols import Backend
from ._context import WorkerContext
from ._events import Event, EventKind
from ._handler import PLAIN_RESULTS, RETURNS_LATER, Handler, finish_returned, handler_name
from ._retry import RetryPolicy
from ._service import NotReadyError, Service, always_ready

__all__ = [
    "Acknowledge",
    "BackendFailure",
    "Execute",
    "Settler",
    "SettlingExecute",
    "StrayCancelledError",
    "stray_cancelled",
]

_DONE = Status.Done
_FAILED = Status.Failed
_KILLED = Status.Killed
_QUEUED = Status.Queued
_RUNNING = Status.Running


def stray_cancelled(cancelled: trio.Cancelled, source: str) -> StrayCancelledError | None:
    """A :class:`StrayCancelledError` for ``cancelled`` if it is not for the current task.

    None if the current task is being cancelled (a real cancellation: let it
    propagate). ``source`` says what raised it ("handler 'send'").
    """
    if trio.current_effective_deadline() == -math.inf:
        return None
    error = StrayCancelledError(
        f"{source} raised trio.Cancelled while the worker was not being cancelled; a "
        f"Cancelled must not be raised outside the cancel scope that was cancelled "
        f"(catch it only to re-raise it at once)"
    )
    error.__cause__ = cancelled
    return error


class Settler:
    """Decides a task's fate after an execution and tells the backend.

    The attempt budget is the task's ``max_attempts``, else the worker's
    retry policy (``retries + 1``), else one execution. ``AbortError`` is
    never retried (Killed); ``RetryAfterError`` waits its delay, ``DeferredError``
    none, other errors the policy's backoff; each retry needs an attempt left.
    """

    __slots__ = ("_ack_nowait", "_backend", "_backoff", "_context", "_default_attempts")

    def __init__(self, backend: Backend, policy: RetryPolicy | None, context: WorkerContext):
        self._backend = backend
        self._ack_nowait = getattr(backend, "ack_nowait", None)
        self._default_attempts = policy.max_attempts if policy is not None else 1
        self._backoff = policy.backoff if policy is not None else None
        self._context = context

    def emit_success(self, task: Task, result: Any) -> None:
        self._context.emit(Event(EventKind.Success, task.parts.task_id, result=result))

    async def success(self, task: Task, result: Any) -> None:
        if self._ack_nowait is not None:
            self._ack_nowait(task, _DONE, result, None)
        else:
            await self._backend.ack(task, _DONE, result, None)
        if self._context._listeners:
            self.emit_success(task, result)

    async def failure(self, task: Task, error: Exception) -> None:
        parts = task.parts
        if isinstance(error, AbortError):
            await self._backend.ack(task, _KILLED, None, error)
        else:
            attempt = parts.attempt.current()
            budget = parts.max_attempts or self._default_attempts
            if attempt < budget:
                if isinstance(error, RetryAfterError):
                    delay = error.delay
                elif isinstance(error, DeferredError) or self._backoff is None:
                    delay = 0.0
                else:
                    delay = self._backoff.delay(max(attempt, 1))
                await self._backend.retry(task, delay, error)
            else:
                await self._backend.ack(task, _FAILED, None, error)
        if self._context._listeners:
            self._context.emit(Event(EventKind.Error, parts.task_id, error=error))

    async def interrupted(self, task: Task) -> None:
        """Hand an interrupted task back to the backend, even while being cancelled."""
        with trio.CancelScope(shield=True):
            await self._backend.release(task)


class Execute:
    """The innermost service: attempt tracking, timeout, the handler."""

    __slots__ = (
        "_ack_nowait",
        "_call",
        "_function",
        "_handler",
        "_is_async",
        "_settler",
        "_timeout",
        "direct_handler",
    )

    def __init__(self, handler: Handler, timeout: float | None, settler: Settler) -> None:
        self._settler = settler
        self._ack_nowait = settler._ack_nowait
        self._handler = handler.function
        self._call = handler.call
        # The handler itself when it takes only the args: called without the adapter.
        self._function = handler.function if handler.args_only else None
        self._is_async = handler.is_async
        self._timeout = timeout
        self.direct_handler: Any = (
            self._function
            if self._function is not None
            and self._is_async
            and timeout is None
            and self._ack_nowait is not None
            else None
        )
        """The handler, when a worker without layers may run it itself.

        Set when the handler is an ``async def`` taking only the args, the
        worker sets no timeout and the backend acknowledges with
        ``ack_nowait``: then :meth:`settle_begun` comes down to ``await
        handler(task.args)``, ``False`` made a failure, and ``ack_nowait``, and
        the worker's loop does exactly that inline (one coroutine frame less
        per task). A task with its own timeout still goes through
        :meth:`settle_begun`. None otherwise.
        """

    async def __call__(self, task: Task) -> Any:
        timeout = begin_execution(task) or self._timeout
        try:
            if timeout is not None:
                result = await self._call_with_timeout(task, timeout)
            elif not self._is_async:
                result = self._call(task)
                if type(result) not in PLAIN_RESULTS and isinstance(result, RETURNS_LATER):
                    result = await finish_returned(result, self._handler)
            elif self._function is not None:
                result = await self._function(task.args)
            else:
                result = await self._call(task)
        except trio.Cancelled as cancelled:
            stray = self.stray(cancelled)
            if stray is None:
                raise
            raise stray from cancelled
        if result is False:
            raise TaskFailedError()
        return result

    async def _call_with_timeout(self, task: Task, timeout: float) -> Any:
        result: Any = None
        with trio.move_on_after(timeout) as scope:
            if self._is_async:
                result = await self._call(task)
            else:
                result = self._call(task)
                if type(result) not in PLAIN_RESULTS and isinstance(result, RETURNS_LATER):
                    result = await finish_returned(result, self._handler)
        if scope.cancelled_caught:
            raise TaskTimeoutError(timeout)
        return result

    def stray(self, cancelled: trio.Cancelled) -> StrayCancelledError | None:
        """:func:`stray_cancelled` for a ``Cancelled`` out of this handler."""
        return stray_cancelled(cancelled, f"handler {handler_name(self._handler)!r}")

    @always_ready
    async def ready(self) -> None:
        """Always ready."""

    async def settle_begun(self, task: Task, timeout: float | None) -> None:
        """``Acknowledge(self)`` in one frame, for a task ``begin_execution`` began.

        The path of a worker without layers: the worker begins the execution
        itself (``begin_execution``, or ``begin_direct`` on its inline path, see
        :attr:`direct_handler`) and passes on the task's own timeout, or None.
        """
        # The steps of __call__ after begin_execution, written out again on
        # purpose: calling it from here would cost one more coroutine frame
        # per task on the hot path.
        settler = self._settler
        timeout = timeout or self._timeout
        try:
            if timeout is not None:
                result = await self._call_with_timeout(task, timeout)
            elif not self._is_async:
                result = self._call(task)
                if type(result) not in PLAIN_RESULTS and isinstance(result, RETURNS_LATER):
                    result = await finish_returned(result, self._handler)
            elif self._function is not None:
                result = await self._function(task.args)
            else:
                result = await self._call(task)
            if result is False:
                raise TaskFailedError()
        except Exception as exc:
            await settler.failure(task, exc)
        except trio.Cancelled as cancelled:
            stray = self.stray(cancelled)
            if stray is None:
                await settler.interrupted(task)
                raise
            await settler.failure(task, stray)
        except BaseException:
            await settler.interrupted(task)
            raise
        else:
            if self._ack_nowait is None:
                await settler.success(task, result)
            else:
                self._ack_nowait(task, _DONE, result, None)
                if settler._context._listeners:
                    settler.emit_success(task, result)

    async def call_and_settle(self, task: Task) -> Any:
        """``Acknowledge(self)`` in one frame, for a stack without execution layers.

        Settles like :meth:`settle_begun`, then returns the result or raises
        the task's exception so task layers see it; a backend failure while
        settling is raised as :class:`BackendFailure`.
        """
        # The steps of __call__ once more, for the frame it saves per task.
        settler = self._settler
        timeout = begin_execution(task) or self._timeout
        try:
            try:
                if timeout is not None:
                    result = await self._call_with_timeout(task, timeout)
                elif not self._is_async:
                    result = self._call(task)
                    if type(result) not in PLAIN_RESULTS and isinstance(result, RETURNS_LATER):
                        result = await finish_returned(result, self._handler)
                elif self._function is not None:
                    result = await self._function(task.args)
                else:
                    result = await self._call(task)
            except trio.Cancelled as cancelled:
                stray = self.stray(cancelled)
                if stray is None:
                    raise
                raise stray from cancelled
            if result is False:
                raise TaskFailedError()
        except Exception as exc:
            try:
                await settler.failure(task, exc)
            except Exception as backend_error:
                raise BackendFailure(backend_error) from backend_error
            raise
        except BaseException:
            await settler.interrupted(task)
            raise
        try:
            if self._ack_nowait is None:
                await settler.success(task, result)
            else:
                self._ack_nowait(task, _DONE, result, None)
                if settler._context._listeners:
                    settler.emit_success(task, result)
        except Exception as backend_error:
            raise BackendFailure(backend_error) from backend_error
        return result


class SettlingExecute(Execute):
    """An :class:`Execute` whose call settles the outcome too (see :meth:`call_and_settle`).

    The innermost service of a stack without execution layers: one coroutine
    frame per task less than ``Acknowledge(Execute)``.
    """

    __slots__ = ()

    __call__ = Execute.call_and_settle


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


class Acknowledge:
    """Reports each outcome of the services inside it to the backend, then passes it on.

    When the services inside answered or failed without running the handler
    (the task is still ``Queued``), a failure still counts as an attempt, so an
    execution layer that always refuses cannot bounce a task forever; a
    :class:`~pyapalis._worker._service.NotReadyError` hands the task back instead.
    """

    __slots__ = ("_inner", "_settler")

    def __init__(self, inner: Service, settler: Settler) -> None:
        self._inner = inner
        self._settler = settler

    async def __call__(self, task: Task) -> Any:
        settler = self._settler
        try:
            result = await self._inner(task)
        except Exception as exc:
            try:
                if task.parts.status is not _QUEUED:
                    await settler.failure(task, exc)
                else:
                    # The handler never ran: count the attempt it did not.
                    task.parts.attempt.increment()
                    set_status(task, _RUNNING)
                    if isinstance(exc, NotReadyError):
                        await settler.interrupted(task)  # handed back, un-counted
                    else:
                        await settler.failure(task, exc)
            except Exception as backend_error:
                raise BackendFailure(backend_error) from backend_error
            raise
        except BaseException:
            if task.parts.status is _QUEUED:
                # release() un-counts the execution it interrupts: count it first.
                task.parts.attempt.increment()
                set_status(task, _RUNNING)
            await settler.interrupted(task)
            raise
        if task.parts.status is _QUEUED:
            set_status(task, _RUNNING)  # settled here: the worker must not settle it again
        try:
            ack_nowait = settler._ack_nowait
            if ack_nowait is None:
                await settler.success(task, result)
            else:
                ack_nowait(task, _DONE, result, None)
                if settler._context._listeners:
                    settler.emit_success(task, result)
        except Exception as backend_error:
            raise BackendFailure(backend_error) from backend_error
        return result

    @always_ready
    async def ready(self) -> None:
        """Always ready."""
