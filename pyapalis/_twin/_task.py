"""Twin of ``csrc/_task.pxi``: ``Task``, ``Parts`` and ``TaskBuilder``."""

from __future__ import annotations

import datetime as _datetime
import time
from collections.abc import MutableMapping
from typing import Any, cast, final

from .._status import Status
from ._attempt import Attempt
from ._extensions import Extensions
from ._time import _after_now, _as_positive_int, _as_priority, _as_seconds, _as_timestamp, _Seconds
from ._ulid import TaskId

__all__ = ["Parts", "Task", "TaskBuilder"]

# -- Task, Parts, TaskBuilder -------------------------------------------------


def _as_status(value: object, name: str) -> Status:
    if isinstance(value, Status):
        return value
    if isinstance(value, str):
        return Status(value)
    raise TypeError(f"{name}: expected Status, got {type(value).__name__} {value!r}")


def _as_task_id(value: object, name: str) -> TaskId | None:
    if value is None or isinstance(value, TaskId):
        return value
    if isinstance(value, str):
        return TaskId(value)
    raise TypeError(f"{name}: expected TaskId or str, got {type(value).__name__} {value!r}")


def _meta_into(ctx: Any, value: object) -> Any:
    """Store ``value`` in a ctx mapping under its class's qualified name."""
    if ctx is None:
        ctx = {}
    elif not hasattr(ctx, "__setitem__"):
        raise TypeError(
            f"meta: the task ctx must be a mutable mapping to hold metadata, "
            f"got {type(ctx).__name__}"
        )
    cls = type(value)
    key = cls.__qualname__
    get = getattr(ctx, "get", None)
    existing = get(key) if get is not None else None
    if existing is not None and not isinstance(existing, dict) and type(existing) is not cls:
        other = type(existing)
        raise TypeError(
            f"meta: {cls.__module__}.{key} and {other.__module__}.{other.__qualname__} would "
            f"both be stored under {key!r} (metadata is keyed by the class's qualified name); "
            f"rename one of the classes, or wrap one in a class of its own"
        )
    cast(MutableMapping[str, Any], ctx)[key] = value
    return ctx


def _copy_ctx(ctx: Any) -> Any:
    # Metadata lives in a dict ctx: a clone gets its own dict so that adding
    # metadata to one copy does not leak into the other. Other contexts are
    # backend objects and are shared.
    if type(ctx) is dict:
        return dict(ctx)
    return ctx


@final
class Parts:
    """Everything about a task except its arguments.

    ``max_attempts`` and ``timeout`` are ``None`` when unset (the worker's
    policy applies); ``run_at`` is UNIX seconds; ``ctx`` is the backend's
    context, a dict of metadata by default.
    """

    __slots__ = (
        "_attempt",
        "_data",
        "_max_attempts",
        "_priority",
        "_run_at",
        "_status",
        "_task_id",
        "_timeout",
        "ctx",
    )

    _task_id: TaskId | None
    _data: Extensions | None
    _attempt: Attempt
    ctx: Any
    _status: Status
    _run_at: float
    _timeout: float | None
    _priority: int
    _max_attempts: int | None

    def __init__(
        self,
        *,
        task_id: TaskId | str | None = None,
        data: Extensions | None = None,
        attempt: Attempt | None = None,
        ctx: Any = None,
        status: Status | str = Status.Pending,
        run_at: float | None = None,
        max_attempts: int | None = None,
        timeout: _Seconds | None = None,
        priority: int = 0,
    ) -> None:
        self.task_id = task_id
        self._data = None
        if data is not None:
            self.data = data
        if attempt is None:
            self._attempt = Attempt()
        else:
            self.attempt = attempt
        self.ctx = ctx
        self.status = status
        self._run_at = time.time() if run_at is None else _as_timestamp(run_at, "run_at")
        self.max_attempts = max_attempts
        self.timeout = timeout
        self._priority = _as_priority(priority, "priority")

    @property
    def task_id(self) -> TaskId | None:
        """The task's :class:`TaskId`, or None until a backend assigns one."""
        return self._task_id

    @task_id.setter
    def task_id(self, value: TaskId | str | None) -> None:
        self._task_id = _as_task_id(value, "task_id")

    @property
    def data(self) -> Extensions:
        """The task's :class:`Extensions` (values looked up by type)."""
        if self._data is None:
            self._data = Extensions()
        return self._data

    @data.setter
    def data(self, value: Extensions) -> None:
        if not isinstance(value, Extensions):
            raise TypeError(f"data: expected Extensions, got {type(value).__name__}")
        self._data = value

    @property
    def attempt(self) -> Attempt:
        """The :class:`Attempt` counter, shared with clones of the task."""
        return self._attempt

    @attempt.setter
    def attempt(self, value: Attempt) -> None:
        if not isinstance(value, Attempt):
            raise TypeError(f"attempt: expected Attempt, got {type(value).__name__}")
        self._attempt = value

    @property
    def status(self) -> Status:
        """The task's :class:`Status`."""
        return self._status

    @status.setter
    def status(self, value: Status | str) -> None:
        self._status = _as_status(value, "status")

    @property
    def run_at(self) -> float:
        """When the task may run, in UNIX seconds."""
        return self._run_at

    @run_at.setter
    def run_at(self, value: float) -> None:
        self._run_at = _as_timestamp(value, "run_at")

    @property
    def max_attempts(self) -> int | None:
        """The most executions this task may have, or None for the worker's policy."""
        return self._max_attempts

    @max_attempts.setter
    def max_attempts(self, value: int | None) -> None:
        self._max_attempts = None if value is None else _as_positive_int(value, "max_attempts")

    @property
    def timeout(self) -> float | None:
        """The limit of one execution in seconds, or None for the worker's."""
        return self._timeout

    @timeout.setter
    def timeout(self, value: _Seconds | None) -> None:
        self._timeout = None if value is None else _as_seconds(value, "timeout", False)

    @property
    def priority(self) -> int:
        """Higher runs first in backends that order by priority (a 64-bit int)."""
        return self._priority

    @priority.setter
    def priority(self, value: int) -> None:
        self._priority = _as_priority(value, "priority")

    def copy(self) -> Parts:
        """A copy that shares the Attempt and copies data (and a dict ctx) shallowly."""
        other = Parts.__new__(Parts)
        other._task_id = self._task_id
        other._data = None if self._data is None else self._data.copy()
        other._attempt = self._attempt
        other.ctx = _copy_ctx(self.ctx)
        other._status = self._status
        other._run_at = self._run_at
        other._timeout = self._timeout
        other._priority = self._priority
        other._max_attempts = self._max_attempts
        return other

    def __repr__(self) -> str:
        return (
            f"Parts(task_id={self._task_id!r}, status={self._status.name}, "
            f"attempt={self._attempt.current()}, run_at={self._run_at!r}, "
            f"max_attempts={self.max_attempts!r}, timeout={self.timeout!r}, "
            f"priority={self._priority!r})"
        )


