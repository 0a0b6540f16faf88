"""The pure-Python twin of the compiled core (``csrc/_core.pyx``).

It is the readable specification of the task data model and the fallback where
the extension cannot be built (``PYAPALIS_NO_EXTENSIONS=1``, non-CPython).
Every core test runs against both implementations, so the two must agree on
every observable behaviour, error message included.
"""

from __future__ import annotations

import datetime as _datetime
import math
import os
import threading
import time
from collections.abc import Iterable, Iterator, MutableMapping
from typing import Any, ClassVar, TypeVar, cast, final

from .._errors import MissingDataError
from .._status import Status

__all__ = [
    "IMPLEMENTATION",
    "Attempt",
    "Extensions",
    "Parts",
    "Task",
    "TaskBuilder",
    "TaskId",
]

IMPLEMENTATION = "python"

T = TypeVar("T")
_Seconds = int | float | _datetime.timedelta


# -- validation shared by the builder and the task fields --------------------


def _as_seconds(value: object, name: str, allow_zero: bool) -> float:
    """Validate a duration given as a number of seconds or a ``timedelta``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, _datetime.timedelta)):
        raise TypeError(
            f"{name}: expected seconds as int, float or timedelta, "
            f"got {type(value).__name__} {value!r}"
        )
    if isinstance(value, _datetime.timedelta):
        seconds = value.total_seconds()
    else:
        try:
            seconds = float(value)
        except OverflowError:
            # An int beyond the range of a float: as unusable as infinity.
            seconds = math.inf
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError(f"{name}: duration must be a finite number of seconds, got {value!r}")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}: duration must be {bound} seconds, got {value!r}")
    return seconds


def _as_timestamp(value: object, name: str) -> float:
    """Validate a UNIX timestamp in seconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{name}: expected a UNIX timestamp in seconds (int or float), "
            f"got {type(value).__name__} {value!r}"
        )
    try:
        seconds = float(value)
    except OverflowError:
        seconds = math.inf
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        raise ValueError(f"{name}: timestamp must be a finite number >= 0, got {value!r}")
    return seconds


def _as_positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name}: must be >= 1, got {value!r}")
    if value > 2147483647:
        raise ValueError(f"{name}: must be <= 2147483647, got {value!r}")
    return int(value)


def _after_now(delay: object, name: str, unit: float) -> float:
    """``now + delay * unit`` seconds, for the builder's ``run_after``/``run_in_*``."""
    at = time.time() + _as_seconds(delay, name, True) * unit
    if math.isinf(at):
        raise ValueError(f"{name}: delay is too large, got {delay!r}")
    return at


