"""Typed task definitions in the style of Rust's backie.

A task type is a subclass of :class:`BackgroundTask`. Its fields are the
payload (subclasses become dataclasses automatically); its class attributes
say where and how it runs::

    class SendEmail(BackgroundTask):
        TASK_NAME = "send-email"          # required, unique within a pool
        QUEUE = "emails"                  # default "default"
        MAX_RETRIES = 5                   # default 3: up to 4 executions
        BACKOFF_MODE = BackoffMode.constant(10)   # default ExponentialBackoff

        to: str
        subject: str

        async def run(self, task: CurrentTask, app: Mailer) -> None:
            await app.send(self.to, self.subject)

        def uniq(self) -> TaskHash | None:
            return TaskHash.of(self.to, self.subject)

    task_id = await SendEmail("ann@example.org", "hi").enqueue(storage)

The stored arguments are plain JSON, ``{"task_name": ..., "payload": {...}}``
(encoded with orjson by persistent backends), and a worker rebuilds the task
from the name through its :class:`~pyapalis.WorkerPool`'s registry.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import inspect
import math
import time
from collections.abc import Mapping
from typing import Any, ClassVar, Protocol, dataclass_transform, runtime_checkable

import orjson

from .._errors import CodecError, UnknownTaskError
from .._implementation import Task, TaskBuilder, TaskId
from .._worker._retry import BackoffMode
from ..backends._capabilities import QueueFamily
from ..backends._codec import dumps_finite, non_finite, non_finite_message
from ..backends._kit._names import task_name_of
from ..backends._memory._queues import open_queue
from ._unique import INFO_KEY, check_unique_capable, info_of, push_unique

__all__ = ["BackgroundTask", "CurrentTask", "TaskHash", "UnknownTaskError"]

_CONFIG = ("TASK_NAME", "QUEUE", "MAX_RETRIES", "BACKOFF_MODE", "TIMEOUT")
_DATACLASS_OPTIONS = frozenset({"eq", "frozen", "kw_only", "match_args", "order", "repr"})


@runtime_checkable
class PushesTasks(Protocol):
    """All a typed task needs of a queue's handle: ``push_task`` (of ``TaskSink``)."""

    async def push_task(self, task: Task) -> TaskId: ...


@dataclasses.dataclass(frozen=True, slots=True)
class TaskHash:
    """The uniqueness key a task type's :meth:`BackgroundTask.uniq` returns.

    ``TaskHash("nightly-report-2024-06-01")`` uses the text as is;
    :meth:`of` hashes any JSON-able values, and :meth:`default_for_task`
    hashes a task's whole payload.
    """

    value: str

    def __post_init__(self) -> None:
        if not isinstance(self.value, str) or not self.value:
            raise ValueError(f"TaskHash: value must be a non-empty str, got {self.value!r}")

    @classmethod
    def of(cls, *values: Any) -> TaskHash:
        """The SHA-256 (hex) of ``values`` as canonical JSON (sorted keys).

        Raises ``TypeError`` for a value JSON cannot encode and
        :class:`CodecError` for NaN or ±Infinity (naming where it is, e.g.
        ``values[1]["price"]``).
        """
        try:
            data = dumps_finite(list(values), option=orjson.OPT_SORT_KEYS, root="values")
        except CodecError as error:
            # JSON would write NaN as null: TaskHash.of(nan) must not equal TaskHash.of(None).
            raise CodecError(f"TaskHash.of: {error}") from None
        except TypeError as error:
            raise TypeError(f"TaskHash.of: values must be JSON-encodable: {error}") from None
        return cls(hashlib.sha256(data).hexdigest())

    @classmethod
    def default_for_task(cls, task: BackgroundTask) -> TaskHash:
        """A hash of the task's name and payload: equal payloads are duplicates."""
        if not isinstance(task, BackgroundTask):
            raise TypeError(
                f"TaskHash.default_for_task: expected a BackgroundTask, got {type(task).__name__}"
            )
        return cls.of(task.TASK_NAME, task.to_payload())

    def __str__(self) -> str:
        return self.value


