"""Every exception pyapalis raises, defined once and shared by both cores.

The compiled core (``pyapalis._core``) and its pure-Python twin import these
classes, so ``except MissingDataError`` works whichever implementation is loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "AbortError",
    "BuildError",
    "CircuitOpenError",
    "CodecError",
    "DeferredError",
    "MissingDataError",
    "MonitorError",
    "NotReadyError",
    "OperationTimeoutError",
    "OverloadedError",
    "PyapalisError",
    "RetryAfterError",
    "RuntimeStoppedError",
    "StorageError",
    "StrayCancelledError",
    "TaskError",
    "TaskFailedError",
    "TaskTimeoutError",
    "UnknownTaskError",
    "WorkerStateError",
    "WorkflowFailedError",
]


class PyapalisError(Exception):
    """Base class of the errors pyapalis raises on its own behalf."""


class MissingDataError(PyapalisError, LookupError):
    """A value of the requested type is not in an :class:`Extensions` map."""

    def __init__(self, key: type) -> None:
        self.key = key
        name = getattr(key, "__qualname__", repr(key))
        super().__init__(f"the type for key `{name}` is not available")


class BuildError(PyapalisError, ValueError):
    """A builder was finished with a part missing or wrong.

    ``kind`` names the problem the way apalis's ``BackendBuilderError`` does
    (``"MissingBackend"``, ``"MissingDb"``, ``"UnresolvableParameter"`` ...).
    """

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(f"{kind}: {message}")


class WorkerStateError(PyapalisError, RuntimeError):
    """A worker was asked to do something its current state does not allow."""


class AbortError(PyapalisError):
    """Raised by a handler to fail a task for good: never retried, final status Killed.

    ``AbortError("bad input")`` or ``AbortError(exc)``; the wrapped exception,
    if any, is also the ``__cause__``.
    """

    def __init__(self, error: BaseException | str = "task aborted") -> None:
        self.error = error
        super().__init__(str(error))
        if isinstance(error, BaseException):
            self.__cause__ = error


class RetryAfterError(PyapalisError):
    """Raised by a handler to retry the task after ``delay`` seconds.

    The retry still needs an attempt left in the task's budget; otherwise the
    task fails with this error.
    """

    def __init__(self, error: BaseException | str, delay: float) -> None:
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not delay >= 0:
            raise ValueError(f"RetryAfterError: delay must be a number >= 0, got {delay!r}")
        self.error = error
        self.delay = float(delay)
        super().__init__(f"{error} (retry after {self.delay:g}s)")
        if isinstance(error, BaseException):
            self.__cause__ = error


class DeferredError(PyapalisError):
    """Raised by a handler to retry the task at once (it still uses an attempt)."""

    def __init__(self, error: BaseException | str = "task deferred") -> None:
        self.error = error
        super().__init__(str(error))
        if isinstance(error, BaseException):
            self.__cause__ = error


class TaskFailedError(PyapalisError):
    """A handler reported failure by returning ``False``."""

    def __init__(self, message: str = "Task returned false") -> None:
        super().__init__(message)


class TaskTimeoutError(PyapalisError, TimeoutError):
    """One execution of a task ran past its timeout (a retryable failure)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        super().__init__(f"task timed out after {timeout:g}s")


