"""Every exception pyapalis raises, defined once and shared by both cores.

The compiled core (``pyapalis._core``) and its pure-Python twin import these
classes, so ``except MissingDataError`` works whichever implementation is loaded.
"""

from __future__ import annotations

__all__ = [
    "AbortError",
    "BuildError",
    "CodecError",
    "DeferredError",
    "MissingDataError",
    "PyapalisError",
    "RetryAfterError",
    "StorageError",
    "TaskError",
    "TaskFailedError",
    "TaskTimeoutError",
    "WorkerStateError",
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