@dataclasses.dataclass(frozen=True, slots=True)
class CurrentTask:
    """What a running task knows about its execution (backie's ``CurrentTask``)."""

    id: TaskId
    """The task's id (the one :meth:`BackgroundTask.enqueue` returned)."""
    task_name: str
    attempt: int
    """This execution's number: 1 on the first run, 2 on the first retry..."""
    max_attempts: int
    """Executions allowed in all (``MAX_RETRIES + 1`` when it was enqueued)."""
    created_at: datetime.datetime
    """When the task was enqueued (UTC)."""
    queue: str
    """The queue whose worker runs it."""

    @property
    def retries(self) -> int:
        """Earlier executions that failed (backie's retry counter)."""
        return self.attempt - 1


@dataclass_transform(field_specifiers=(dataclasses.field, dataclasses.Field))
class BackgroundTask:
    """Base class of typed tasks; see the module documentation.

    Subclasses become dataclasses when they are defined: do not decorate them
    with ``@dataclass`` (that would process the class twice); pass dataclass
    options as class keywords instead, ``class T(BackgroundTask, frozen=True)``.
    ``abstract=True`` marks a shared base that defines no ``TASK_NAME``.

    Class attributes (leave them unannotated, or annotate with ``ClassVar``):

    * ``TASK_NAME``: required; defined by each concrete class itself (a
      subclass does not inherit its parent's name). Two types registered in one
      pool with the same name are an error naming both.
    * ``QUEUE``: the queue it runs in, ``"default"`` unless set.
    * ``MAX_RETRIES``: retries after the first execution (default 3, so up to 4
      executions). ``AbortError`` ends the task at once (Killed);
      ``RetryAfterError`` and ``DeferredError`` pick their own delay.
    * ``BACKOFF_MODE``: the delay before each retry, a :class:`BackoffMode`
      (default ``BackoffMode.ExponentialBackoff``: 2 s, 4 s, 8 s ...).
    * ``TIMEOUT``: the time limit of each execution, in seconds (an int or
      float > 0, or a ``timedelta``); ``None`` (the default) or ``math.inf``
      for no limit. backie's ``timeout_msecs``. An execution that runs longer
      is cancelled and fails with :class:`~pyapalis.TaskTimeoutError`, retried
      after ``BACKOFF_MODE``'s delay while ``MAX_RETRIES`` allow. The pool
      applies the task type's current value to every execution, tasks
      enqueued before a change included.

    The payload is the dataclass fields given to ``__init__``. It must be
    JSON-encodable by orjson (str, int, finite float, bool, None, lists, dicts,
    nested dataclasses, datetimes, UUIDs, enums); a worker rebuilds the task
    with ``cls(**payload)`` from the decoded JSON. Override :meth:`to_payload`
    and :meth:`from_payload` for fields that need converting back (a datetime
    field comes back as its ISO string otherwise).
    """

    TASK_NAME: ClassVar[str]
    QUEUE: ClassVar[str] = "default"
    MAX_RETRIES: ClassVar[int] = 3
    BACKOFF_MODE: ClassVar[BackoffMode] = BackoffMode.ExponentialBackoff
    TIMEOUT: ClassVar[float | datetime.timedelta | None] = None
    ABSTRACT: ClassVar[bool] = True

    def __init_subclass__(cls, *, abstract: bool = False, **options: Any) -> None:
        super().__init_subclass__()
        unknown = sorted(set(options) - _DATACLASS_OPTIONS)
        if unknown:
            raise TypeError(
                f"{cls.__qualname__}: unsupported class keyword(s) {', '.join(unknown)} "
                f"(BackgroundTask accepts abstract and the dataclass options "
                f"{', '.join(sorted(_DATACLASS_OPTIONS))})"
            )
        if not isinstance(abstract, bool):
            raise TypeError(f"{cls.__qualname__}: abstract must be a bool, got {abstract!r}")
        dataclasses.dataclass(cls, **options)
        cls.ABSTRACT = abstract
        _check_definition(cls)

    # -- what a task type defines ------------------------------------------------

    async def run(self, task: CurrentTask, app: Any) -> Any:
        """Do the work. ``app`` is the pool's application data (see ``WorkerPool``).

        A return value is the stored result; an exception fails this
        execution (retried while ``MAX_RETRIES`` allow).
        """
        raise NotImplementedError(f"{type(self).__qualname__} does not define run()")

    def uniq(self) -> TaskHash | None:
        """The uniqueness key, or None (the default) for no uniqueness.

        While a task of this type with the same hash is pending or running,
        :meth:`enqueue` returns that task's id instead of adding another; once
        it is finished (Done, Failed or Killed) the hash is free again.
        """
        return None

    def to_payload(self) -> Any:
        """The JSON-able payload stored for this task: its ``__init__`` fields by name."""
        return {
            field.name: getattr(self, field.name)
            for field in dataclasses.fields(self)  # type: ignore[arg-type]
            if field.init
        }

    @classmethod
    def from_payload(cls, payload: Any) -> BackgroundTask:
        """Rebuild a task from its decoded payload (the inverse of :meth:`to_payload`)."""
        if not isinstance(payload, dict):
            raise CodecError(
                f"{cls.__qualname__}: expected the payload to be a JSON object, "
                f"got {type(payload).__name__}"
            )
        return cls(**payload)

    # -- enqueueing ----------------------------------------------------------------

    async def enqueue(self, backend: Any) -> TaskId:
        """Store this task in ``backend`` (its ``QUEUE`` handle) and return its id.

        ``backend`` is a single-queue backend (``MemoryStorage``), or a queue
        family (``JsonStorage``, ``MemoryQueues``) whose ``queue(QUEUE)`` handle
        receives the task. With a :meth:`uniq` hash, a duplicate of a task that
        is still pending or running returns that task's id (see the method).
        Raises ``CodecError`` if the payload is not JSON-encodable (NaN and
        ±Infinity included: JSON has no form for them).
        """
        cls = type(self)
        owner = f"{cls.__qualname__}.enqueue"
        if cls.ABSTRACT:
            raise TypeError(f"{owner}: {cls.__qualname__} is abstract (it has no TASK_NAME)")
        if isinstance(backend, type) or not isinstance(backend, (PushesTasks, QueueFamily)):
            raise TypeError(
                f"{owner}: backend must be a backend with push_task() or a queue family "
                f"with queue(name), got {backend!r}"
            )
        # The payload first: its CodecError names the payload's field, where a
        # hash of it (TaskHash.default_for_task) would name a position in a list.
        envelope = encode_envelope(self)
        uniq = self.uniq()
        if uniq is not None and not isinstance(uniq, TaskHash):
            raise TypeError(
                f"{cls.__qualname__}.uniq() must return a TaskHash or None, "
                f"got {type(uniq).__name__} {uniq!r}"
            )
        info: dict[str, Any] = {"task_name": cls.TASK_NAME, "created_at": time.time()}
        if uniq is not None:
            info["uniq"] = uniq.value
        task = (
            TaskBuilder(envelope).attempts(cls.MAX_RETRIES + 1).with_ctx({INFO_KEY: info}).build()
        )
        handle, close = open_queue(backend, cls.QUEUE)
        try:
            if not isinstance(handle, PushesTasks):
                raise TypeError(
                    f"{owner}: the handle of queue {cls.QUEUE!r} has no push_task(): {handle!r}"
                )
            if uniq is None:
                task_id: TaskId = await handle.push_task(task)
                return task_id
            check_unique_capable(handle, owner)
            return await push_unique(handle, (cls.TASK_NAME, uniq.value), task)
        finally:
            if close is not None:
                close()