class TaskError(PyapalisError):
    """A task's stored failure, as a backend reports it in a ``TaskResult``."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class CodecError(PyapalisError, ValueError):
    """A value could not be encoded for storage, or a stored payload not decoded.

    Raised at push (nothing is written); a payload that cannot be decoded when
    a worker takes its task fails that task with this error instead.
    """


class StorageError(PyapalisError, RuntimeError):
    """A persistent backend cannot be used: locked by another process, corrupt, closed."""


class NotReadyError(PyapalisError):
    """A service was called while it could not take a task (an open circuit).

    Raised before the handler ran, it makes the worker hand the task back to
    the backend unchanged (no attempt counted) and wait for the stack to be
    ready again. A service that raises it must not report itself ready until
    it can take a task, or the worker would pull the same task again at once.
    """


class CircuitOpenError(NotReadyError):
    """The circuit could not admit a task (open, or its trial calls taken).

    Raised only when a consumer loop got past ``ready()`` just before the
    circuit opened, or just after another loop took the last trial: the
    worker hands the task back unchanged (no attempt counted) and waits for
    the circuit.
    """


class OverloadedError(PyapalisError):
    """``LoadShedLayer`` rejected a task because the services inside it were not ready.

    An ordinary failure before the handler: it counts as an attempt and the
    task is retried through the backend while its attempt budget lasts.
    """

    def __init__(self, message: str = "overloaded: the task was shed by LoadShedLayer") -> None:
        super().__init__(message)


class OperationTimeoutError(PyapalisError, TimeoutError):
    """A tracked operation ran past ``LongRunningConfig.max_duration`` (a retryable failure)."""

    def __init__(self, max_duration: float) -> None:
        self.max_duration = max_duration
        super().__init__(f"tracked operation exceeded its maximum duration of {max_duration:g}s")


class UnknownTaskError(PyapalisError, LookupError):
    """A stored task names a task type that the worker pool has not registered.

    The task fails at once (no retry: the name will not change) and the
    worker goes on with the next task.
    """


class WorkflowFailedError(PyapalisError):
    """A workflow run failed: one of its steps failed (or was killed) for good.

    Raised by waiting on the run. ``run_id`` names the run, ``step`` the index
    of the failed step and ``message`` that step's error, after its retries.
    """

    def __init__(self, run_id: str, step: int, message: str) -> None:
        self.run_id = run_id
        self.step = step
        self.message = message
        super().__init__(f"workflow run {run_id!r} failed at step {step}: {message}")


class RuntimeStoppedError(PyapalisError, RuntimeError):
    """The background runtime is stopping or has stopped: it takes no more tasks.

    Also the exception of a submitted task's future when the runtime stopped
    before that task finished (the task itself stays in its storage).
    """


class StrayCancelledError(RuntimeError):
    """A ``trio.Cancelled`` reached the worker while nothing was cancelling it.

    trio raises ``Cancelled`` only inside a cancel scope that was cancelled,
    and that scope catches it again. One that escapes a handler while the
    worker's own scopes are not cancelled was raised by the handler itself (a
    ``Cancelled`` kept and re-raised outside its scope, say). Left alone it
    would be caught by the first cancel scope the worker cancels on the way
    out, and ``run()`` would return as if stopped, tasks handed back unnoticed;
    instead the task fails with this error (the ``Cancelled`` is its cause).
    """


class MonitorError(PyapalisError, ExceptionGroup[Exception]):
    """One or more workers of a :class:`Monitor` failed and were not restarted.

    :attr:`errors` lists ``(worker name, exception)`` pairs in the order the
    workers failed; the exceptions are the ones :meth:`Worker.run` raised,
    unchanged. It is also an :class:`ExceptionGroup` of those exceptions, so
    ``except* StorageError:`` picks out one kind, and ``except MonitorError``
    (or ``except PyapalisError``) catches it whole.
    """

    errors: list[tuple[str, Exception]]

    def __new__(cls, errors: Sequence[tuple[str, Exception]]) -> MonitorError:
        pairs = _check_errors(errors)
        self = super().__new__(cls, _describe(pairs), [error for _, error in pairs])
        self.errors = pairs
        return self

    def __init__(self, errors: Sequence[tuple[str, Exception]]) -> None:
        super().__init__(self.message, list(self.exceptions))

    def derive(self, excs: Sequence[Exception]) -> ExceptionGroup[Exception]:  # type: ignore[override]
        """The group ``split``/``subgroup`` build: a MonitorError while names can be kept."""
        chosen = [pair for pair in self.errors if any(pair[1] is exc for exc in excs)]
        if len(chosen) == len(excs):
            return MonitorError(chosen)
        return ExceptionGroup(self.message, list(excs))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.errors,))


def _check_errors(errors: Sequence[tuple[str, Exception]]) -> list[tuple[str, Exception]]:
    pairs = list(errors)
    if not pairs:
        raise ValueError("MonitorError: errors must list at least one (name, exception) pair")
    for pair in pairs:
        if (
            not isinstance(pair, tuple)
            or len(pair) != 2
            or not isinstance(pair[0], str)
            or not isinstance(pair[1], Exception)
        ):
            raise TypeError(
                f"MonitorError: errors must be (worker name, Exception) pairs, got {pair!r}"
            )
    return pairs


def _describe(pairs: list[tuple[str, Exception]]) -> str:
    failed = "; ".join(f"{name!r}: {error!r}" for name, error in pairs)
    noun = "worker" if len(pairs) == 1 else "workers"
    return f"{len(pairs)} {noun} failed: {failed}"
