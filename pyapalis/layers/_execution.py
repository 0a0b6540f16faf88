"""Execution layers that shape an execution's outcome: RetryLayer, TimeoutLayer, CatchPanicLayer.

They sit inside the backend acknowledgement (``wraps_execution``), so what
they return or raise is what the backend records.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar

import trio

from .._errors import AbortError, PyapalisError, TaskTimeoutError
from .._implementation import Task, retry_delay
from .._worker._context import WorkerContext
from .._worker._events import Event, EventKind
from .._worker._retry import RetryPolicy
from .._worker._service import AlwaysReady, Service
from ._common import check_seconds

__all__ = ["CatchPanicLayer", "RetryLayer", "TimeoutLayer"]


class RetryLayer:
    """Re-runs a failing execution in place, without handing the task back to the backend.

    ``RetryLayer(RetryPolicy.retries(3, BackoffMode.constant(2)))``: up to 3
    more executions, 2 s apart (waited on trio's clock, holding the worker's
    slot). ``AbortError`` is never retried, ``RetryAfterError`` waits its own
    delay and ``DeferredError`` none. Every execution counts as an attempt,
    and a task's own ``max_attempts`` caps them. When the retries in place are
    used up, the last failure goes to the acknowledgement, which retries
    through the backend only if the task's attempt budget has room left.

    Each failure retried in place is reported as an ``Error`` event, so
    listeners (and ``TestWorker``) still see one outcome per execution.
    Compare ``WorkerBuilder.retry(policy)``, which retries through the backend
    and frees the slot while the task waits.
    """

    wraps_execution: ClassVar[bool] = True

    def __init__(self, policy: RetryPolicy) -> None:
        if not isinstance(policy, RetryPolicy):
            raise TypeError(
                f"RetryLayer: policy must be a RetryPolicy, got {type(policy).__name__} {policy!r}"
            )
        self.policy = policy

    def layer(self, inner: Service) -> Service:
        return _RetryService(inner, self.policy, None)

    def layer_for_worker(self, inner: Service, worker: WorkerContext) -> Service:
        return _RetryService(inner, self.policy, worker)

    def __repr__(self) -> str:
        return f"RetryLayer({self.policy!r})"


class _RetryService(AlwaysReady):
    __slots__ = ("_backoff", "_inner", "_max_retries", "_worker")

    def __init__(self, inner: Service, policy: RetryPolicy, worker: WorkerContext | None) -> None:
        self._inner = inner
        self._max_retries = policy.max_retries
        self._backoff = policy.backoff
        self._worker = worker

    async def __call__(self, task: Task) -> Any:
        retries = 0
        while True:
            try:
                return await self._inner(task)
            except AbortError:
                raise
            except Exception as error:
                parts = task.parts
                cap = parts.max_attempts
                if retries >= self._max_retries or (
                    cap is not None and parts.attempt.current() >= cap
                ):
                    raise
                retries += 1
                if self._worker is not None:
                    self._worker.emit(Event(EventKind.Error, parts.task_id, error=error))
                delay = retry_delay(error, retries, self._backoff)
                if delay > 0:
                    await trio.sleep(delay)


class TimeoutLayer:
    """Fails with ``TaskTimeoutError`` when the services inside take longer than ``seconds``.

    A retryable failure, like the per-execution limit of
    ``WorkerBuilder.timeout`` and ``TaskBuilder.timeout``; the difference is
    what it covers: everything inside this layer (placed outside a
    ``RetryLayer`` it bounds all the retries in place, outside a
    ``LongRunningLayer`` the tracked sub-work too), not only the handler call.
    """

    wraps_execution: ClassVar[bool] = True

    def __init__(self, seconds: float | timedelta) -> None:
        self.seconds = check_seconds("TimeoutLayer", "seconds", seconds)

    def layer(self, inner: Service) -> Service:
        return _TimeoutService(inner, self.seconds)

    def __repr__(self) -> str:
        return f"TimeoutLayer({self.seconds!r})"


class _TimeoutService(AlwaysReady):
    __slots__ = ("_inner", "_seconds")

    def __init__(self, inner: Service, seconds: float) -> None:
        self._inner = inner
        self._seconds = seconds

    async def __call__(self, task: Task) -> Any:
        result: Any = None
        with trio.move_on_after(self._seconds) as scope:
            result = await self._inner(task)
        if scope.cancelled_caught:
            raise TaskTimeoutError(self._seconds)
        return result


class CatchPanicLayer:
    """Turns unexpected exceptions into ``AbortError``: the task is Killed, never retried.

    The exceptions pyapalis defines to steer a task (``RetryAfterError``,
    ``DeferredError``, ``AbortError``, ``TaskTimeoutError``, a handler's
    ``False``...) pass unchanged, and so do the types listed in ``retryable``;
    anything else (a bug: ``KeyError``, ``ZeroDivisionError``...) becomes
    ``AbortError`` whose ``error`` and ``__cause__`` are the original
    exception and whose message names its type. ``WorkerBuilder.catch_panic()``
    is the shortcut. ``KeyboardInterrupt`` and cancellation are never caught.
    """

    wraps_execution: ClassVar[bool] = True

    def __init__(self, retryable: tuple[type[BaseException], ...] = ()) -> None:
        if not isinstance(retryable, tuple) or not all(
            isinstance(kind, type) and issubclass(kind, BaseException) for kind in retryable
        ):
            raise TypeError(
                f"CatchPanicLayer: retryable must be a tuple of exception types, got {retryable!r}"
            )
        self.retryable = retryable

    def layer(self, inner: Service) -> Service:
        return _CatchPanicService(inner, (PyapalisError, *self.retryable))

    def __repr__(self) -> str:
        return f"CatchPanicLayer(retryable={self.retryable!r})"


class _CatchPanicService(AlwaysReady):
    __slots__ = ("_expected", "_inner")

    def __init__(self, inner: Service, expected: tuple[type[BaseException], ...]) -> None:
        self._inner = inner
        self._expected = expected

    async def __call__(self, task: Task) -> Any:
        try:
            return await self._inner(task)
        except Exception as error:
            if isinstance(error, self._expected):
                raise
            abort = AbortError(error)
            abort.args = (f"{type(error).__name__}: {error}",)
            raise abort from error