def _check_definition(cls: type[BackgroundTask]) -> None:
    """Reject a task type that could never run, when it is defined."""
    name = cls.__qualname__
    fields = {field.name for field in dataclasses.fields(cls)}  # type: ignore[arg-type]
    as_fields = [attribute for attribute in (*_CONFIG, "ABSTRACT") if attribute in fields]
    if as_fields:
        raise TypeError(
            f"{name}: {', '.join(as_fields)} must be class attributes, not payload fields "
            f"(leave them unannotated or annotate them with ClassVar)"
        )
    if not cls.ABSTRACT:
        task_name = cls.__dict__.get("TASK_NAME")
        if task_name is None:
            raise TypeError(
                f"{name}: a BackgroundTask must define its own TASK_NAME "
                f"(or be declared with abstract=True)"
            )
        if not isinstance(task_name, str) or not task_name:
            raise TypeError(f"{name}: TASK_NAME must be a non-empty str, got {task_name!r}")
    queue = cls.QUEUE
    if not isinstance(queue, str) or not queue:
        raise TypeError(f"{name}: QUEUE must be a non-empty str, got {queue!r}")
    retries = cls.MAX_RETRIES
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise TypeError(f"{name}: MAX_RETRIES must be an int >= 0, got {retries!r}")
    if not isinstance(cls.BACKOFF_MODE, BackoffMode):
        raise TypeError(
            f"{name}: BACKOFF_MODE must be a BackoffMode, got {type(cls.BACKOFF_MODE).__name__}"
        )
    execution_timeout(cls)
    if not cls.ABSTRACT:
        if cls.run is BackgroundTask.run:
            raise TypeError(f"{name}: a BackgroundTask must define async def run(self, task, app)")
        if not inspect.iscoroutinefunction(cls.run):
            raise TypeError(f"{name}: run must be an async def (a coroutine function)")


