"""The pure-Python twin of ``csrc/_invoke.pxi``: what a worker does per execution.

:class:`Invoker` calls the handler with the arguments resolved at build,
:class:`Judge` decides what an execution's outcome means (the one rule of a
worker: Done, retry after a delay, Failed or Killed), and :class:`SyncDone`
records a success that the backend acknowledges synchronously.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, Final, Protocol

from .._errors import AbortError, DeferredError, RetryAfterError, TaskFailedError
from .._status import Status
from ._task import Task

__all__ = [
    "DONE",
    "STEP_ARGS",
    "STEP_ATTEMPT",
    "STEP_CALL",
    "STEP_CONSTANT",
    "STEP_DATA",
    "STEP_EXTENSIONS",
    "STEP_PARTS",
    "STEP_TASK",
    "STEP_TASK_ID",
    "Invoker",
    "Judge",
    "Step",
    "SyncDone",
    "Verdict",
    "ready",
    "retry_delay",
]

STEP_ARGS: Final = 0
"""The task's args."""
STEP_CONSTANT: Final = 1
"""A value fixed at build (the worker's ``WorkerContext``)."""
STEP_ATTEMPT: Final = 2
"""The task's ``Attempt``."""
STEP_TASK_ID: Final = 3
"""The task's ``TaskId``."""
STEP_PARTS: Final = 4
"""The task's ``Parts``."""
STEP_TASK: Final = 5
"""The ``Task`` itself."""
STEP_EXTENSIONS: Final = 6
"""The task's ``Extensions``."""
STEP_DATA: Final = 7
"""``Data[T]``: the task's value of type ``value``, else ``fallback``."""
STEP_CALL: Final = 8
"""``value(task)``: a ``from_request`` classmethod, a ``Meta[T]`` reader."""


class _Backoff(Protocol):
    def delay(self, failures: int) -> float: ...


# -- the outcome rule ---------------------------------------------------------


class Verdict:
    """What an execution's outcome means for its task (see :class:`Judge`).

    ``status`` is the status the task ends the execution with: ``Done``,
    ``Failed``, ``Killed``, or ``Pending`` for a retry after ``delay``
    seconds. ``error`` is the failure (None for ``Done``).
    """

    __slots__ = ("delay", "error", "status")

    def __init__(self, status: Status, error: BaseException | None = None, delay: float = 0.0):
        self.status = status
        self.error = error
        self.delay = float(delay)

    def __repr__(self) -> str:
        if self.status is Status.Pending:
            return f"Verdict(retry after {self.delay!r} s: {self.error!r})"
        if self.error is None:
            return f"Verdict({self.status.value})"
        return f"Verdict({self.status.value}: {self.error!r})"


DONE: Final = Verdict(Status.Done)
"""The verdict on every success."""


def retry_delay(error: BaseException, failures: int, backoff: _Backoff | None) -> float:
    """Seconds to wait before retrying after ``error``, the ``failures``-th failure.

    ``RetryAfterError`` brings its own delay, ``DeferredError`` none; any other
    error waits what ``backoff`` (a :class:`BackoffMode`, or None for none)
    says for that many failures. The one place a retry delay is chosen: the
    worker's retries through the backend and ``RetryLayer``'s in place.
    """
    if isinstance(error, RetryAfterError):
        return error.delay
    if backoff is None or isinstance(error, DeferredError):
        return 0.0
    return backoff.delay(failures)