def _new_parts(ctx: Any) -> Parts:
    parts = Parts.__new__(Parts)
    parts._task_id = None
    parts._data = None
    parts._attempt = Attempt()
    parts.ctx = ctx
    parts._status = Status.Pending
    parts._run_at = time.time()
    parts._timeout = None
    parts._priority = 0
    parts._max_attempts = None
    return parts


@final
class Task:
    """A unit of work: the handler's arguments (``args``) and its :class:`Parts`."""

    __slots__ = ("_parts", "args")

    args: Any
    _parts: Parts

    def __init__(self, args: Any, ctx: Any = None) -> None:
        self.args = args
        self._parts = _new_parts(ctx)

    @property
    def parts(self) -> Parts:
        """Everything about the task except its arguments (read-only: mutate it in place)."""
        return self._parts

    @staticmethod
    def builder(args: Any) -> TaskBuilder:
        """A :class:`TaskBuilder` for ``args``."""
        return TaskBuilder(args)

    @staticmethod
    def from_parts(args: Any, parts: Parts) -> Task:
        """A task made of ``args`` and existing ``parts`` (used by backends)."""
        if not isinstance(parts, Parts):
            raise TypeError(f"from_parts: expected Parts, got {type(parts).__name__}")
        task = Task.__new__(Task)
        task.args = args
        task._parts = parts
        return task

    def clone(self) -> Task:
        """A copy sharing the Attempt; ``data`` is copied shallowly."""
        return Task.from_parts(self.args, self.parts.copy())

    @property
    def task_id(self) -> TaskId | None:
        """Shortcut for ``task.parts.task_id``."""
        return self._parts._task_id

    def __repr__(self) -> str:
        return (
            f"Task({self.args!r}, task_id={self._parts._task_id!r}, "
            f"status={self._parts._status.name}, attempt={self._parts._attempt.current()})"
        )