def _as_priority(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected int, got {type(value).__name__} {value!r}")
    if value < -9223372036854775807 - 1 or value > 9223372036854775807:
        raise ValueError(
            f"{name}: must fit in 64 bits "
            f"(-9223372036854775808 to 9223372036854775807), got {value!r}"
        )
    return int(value)


# -- TaskId and ULIDs ---------------------------------------------------------

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE = {char: index for index, char in enumerate(_CROCKFORD)}
_RANDOM_BITS = 80
_RANDOM_LIMIT = 1 << _RANDOM_BITS


class _UlidGenerator:
    """Time-ordered ids, strictly increasing within a process.

    Within one millisecond (or if the wall clock steps back) the 80-bit random
    part is incremented instead of redrawn, so ids sort in creation order.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = 0
        self._random = 0

    def reseed(self) -> None:
        # After fork() a child must not continue its parent's sequence.
        self._lock = threading.Lock()
        self._last_ms = 0

    def next(self) -> int:
        with self._lock:
            ms = time.time_ns() // 1_000_000
            if ms > self._last_ms:
                self._last_ms = ms
                self._random = int.from_bytes(os.urandom(10), "big")
            else:
                self._random += 1
                if self._random >= _RANDOM_LIMIT:
                    self._last_ms += 1
                    self._random = int.from_bytes(os.urandom(10), "big") >> 1
            return (self._last_ms << _RANDOM_BITS) | self._random


_generator = _UlidGenerator()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_generator.reseed)


# Every pair of characters, indexed by 10 bits: 13 lookups encode an id.
_PAIRS = [first + second for first in _CROCKFORD for second in _CROCKFORD]


def _encode_ulid(value: int) -> str:
    # 26 characters hold 130 bits; the top two are always zero.
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in range(120, -10, -10)])


def _parse_ulid(text: str) -> int | None:
    """The 128-bit value of a canonical (upper-case, 26-char) ULID, else None."""
    if len(text) != 26:
        return None
    value = 0
    for index, char in enumerate(text):
        digit = _DECODE.get(char)
        if digit is None or (index == 0 and digit > 7):
            return None
        value = (value << 5) | digit
    return value


@final
class TaskId:
    """The identity of a task.

    ``TaskId("task-123")`` wraps any non-empty string; ``TaskId.generate()``
    mints a ULID (time-ordered, monotonic within a millisecond, unique across
    threads and forked processes). Equality, hashing and ordering follow the
    string value; ``str(task_id)`` gives it.
    """

    __slots__ = ("_text", "_ulid")

    _text: str
    _ulid: int | None

    def __init__(self, value: str | TaskId) -> None:
        if isinstance(value, TaskId):
            self._text = value._text
            self._ulid = value._ulid
            return
        if not isinstance(value, str):
            raise TypeError(f"TaskId: expected str, got {type(value).__name__} {value!r}")
        if not value:
            raise ValueError("TaskId: value must be a non-empty string")
        if type(value) is not str:
            # A str subclass (a StrEnum member...) is kept as its plain text.
            value = str.__str__(value)
        self._text = value
        self._ulid = _parse_ulid(value)

    @staticmethod
    def generate() -> TaskId:
        """A new ULID-backed id."""
        value = _generator.next()
        task_id = TaskId.__new__(TaskId)
        task_id._text = _encode_ulid(value)
        task_id._ulid = value
        return task_id

    @property
    def is_ulid(self) -> bool:
        """True if the value is a canonical ULID (generated ids always are)."""
        return self._ulid is not None

    @property
    def timestamp(self) -> float | None:
        """UNIX seconds encoded in a ULID id, or ``None`` for other ids."""
        if self._ulid is None:
            return None
        return (self._ulid >> _RANDOM_BITS) / 1000.0

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"TaskId({self._text!r})"

    def __hash__(self) -> int:
        return hash(self._text)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TaskId):
            return NotImplemented
        return self._text == other._text

    def __ne__(self, other: object) -> bool:
        if not isinstance(other, TaskId):
            return NotImplemented
        return self._text != other._text

    def __lt__(self, other: TaskId) -> bool:
        if not isinstance(other, TaskId):
            return NotImplemented
        return self._text < other._text

    def __le__(self, other: TaskId) -> bool:
        if not isinstance(other, TaskId):
            return NotImplemented
        return self._text <= other._text

    def __gt__(self, other: TaskId) -> bool:
        if not isinstance(other, TaskId):
            return NotImplemented
        return self._text > other._text

    def __ge__(self, other: TaskId) -> bool:
        if not isinstance(other, TaskId):
            return NotImplemented
        return self._text >= other._text


# -- Attempt ------------------------------------------------------------------

# The largest count the compiled core's C ``long long`` holds.
_ATTEMPT_MAX = 9223372036854775807


@final
class Attempt:
    """A counter of executions, shared by a task and its clones.

    The worker increments it when an execution starts, so a handler's first
    run sees 1. It is a mutable object on purpose: a retry layer holding a
    clone of the task sees the count the worker advanced.
    """

    __slots__ = ("_count",)

    def __init__(self, n: int = 0) -> None:
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"Attempt: n must be an int, got {type(n).__name__} {n!r}")
        if n < 0:
            raise ValueError(f"Attempt: n must be >= 0, got {n!r}")
        if n > _ATTEMPT_MAX:
            raise ValueError(f"Attempt: n must be <= {_ATTEMPT_MAX}, got {n!r}")
        self._count = int(n)

    def current(self) -> int:
        """The number of executions started so far."""
        return self._count

    def increment(self) -> int:
        """Count one more execution; returns the previous count."""
        if self._count == _ATTEMPT_MAX:
            # The compiled core's C counter would wrap: both cores stop here.
            raise OverflowError(f"Attempt: the counter is at its maximum ({_ATTEMPT_MAX})")
        self._count += 1
        return self._count - 1

    def __int__(self) -> int:
        return self._count

    def __index__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return f"Attempt({self._count})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Attempt):
            return self._count == other._count
        if isinstance(other, int) and not isinstance(other, bool):
            return self._count == other
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        if result is NotImplemented:
            return NotImplemented
        return not result

    # A mutable counter must not be a dict key.
    __hash__: ClassVar[None] = None  # type: ignore[assignment]


# -- Extensions ---------------------------------------------------------------


def _check_key(key: object, method: str) -> None:
    if not isinstance(key, type):
        raise TypeError(
            f"Extensions.{method}: key must be a type, got {type(key).__name__} {key!r}"
        )


_MISSING: Any = object()


@final
class Extensions:
    """A map with at most one value per type: ``ext.insert(Db())``, ``ext.get(Db)``."""

    __slots__ = ("_map",)

    _map: dict[type, Any] | None

    def __init__(self, values: Iterable[object] = ()) -> None:
        self._map = None
        for value in values:
            self.insert(value)

    def insert(self, value: T) -> T | None:
        """Store ``value`` under ``type(value)``; returns the value it replaced or None."""
        if self._map is None:
            self._map = {}
        key = type(value)
        old = self._map.get(key)
        self._map[key] = value
        return cast("T | None", old)

    def get(self, key: type[T]) -> T | None:
        """The value stored for type ``key``, or None."""
        _check_key(key, "get")
        if self._map is None:
            return None
        return cast("T | None", self._map.get(key))

    def get_checked(self, key: type[T]) -> T:
        """The value stored for type ``key``; raises :class:`MissingDataError`."""
        _check_key(key, "get_checked")
        if self._map is not None:
            value = self._map.get(key, _MISSING)
            if value is not _MISSING:
                return cast(T, value)
        raise MissingDataError(key)

    def remove(self, key: type[T]) -> T | None:
        """Remove and return the value for type ``key``, or None if absent."""
        _check_key(key, "remove")
        if self._map is None:
            return None
        return cast("T | None", self._map.pop(key, None))

    def __contains__(self, key: object) -> bool:
        return self._map is not None and key in self._map

    def __len__(self) -> int:
        return 0 if self._map is None else len(self._map)

    def __bool__(self) -> bool:
        return bool(self._map)

    def __iter__(self) -> Iterator[Any]:
        """The stored values."""
        if self._map is None:
            return iter(())
        return iter(list(self._map.values()))

    def types(self) -> list[type]:
        """The types that have a value, in insertion order."""
        return [] if self._map is None else list(self._map)

    def clear(self) -> None:
        """Remove every value."""
        self._map = None

    def extend(self, other: Extensions) -> None:
        """Insert every value of ``other``; on a shared type ``other`` wins."""
        if not isinstance(other, Extensions):
            raise TypeError(f"Extensions.extend: expected Extensions, got {type(other).__name__}")
        if other._map:
            if self._map is None:
                self._map = {}
            self._map.update(other._map)

    def copy(self) -> Extensions:
        """A shallow copy: a new map holding the same values."""
        result = Extensions()
        if self._map:
            result._map = dict(self._map)
        return result

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Extensions):
            return NotImplemented
        return (self._map or {}) == (other._map or {})

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        if result is NotImplemented:
            return NotImplemented
        return not result

    __hash__: ClassVar[None] = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        values = ", ".join(repr(v) for v in (self._map or {}).values())
        return f"Extensions([{values}])"


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
            f"attempt={self._attempt._count}, run_at={self._run_at!r}, "
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
            f"status={self._parts._status.name}, attempt={self._parts._attempt._count})"
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