class Judge:
    """Decides what an execution's outcome means: the one rule of a worker.

    ``Judge(default_attempts, backoff)``: the attempt budget of a task that
    sets no ``max_attempts`` of its own, and the worker's backoff (None: retry
    at once).
    """

    __slots__ = ("_backoff", "_default_attempts")

    def __init__(self, default_attempts: int = 1, backoff: _Backoff | None = None) -> None:
        if default_attempts < 1:
            raise ValueError(f"Judge: default_attempts must be >= 1, got {default_attempts!r}")
        self._default_attempts = default_attempts
        self._backoff = backoff

    def failure(self, result: Any, error: BaseException | None) -> BaseException | None:
        """The failure an outcome is, or None if it is a success.

        ``error`` if one was raised; a :class:`TaskFailedError` for the value
        ``False`` ("Task returned false"); None for any other value.
        """
        if error is not None:
            return error
        if result is False:
            return TaskFailedError()
        return None

    def decide(self, task: Task, result: Any, error: BaseException | None) -> Verdict:
        """The :class:`Verdict` on an execution of ``task`` that returned ``result``
        or raised ``error`` (None if it returned).

        A success is :data:`DONE`. ``AbortError`` is ``Killed``, never retried.
        Any other failure is retried (``Pending`` after :func:`retry_delay`)
        while the task has attempts left — its ``max_attempts``, else the
        default of this judge — and ``Failed`` once they are used up.
        """
        failure = self.failure(result, error)
        if failure is None:
            return DONE
        if isinstance(failure, AbortError):
            return Verdict(Status.Killed, failure)
        parts = task.parts
        attempt = parts.attempt.current()
        budget = parts.max_attempts or self._default_attempts
        if attempt < budget:
            return Verdict(
                Status.Pending, failure, retry_delay(failure, max(attempt, 1), self._backoff)
            )
        return Verdict(Status.Failed, failure)


AckNowait = Callable[[Task, Status, Any, BaseException | None], None]


class SyncDone:
    """Records a success without awaiting, when the backend acknowledges synchronously.

    ``SyncDone(judge, listeners, on_success)``; :meth:`attach` gives it the
    backend's ``ack_nowait`` (:class:`SyncAck`) for a run, or None. Then
    ``record(task, result)`` acknowledges ``Done`` with the result and calls
    ``on_success(task, result)`` if ``listeners`` (a list) is not empty, and
    returns True, when the judge says the result is a success and the backend
    has ``ack_nowait``; otherwise it does nothing and returns False (the
    caller records the outcome by awaiting).
    """

    __slots__ = ("_ack_nowait", "_judge", "_listeners", "_on_success")

    def __init__(
        self,
        judge: Judge,
        listeners: Collection[object],
        on_success: Callable[[Task, Any], object],
    ) -> None:
        self._judge = judge
        self._listeners = listeners
        self._on_success = on_success
        self._ack_nowait: AckNowait | None = None

    def attach(self, ack_nowait: AckNowait | None) -> None:
        """Acknowledge through ``ack_nowait`` from now on (None: never synchronously)."""
        self._ack_nowait = ack_nowait

    def record(self, task: Task, result: Any) -> bool:
        """Record ``task`` Done with ``result`` now, if possible (see the class)."""
        ack_nowait = self._ack_nowait
        if ack_nowait is None or self._judge.decide(task, result, None) is not DONE:
            return False
        ack_nowait(task, Status.Done, result, None)
        if self._listeners:
            self._on_success(task, result)
        return True


# -- calling the handler ---------------------------------------------------------


async def ready(value: Any) -> Any:
    """``await ready(value)`` is ``value``: a plain ``def`` handler's result as an awaitable."""
    return value


class Step:
    """Where one argument of a handler comes from (see :class:`Invoker`)."""

    __slots__ = ("fallback", "kind", "value")

    def __init__(self, kind: int, value: Any = None, fallback: Any = None) -> None:
        if not STEP_ARGS <= kind <= STEP_CALL:
            raise ValueError(f"Step: unknown kind {kind!r}")
        if kind == STEP_CALL and not callable(value):
            raise TypeError(f"Step: a call step needs a callable, got {value!r}")
        self.kind = kind
        self.value = value
        self.fallback = fallback

    def value_for(self, task: Task) -> Any:
        """This argument's value for ``task``."""
        kind = self.kind
        if kind == STEP_ARGS:
            return task.args
        if kind == STEP_CONSTANT:
            return self.value
        parts = task.parts
        if kind == STEP_ATTEMPT:
            return parts.attempt
        if kind == STEP_TASK_ID:
            return parts.task_id
        if kind == STEP_PARTS:
            return parts
        if kind == STEP_TASK:
            return task
        if kind == STEP_EXTENSIONS:
            return parts.data
        if kind == STEP_DATA:
            value = parts.data.get(self.value)
            return self.fallback if value is None else value
        return self.value(task)

    def __repr__(self) -> str:
        return f"Step({self.kind!r}, {self.value!r}, {self.fallback!r})"