@final
class TaskBuilder:
    """Builds a :class:`Task` step by step; every method returns the builder.

    ``TaskBuilder("my-task").id("task-123").attempts(3).timeout(30)
    .run_in_minutes(10).build()``. Invalid input raises ``ValueError`` or
    ``TypeError`` naming the argument.
    """

    __slots__ = (
        "_args",
        "_attempt",
        "_ctx",
        "_data",
        "_max_attempts",
        "_priority",
        "_run_at",
        "_status",
        "_task_id",
        "_timeout",
    )

    def __init__(self, args: Any) -> None:
        self._args = args
        self._task_id: TaskId | None = None
        self._attempt: Attempt | None = None
        self._status = Status.Pending
        self._ctx: Any = None
        self._data: Extensions | None = None
        self._run_at: float | None = None
        self._timeout: float | None = None
        self._priority = 0
        self._max_attempts: int | None = None

    def id(self, value: str | TaskId) -> TaskBuilder:
        """Use ``value`` (a str or :class:`TaskId`) as the task's id."""
        if isinstance(value, (str, TaskId)):
            self._task_id = TaskId(value)
            return self
        raise TypeError(f"id: expected str or TaskId, got {type(value).__name__} {value!r}")

    def with_task_id(self, value: str | TaskId) -> TaskBuilder:
        """Alias of :meth:`id`."""
        return self.id(value)

    def attempts(self, n: int) -> TaskBuilder:
        """The maximum number of executions (>= 1)."""
        self._max_attempts = _as_positive_int(n, "attempts")
        return self

    def timeout(self, seconds: _Seconds) -> TaskBuilder:
        """The limit of one execution, in seconds or as a timedelta (> 0)."""
        self._timeout = _as_seconds(seconds, "timeout", False)
        return self

    def with_attempt(self, attempt: Attempt) -> TaskBuilder:
        """Start from this :class:`Attempt` (the built task shares it)."""
        if not isinstance(attempt, Attempt):
            raise TypeError(
                f"with_attempt: expected Attempt, got {type(attempt).__name__} {attempt!r}"
            )
        self._attempt = attempt
        return self

    def with_status(self, status: Status | str) -> TaskBuilder:
        """Start in this :class:`Status`."""
        self._status = _as_status(status, "with_status")
        return self

    def with_ctx(self, ctx: Any) -> TaskBuilder:
        """Use this backend context (metadata added later goes into it)."""
        self._ctx = ctx
        return self

    def with_data(self, data: Extensions) -> TaskBuilder:
        """Use these :class:`Extensions` (copied at build)."""
        if not isinstance(data, Extensions):
            raise TypeError(f"with_data: expected Extensions, got {type(data).__name__}")
        self._data = data.copy()
        return self

    def data(self, value: object) -> TaskBuilder:
        """Insert one value into the task's data, keyed by its type."""
        if self._data is None:
            self._data = Extensions()
        self._data.insert(value)
        return self

    def meta(self, value: object) -> TaskBuilder:
        """Store ``value`` in the ctx metadata, keyed by its class's qualname."""
        self._ctx = _meta_into(self._ctx, value)
        return self

    def priority(self, value: int) -> TaskBuilder:
        """Higher runs first in backends that order by priority."""
        self._priority = _as_priority(value, "priority")
        return self

    def run_at_timestamp(self, seconds: float) -> TaskBuilder:
        """Run no earlier than this UNIX time (seconds)."""
        self._run_at = _as_timestamp(seconds, "run_at_timestamp")
        return self

    def run_at_time(self, when: _datetime.datetime) -> TaskBuilder:
        """Run no earlier than this timezone-aware datetime."""
        if not isinstance(when, _datetime.datetime):
            raise TypeError(f"run_at_time: expected datetime, got {type(when).__name__} {when!r}")
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError(f"run_at_time: datetime must be timezone-aware, got naive {when!r}")
        self._run_at = _as_timestamp(when.timestamp(), "run_at_time")
        return self

    def run_after(self, delay: _Seconds) -> TaskBuilder:
        """Run no earlier than ``delay`` (seconds or timedelta) from now."""
        self._run_at = _after_now(delay, "run_after", 1.0)
        return self

    def run_in_seconds(self, n: float) -> TaskBuilder:
        """Run no earlier than ``n`` seconds from now."""
        self._run_at = _after_now(n, "run_in_seconds", 1.0)
        return self

    def run_in_minutes(self, n: float) -> TaskBuilder:
        """Run no earlier than ``n`` minutes from now."""
        self._run_at = _after_now(n, "run_in_minutes", 60.0)
        return self

    def run_in_hours(self, n: float) -> TaskBuilder:
        """Run no earlier than ``n`` hours from now."""
        self._run_at = _after_now(n, "run_in_hours", 3600.0)
        return self

    def build(self) -> Task:
        """The task. The builder can be reused; each task gets its own data."""
        parts = Parts.__new__(Parts)
        parts._task_id = self._task_id
        parts._data = None if self._data is None else self._data.copy()
        parts._attempt = Attempt() if self._attempt is None else self._attempt
        parts.ctx = _copy_ctx(self._ctx)
        parts._status = self._status
        parts._run_at = time.time() if self._run_at is None else self._run_at
        parts._timeout = self._timeout
        parts._priority = self._priority
        parts._max_attempts = self._max_attempts
        return Task.from_parts(self._args, parts)
