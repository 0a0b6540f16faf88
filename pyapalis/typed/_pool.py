"""WorkerPool: the workers that run registered :class:`BackgroundTask` types.

``WorkerPool(backend, app_data=factory)`` runs, for each queue, a number of
:class:`~pyapalis.Worker` s whose handler looks the stored task's name up in
the pool's registry, rebuilds the task and calls its ``run``. One queue serves
every task type whose ``QUEUE`` names it. Retries follow each type's
``MAX_RETRIES`` (stored with the task) and ``BACKOFF_MODE``; each execution is
limited by the type's ``TIMEOUT``. On a backend that can filter by task name
(``FiltersTaskNames``: SqliteStorage), each queue is consumed through
``handle.only_task_names(registered names)``, so tasks of names the pool does
not know stay Pending for a pool that knows them (a mixed-version deploy);
elsewhere a name the pool does not know fails that task at once
(``UnknownTaskError``), and the worker goes on.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from .._errors import (
    AbortError,
    CodecError,
    DeferredError,
    RetryAfterError,
    TaskTimeoutError,
    WorkerStateError,
)
from .._implementation import Task, TaskId
from .._status import Status
from .._worker._context import EventCallback
from .._worker._service import AlwaysReady, Service
from .._worker._source import check_backend
from .._worker._worker import Worker, WorkerBuilder
from ..backends._capabilities import (
    Delete,
    FetchById,
    ListTasks,
    WaitForCompletion,
    supports,
)
from ..backends._kit._args import check_name
from ..backends._memory._queues import MemoryQueues, is_queue_family, open_queue
from ..backends._memory._storage import MemoryStorage
from ..backends._worker_protocols import FiltersTaskNames
from ._task import (
    BackgroundTask,
    UnknownTaskError,
    current_task,
    decode_envelope,
    execution_timeout,
)

__all__ = ["QueueConfig", "RetentionMode", "WorkerPool"]

log = logging.getLogger("pyapalis.background")


class RetentionMode(enum.Enum):
    """What becomes of a task once it is finished (backie's retention modes).

    The default of a queue follows backie's (``RemoveDone``) on a backend that
    can delete a task (JsonStorage), and is ``KeepAll`` on one that cannot
    (MemoryStorage, MemoryQueues), where it is the only mode.
    """

    KeepAll = "KeepAll"
    """Keep every finished task (results stay readable with ``wait_for``)."""
    RemoveDone = "RemoveDone"
    """Delete tasks that finished Done; keep Failed and Killed ones to inspect."""
    RemoveAll = "RemoveAll"
    """Delete every finished task."""


@dataclasses.dataclass(frozen=True, slots=True)
class QueueConfig:
    """How a pool runs one queue: its name, worker count and retention (backie's ``QueueConfig``).

    ``pool.configure_queue(QueueConfig("emails", num_workers=4))`` is
    ``pool.configure_queue("emails", num_workers=4)``. ``retention=None`` (the
    default) is the backend's default: ``RemoveDone`` where it can delete a
    task, ``KeepAll`` where it cannot (see :class:`RetentionMode`).
    """

    name: str
    num_workers: int = 1
    retention: RetentionMode | None = None

    def __post_init__(self) -> None:
        _check_queue_fields(self.name, self.num_workers, self.retention, "QueueConfig")


def _check_queue_fields(name: object, num_workers: object, retention: object, what: str) -> None:
    check_name(name, f"{what}: name")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int):
        raise TypeError(f"{what}: num_workers must be an int, got {type(num_workers).__name__}")
    if num_workers < 1:
        raise ValueError(f"{what}: num_workers must be >= 1, got {num_workers!r}")
    if retention is not None and not isinstance(retention, RetentionMode):
        raise TypeError(f"{what}: retention must be a RetentionMode or None, got {retention!r}")


class _Unset(enum.Enum):
    UNSET = "UNSET"


_UNSET = _Unset.UNSET


def _keeps_finished_tasks(backend: object) -> bool:
    """True if finished tasks stay readable in ``backend`` (so retention matters)."""
    return any(
        supports(backend, capability) for capability in (FetchById, ListTasks, WaitForCompletion)
    )


def _handle_kind(backend: object) -> object:
    """What serves a queue of ``backend``: the backend itself, or its handles' class.

    A single-queue backend and a family whose handles are of its own kind
    (JsonStorage) answer for themselves; a MemoryQueues hands out MemoryStorage.
    Another family is judged by its handles when the pool runs.
    """
    if isinstance(backend, MemoryQueues):
        return MemoryStorage
    return backend


def _default_retention(handle: object, backend: object) -> RetentionMode | None:
    """backie's default where ``handle`` can delete (RemoveDone), else KeepAll.

    None when it cannot be told before the queue's handle is opened (a queue
    family other than JsonStorage and MemoryQueues): the run decides then.
    """
    if _keeps_finished_tasks(handle):
        if supports(handle, Delete):
            return RetentionMode.RemoveDone
        return RetentionMode.KeepAll
    if handle is backend and is_queue_family(backend):
        return None
    return RetentionMode.KeepAll  # it keeps nothing finished: nothing to remove


def _retention_refusal(handle: object, retention: RetentionMode) -> str | None:
    """Why ``handle`` cannot apply ``retention``, or None if it can."""
    if (
        retention is RetentionMode.KeepAll
        or not _keeps_finished_tasks(handle)
        or supports(handle, Delete)
    ):
        return None
    name = handle.__name__ if isinstance(handle, type) else type(handle).__name__
    return (
        f"retention={retention} needs a backend that can delete a task "
        f"(delete(task_id)); {name} keeps finished tasks and cannot "
        f"(use RetentionMode.KeepAll, and vacuum() if it has one)"
    )


class WorkerPool:
    """Runs the workers of registered :class:`BackgroundTask` types, queue by queue.

    ``backend`` is a queue family (``JsonStorage``: one ``storage.queue(name)``
    handle per queue on the same file; ``MemoryQueues``: one ``MemoryStorage``
    per queue) or a single-queue backend such as a bare ``MemoryStorage``,
    which serves every task type and admits one configured queue.

    ``app_data`` is a factory, ``app_data() -> value`` (or an async function),
    called once per worker when :meth:`run` starts: each worker passes its own
    value as ``app`` to the tasks it runs. Return a shared object from the
    factory to share it; leave ``app_data`` unset for ``app = None``.

    Queues used by registered types but not configured run with one worker
    and the default retention: ``RemoveDone`` (backie's default) on a backend
    that can delete a task (JsonStorage), ``KeepAll`` on one that cannot
    (MemoryStorage). :meth:`shutdown` (or :meth:`run_until`)
    stops every worker gracefully: no task is pulled after it, tasks in flight
    finish. A pool runs once at a time and can be run again after it stopped.
    """

    def __init__(
        self,
        backend: Any,
        app_data: Callable[[], Any] | None = None,
        *,
        name: str = "pool",
    ) -> None:
        if isinstance(backend, type) or not (
            is_queue_family(backend) or check_backend(backend) is None
        ):
            raise TypeError(
                f"WorkerPool: backend must be a backend or a queue family with queue(name), "
                f"got {backend!r}"
            )
        if app_data is not None and not callable(app_data):
            raise TypeError(
                f"WorkerPool: app_data must be a factory called once per worker "
                f"(e.g. lambda: value) or None, got {type(app_data).__name__} {app_data!r}"
            )
        if not isinstance(name, str) or not name:
            raise ValueError(f"WorkerPool: name must be a non-empty str, got {name!r}")
        self._backend = backend
        self._app_data = app_data
        self._name = name
        self._single_queue = not is_queue_family(backend)
        self._registry: dict[str, type[BackgroundTask]] = {}
        self._queues: dict[str, QueueConfig] = {}
        self._listeners: list[EventCallback] = []
        self._workers: list[Worker] = []
        self._running = False
        self._shutdown_requested = False
        self._stop: trio.Event | None = None

    # -- configuration ---------------------------------------------------------------

    def register_task_type(self, task_type: type[BackgroundTask]) -> WorkerPool:
        """Let this pool run tasks of ``task_type``; its ``TASK_NAME`` must be new here."""
        if not (isinstance(task_type, type) and issubclass(task_type, BackgroundTask)):
            raise TypeError(
                f"register_task_type: expected a BackgroundTask subclass, got {task_type!r}"
            )
        if task_type.ABSTRACT:
            raise TypeError(
                f"register_task_type: {task_type.__qualname__} is abstract (it has no TASK_NAME)"
            )
        name = task_type.TASK_NAME
        known = self._registry.get(name)
        if known is not None and known is not task_type:
            raise ValueError(
                f"register_task_type: TASK_NAME {name!r} of {_qualified(task_type)} is "
                f"already used by {_qualified(known)}"
            )
        self._registry[name] = task_type
        return self

    def configure_queue(
        self,
        name: str | QueueConfig,
        *,
        num_workers: int | _Unset = _UNSET,
        retention: RetentionMode | _Unset | None = _UNSET,
    ) -> WorkerPool:
        """Run queue ``name`` with ``num_workers`` workers (default 1) and a retention mode.

        Also takes a :class:`QueueConfig` (backie's form):
        ``configure_queue(QueueConfig("emails", num_workers=4))``, with no
        keywords then. Configuring a queue again replaces its configuration.

        ``retention`` (default None: the backend's default) says what becomes
        of a task once it is final, as the backend recorded it:
        ``RemoveDone`` deletes those that ended Done, ``RemoveAll`` every one
        (``delete(task_id)``, e.g. JsonStorage's; a retried task only after its
        last execution), ``KeepAll`` none. The default follows backie:
        ``RemoveDone`` where the backend can delete a task, ``KeepAll`` where it
        cannot (MemoryStorage). A backend that keeps finished tasks but cannot
        delete one is refused ``RemoveDone`` and ``RemoveAll`` here (a queue
        family whose handles cannot be judged before they are opened: when
        :meth:`run` starts, before any task runs).
        """
        if isinstance(name, QueueConfig):
            given = [
                keyword
                for keyword, value in (("num_workers", num_workers), ("retention", retention))
                if value is not _UNSET
            ]
            if given:
                raise TypeError(
                    f"configure_queue: pass {' and '.join(given)} in the QueueConfig, "
                    f"not besides it"
                )
            config = name
        else:
            workers = 1 if isinstance(num_workers, _Unset) else num_workers
            mode = None if isinstance(retention, _Unset) else retention
            _check_queue_fields(name, workers, mode, "configure_queue")
            config = QueueConfig(name, workers, mode)
        if self._single_queue and self._queues and config.name not in self._queues:
            raise ValueError(
                f"configure_queue: {type(self._backend).__name__} is a single queue, already "
                f"configured as {next(iter(self._queues))!r}; use a queue family "
                f"(MemoryQueues, JsonStorage) for several queues"
            )
        if config.retention is not None:
            refusal = _retention_refusal(_handle_kind(self._backend), config.retention)
            if refusal is not None:
                raise ValueError(f"configure_queue: {refusal}")
        self._queues[config.name] = config
        return self

    def on_event(self, callback: EventCallback) -> WorkerPool:
        """Call ``callback(worker_context, event)`` for every event of every worker."""
        if not callable(callback):
            raise TypeError(f"on_event: expected a callable, got {callback!r}")
        self._listeners.append(callback)
        return self

    # -- introspection -----------------------------------------------------------------

    @property
    def task_types(self) -> dict[str, type[BackgroundTask]]:
        """The registered task types by name."""
        return dict(self._registry)

    @property
    def queues(self) -> list[QueueConfig]:
        """The queues a run would serve: configured ones, then those of registered types.

        Each with the retention it would run with; None where the pool cannot
        tell before it opens the queue's handle (a queue family other than
        JsonStorage and MemoryQueues).
        """
        kind = _handle_kind(self._backend)
        return [
            config
            if config.retention is not None
            else dataclasses.replace(config, retention=_default_retention(kind, self._backend))
            for config in self._plan()
        ]

    @property
    def workers(self) -> list[Worker]:
        """The workers of the current run (empty when not running)."""
        return list(self._workers)

    @property
    def is_running(self) -> bool:
        return self._running

    # -- enqueueing ---------------------------------------------------------------------

    async def enqueue(self, task: BackgroundTask) -> TaskId:
        """``task.enqueue(backend)`` on this pool's backend."""
        if not isinstance(task, BackgroundTask):
            raise TypeError(f"enqueue: expected a BackgroundTask, got {type(task).__name__}")
        return await task.enqueue(self._backend)

    # -- running ------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop every worker gracefully; :meth:`run` returns once in-flight tasks finished.

        A plain method (call it from the trio thread). Called before :meth:`run`
        starts, the next run stops at once.
        """
        self._shutdown_requested = True
        if self._stop is not None:
            self._stop.set()

    async def run_until(self, signal: Callable[[], Awaitable[Any]]) -> None:
        """Run until ``await signal()`` returns, then shut down gracefully."""

        async def watch() -> None:
            await signal()
            self.shutdown()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            await self.run()
            nursery.cancel_scope.cancel()

    async def run(self) -> None:
        """Run every queue's workers until :meth:`shutdown`.

        Raises ``ValueError`` if no task type is registered. A worker that fails
        (a backend error) makes the others shut down gracefully; its error is
        then raised (several as an ``ExceptionGroup``).
        """
        if self._running:
            raise WorkerStateError(f"WorkerPool {self._name!r} is already running")
        if not self._registry:
            raise ValueError(
                f"WorkerPool {self._name!r}: no task type is registered; "
                f"call register_task_type() first"
            )
        self._running = True
        self._stop = trio.Event()
        if self._shutdown_requested:
            self._stop.set()
        closers: list[Callable[[], None]] = []
        errors: list[Exception] = []
        try:
            self._workers = await self._build_workers(closers)
            async with trio.open_nursery() as nursery:
                for worker in self._workers:
                    nursery.start_soon(self._run_worker, worker, errors)
        finally:
            for close in closers:
                close()
            self._workers = []
            self._running = False
            self._shutdown_requested = False
            self._stop = None
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise ExceptionGroup(f"WorkerPool {self._name!r}: {len(errors)} workers failed", errors)

    async def _run_worker(self, worker: Worker, errors: list[Exception]) -> None:
        stop = self._stop
        assert stop is not None
        try:
            await worker.run_until(stop.wait)
        except Exception as error:
            log.error("worker %s of pool %r failed", worker.name, self._name, exc_info=error)
            errors.append(error)
            self.shutdown()

    def _plan(self) -> list[QueueConfig]:
        plan = dict(self._queues)
        if self._single_queue:
            if not plan:
                plan["default"] = QueueConfig("default")
        else:
            for task_type in self._registry.values():
                if task_type.QUEUE not in plan:
                    plan[task_type.QUEUE] = QueueConfig(task_type.QUEUE)
        return list(plan.values())

    async def _build_workers(self, closers: list[Callable[[], None]]) -> list[Worker]:
        workers: list[Worker] = []
        registry = dict(self._registry)
        for config in self._plan():
            handle, close = open_queue(self._backend, config.name)
            if close is not None:
                closers.append(close)
            mode = config.retention
            if mode is None:
                mode = _default_retention(handle, None) or RetentionMode.KeepAll
            retention = None
            if mode is not RetentionMode.KeepAll and _keeps_finished_tasks(handle):
                refusal = _retention_refusal(handle, mode)
                if refusal is not None:
                    # Before any worker starts (a family judged only by its handles).
                    raise ValueError(f"WorkerPool {self._name!r}, queue {config.name!r}: {refusal}")
                retention = _RetentionLayer(mode, handle.delete)
            consumed = handle
            if isinstance(handle, FiltersTaskNames):
                # Only the names this pool can run: others wait for a pool that knows them.
                consumed = handle.only_task_names(registry)
            for number in range(config.num_workers):
                app = await self._make_app()
                builder = WorkerBuilder(f"{self._name}.{config.name}.{number}").backend(consumed)
                for listener in self._listeners:
                    builder.on_event(listener)
                if retention is not None:
                    builder.layer(retention)
                workers.append(builder.build(_make_handler(registry, config.name, app)))
        return workers

    async def _make_app(self) -> Any:
        if self._app_data is None:
            return None
        value = self._app_data()
        if inspect.isawaitable(value):
            value = await value
        return value

    def __repr__(self) -> str:
        return (
            f"WorkerPool({self._name!r}, task_types={sorted(self._registry)!r}, "
            f"queues={[config.name for config in self._plan()]!r})"
        )


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _make_handler(
    registry: dict[str, type[BackgroundTask]], queue: str, app: Any
) -> Callable[[Any, Task], Awaitable[Any]]:
    """The worker handler of one queue: decode, dispatch by name, apply the type's
    time limit and backoff."""

    async def run_background_task(envelope: Any, task: Task) -> Any:
        parts = task.parts
        try:
            task_type, instance = decode_envelope(envelope, registry)
        except (UnknownTaskError, CodecError):
            # Retrying cannot help: make this execution the last one.
            parts.max_attempts = max(parts.attempt.current(), 1)
            raise
        current = current_task(task, task_type.TASK_NAME, queue)
        try:
            timeout = execution_timeout(task_type)
            if timeout is None:
                return await instance.run(current, app)
            with trio.move_on_after(timeout) as scope:
                result = await instance.run(current, app)
            if scope.cancelled_caught:
                raise TaskTimeoutError(timeout)
            return result
        except (AbortError, RetryAfterError, DeferredError):
            raise
        except Exception as error:
            attempt = parts.attempt.current()
            if attempt < (parts.max_attempts or 1):
                delay = task_type.BACKOFF_MODE.delay(max(attempt, 1))
                if delay > 0:
                    # The worker's retry machinery waits this type's delay.
                    raise RetryAfterError(error, delay) from error
            raise

    return run_background_task


class _RetentionLayer:
    """Deletes finished tasks from the backend as the queue's retention mode says."""

    __slots__ = ("_delete", "_mode")

    def __init__(self, mode: RetentionMode, delete: Callable[[TaskId], Awaitable[Any]]) -> None:
        self._mode = mode
        self._delete = delete

    def layer(self, inner: Service) -> Service:
        return _RetentionService(inner, self._mode, self._delete)


class _RetentionService(AlwaysReady):
    __slots__ = ("_delete", "_inner", "_mode")

    def __init__(
        self,
        inner: Service,
        mode: RetentionMode,
        delete: Callable[[TaskId], Awaitable[Any]],
    ) -> None:
        self._inner = inner
        self._mode = mode
        self._delete = delete

    async def __call__(self, task: Task) -> Any:
        # The inner stack has acknowledged the outcome when it returns or raises.
        task_id = task.parts.task_id
        assert task_id is not None  # a stored task always has one
        try:
            result = await self._inner(task)
        except Exception as error:
            if self._removes(_final_status(task, error)):
                await self._delete(task_id)
            raise
        if self._removes(_final_status(task, None)):
            await self._delete(task_id)
        return result

    def _removes(self, status: Status | None) -> bool:
        if status is None:
            return False
        return self._mode is RetentionMode.RemoveAll or status is Status.Done


def _final_status(task: Task, error: Exception | None) -> Status | None:
    """The final status the task was acknowledged with; None if it is not final.

    A backend that records the settled status on the task (every built-in
    one) is taken at its word: a Done whose result could not be stored is
    Failed there, and a retry is Pending. Otherwise the outcome tells: success
    is Done, ``AbortError`` Killed, a failure with no attempt left Failed.
    """
    status = task.parts.status
    if status.is_final:
        return status
    if status is not Status.Running:
        return None  # Pending: queued again; Queued: not acknowledged yet
    if error is None:
        return Status.Done
    if isinstance(error, AbortError):
        return Status.Killed
    parts = task.parts
    return Status.Failed if parts.attempt.current() >= (parts.max_attempts or 1) else None