Timed = Callable[["Invoker", Task, float], Awaitable[Any]]


class Invoker:
    """Calls a handler with the arguments its plan resolves, per execution.

    Built once, at ``WorkerBuilder.build()``: ``Invoker(function, steps,
    keywords=(), *, is_async, timeout, timed, plain_results, returns_later,
    finish_returned)``. ``steps`` is one :class:`Step` per positional
    parameter (the first is usually ``Step(STEP_ARGS)``), ``keywords`` pairs
    of a keyword-only parameter's name and its step.

    :meth:`begin` starts an execution: it counts the attempt, marks the task
    Running and returns what the worker awaits for the handler's result: the
    handler's own coroutine (an ``async def`` without a time limit), else
    ``timed(invoker, task, seconds)`` for a task limited by its own timeout or
    the worker's ``timeout``, which calls :meth:`call` inside its limit.
    :meth:`call` calls the handler: for a plain ``def``, its result comes back
    as an awaitable — :func:`ready` for a value, ``finish_returned(result,
    function)`` for a result that is ``returns_later`` and not of a type in
    ``plain_results``.
    """

    __slots__ = (
        "_finish_returned",
        "_function",
        "_is_async",
        "_keywords",
        "_plain_results",
        "_returns_later",
        "_steps",
        "_timed",
        "_timeout",
    )

    def __init__(
        self,
        function: Callable[..., Any],
        steps: Sequence[Step],
        keywords: Sequence[tuple[str, Step]] = (),
        *,
        is_async: bool,
        timeout: float | None,
        timed: Timed,
        plain_results: Collection[type],
        returns_later: tuple[type, ...],
        finish_returned: Callable[[Any, Callable[..., Any]], Awaitable[Any]],
    ) -> None:
        if not callable(function):
            raise TypeError(f"Invoker: function must be callable, got {function!r}")
        self._steps = tuple(steps)
        if not self._steps:
            raise ValueError("Invoker: a handler takes at least one positional argument")
        for step in self._steps:
            if not isinstance(step, Step):
                raise TypeError(f"Invoker: steps must be Step objects, got {step!r}")
        self._keywords = tuple(keywords)
        for _, step in self._keywords:
            if not isinstance(step, Step):
                raise TypeError(f"Invoker: keyword steps must be Step objects, got {step!r}")
        self._function = function
        self._is_async = bool(is_async)
        self._timeout = timeout
        self._timed = timed
        self._plain_results = plain_results
        self._returns_later = returns_later
        self._finish_returned = finish_returned

    @property
    def function(self) -> Callable[..., Any]:
        """The handler."""
        return self._function

    @property
    def is_async(self) -> bool:
        """Whether the handler is an ``async def`` (its call returns a coroutine)."""
        return self._is_async

    def begin(self, task: Task) -> Awaitable[Any]:
        """Count an execution of ``task``, mark it Running, and start it (see the class)."""
        parts = task.parts
        parts.attempt.increment()
        parts.status = Status.Running
        timeout = parts.timeout
        if timeout is None:
            timeout = self._timeout
        if timeout is not None:
            return self._timed(self, task, timeout)
        return self.call(task)

    def call(self, task: Task) -> Awaitable[Any]:
        """Call the handler for ``task``: a coroutine, or an awaitable of a plain def's result."""
        args = [step.value_for(task) for step in self._steps]
        named = {name: step.value_for(task) for name, step in self._keywords}
        result = self._function(*args, **named)
        if self._is_async:
            return result  # type: ignore[no-any-return]
        if type(result) in self._plain_results or not isinstance(result, self._returns_later):
            return ready(result)
        return self._finish_returned(result, self._function)