def execution_timeout(cls: type[BackgroundTask]) -> float | None:
    """The time limit of one execution of ``cls`` (its ``TIMEOUT``) in seconds, None
    for no limit; TypeError if ``TIMEOUT`` is not valid."""
    timeout = cls.TIMEOUT
    if timeout is None:
        return None
    if isinstance(timeout, datetime.timedelta):
        seconds = timeout.total_seconds()
    elif isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        seconds = math.nan
    else:
        seconds = float(timeout)
    if math.isnan(seconds) or seconds <= 0:
        raise TypeError(
            f"{cls.__qualname__}: TIMEOUT must be None or a time limit > 0 "
            f"(seconds as int or float, or a timedelta), got {timeout!r}"
        )
    return None if math.isinf(seconds) else seconds


def encode_envelope(task: BackgroundTask) -> dict[str, Any]:
    """``{"task_name": ..., "payload": ...}`` as plain JSON data (a fresh copy).

    Raises :class:`CodecError` for a payload JSON cannot hold, NaN and
    ±Infinity included (they would come back as None).
    """
    cls = type(task)
    payload = task.to_payload()
    envelope = {"task_name": cls.TASK_NAME, "payload": payload}
    try:
        data = orjson.dumps(envelope)
    except TypeError as error:
        raise CodecError(
            f"{cls.__qualname__}: the payload cannot be encoded as JSON: {error}"
        ) from None
    if b"null" in data:  # NaN and ±Infinity come out as null
        found = non_finite(payload, root="payload")
        if found is not None:
            raise CodecError(
                f"{cls.__qualname__}: the payload cannot be encoded as JSON: "
                f"{non_finite_message(found)}"
            )
    decoded: dict[str, Any] = orjson.loads(data)
    return decoded


def decode_envelope(
    args: Any, registry: Mapping[str, type[BackgroundTask]]
) -> tuple[type[BackgroundTask], BackgroundTask]:
    """The task type and the task a stored envelope describes.

    Raises :class:`UnknownTaskError` for a name the registry lacks and
    :class:`CodecError` for anything else that does not fit.
    """
    name = task_name_of(args)  # the rule shared backends filter claims by
    if name is None:
        raise CodecError(
            f"not a background task: expected {{'task_name': str, 'payload': ...}}, "
            f"got {_short(args)}"
        )
    cls = registry.get(name)
    if cls is None:
        known = ", ".join(repr(known) for known in sorted(registry)) or "none"
        raise UnknownTaskError(
            f"no task type named {name!r} is registered with this worker pool (registered: {known})"
        )
    if "payload" not in args:
        raise CodecError(f"task {name!r} has no payload: {_short(args)}")
    try:
        task = cls.from_payload(args["payload"])
    except CodecError:
        raise
    except Exception as error:
        raise CodecError(
            f"cannot rebuild {cls.__qualname__} ({name!r}) from payload "
            f"{_short(args['payload'])}: {type(error).__name__}: {error}"
        ) from error
    if not isinstance(task, cls):
        raise CodecError(
            f"{cls.__qualname__}.from_payload returned {type(task).__name__}, not {name!r}"
        )
    return cls, task


def current_task(task: Task, task_name: str, queue: str) -> CurrentTask:
    """The :class:`CurrentTask` of a task a worker is running."""
    parts = task.parts
    info = info_of(task)
    created = info.get("created_at") if info is not None else None
    if isinstance(created, bool) or not isinstance(created, (int, float)):
        created = parts.run_at
    attempt = parts.attempt.current()
    task_id = parts.task_id
    assert task_id is not None  # a stored task always has one
    return CurrentTask(
        id=task_id,
        task_name=task_name,
        attempt=attempt,
        max_attempts=parts.max_attempts or attempt,
        created_at=datetime.datetime.fromtimestamp(created, tz=datetime.UTC),
        queue=queue,
    )


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
