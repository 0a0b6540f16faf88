"""PostgresStorage, the public class: tasks in PostgreSQL for workers on many machines."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncGenerator, AsyncIterable, Iterable
from typing import TYPE_CHECKING, Any

import outcome
import trio

from ..._errors import CodecError, StorageError, TaskError
from ..._implementation import Task, TaskId
from ..._status import Status
from .._capabilities import TaskResult, WorkerInfo
from .._codec import Codec, JsonCodec
from .._kit._args import (
    check_delay,
    check_name,
    check_positive_int,
    check_status_filter,
    check_task,
    check_task_id,
    check_task_ids,
)
from .._kit._clock import run_clock
from .._kit._handle import QueueHandle
from .._kit._leases import LeaseConfig, LeaseSession, Settlement
from .._kit._names import check_task_names
from .._kit._sink import push_each
from .._worker_protocols import WorkerIdentity
from ._connections import Connections, SessionSettings
from ._producer import (
    PushRows,
    SyncProducer,
    encode,
    push_on,
    push_on_async,
    push_statement_params,
)
from ._schema import check_schema_name, migrate
from ._sql import Statements, bytea, number, text, text_array, unbytea
from ._store import PostgresStore, describe, task_of

if TYPE_CHECKING:
    import psycopg

    from ._driver import Row

__all__ = ["PostgresStorage"]

_POLL_FIRST = 0.005
_POLL_MOST = 0.25


class PostgresStorage(QueueHandle):
    """A task backend in PostgreSQL, shared by workers in many processes and machines.

    ``PostgresStorage(dsn, *, queue="default", schema="pyapalis", lease=30.0,
    codec=None, batch=100, prefetch=8, poll=1.0, pool_size=4,
    synchronous_commit=True, statement_timeout=None, connect_timeout=10.0)``.
    Construction does no I/O; ``async with`` (or the first use) connects and
    creates or migrates the schema (see :mod:`._schema`). ``storage.queue(name)``
    is a handle on another named queue sharing the connections.

    Delivery follows the shared-backend model
    (:mod:`pyapalis.backends._kit._leases`): each worker run claims batches
    (``FOR UPDATE SKIP LOCKED``; up to its free slots plus
    ``prefetch``, at most ``batch``) under a lease of ``lease`` seconds that
    its heartbeat extends; acknowledgements are fenced by owner and attempt
    and batched; any live worker re-queues expired leases. A push wakes idle
    workers at once in this process and through LISTEN/NOTIFY elsewhere,
    backed by polling every ``poll`` seconds. Claims never wait for the WAL flush
    (a server crash can only make such a task run again); pushes always do.
    ``synchronous_commit=False`` also sets it off for the workers'
    acknowledgements and heartbeats: faster, and a server crash (not a
    client crash) may forget the last few hundred milliseconds of
    acknowledgements (those tasks then run again). Server faults raise :class:`StorageError`; a
    worker backs off and goes on.

    Task names (``FiltersTaskNames``): a typed task's ``TASK_NAME`` is stored
    with it (an indexed column); ``storage.only_task_names(names)`` is a view
    whose consumers claim only those names (``= ANY``), the one a
    ``WorkerPool`` consumes.

    Producers outside trio: :meth:`push_sync` (a blocking psycopg session of
    its own), and :func:`push_in_transaction` / :func:`push_in_transaction_async`
    on the caller's own psycopg connection, so a task exists if and only if the
    caller's transaction commits.

    ======================  ===========  =======================================
    capability              support      notes
    ======================  ===========  =======================================
    TaskSink                supported    push_bulk: one statement, atomic
    FetchById               supported    this queue
    Update                  supported    not while Running
    Reschedule              supported    not while Running
    Vacuum                  supported    deletes this queue's finished tasks; ids kept
    delete                  supported    any status (retention); forgets the id
    kill                    supported    Pending or Running (the late ack is fenced)
    count_tasks             supported    one GROUP BY
    list_queues             supported    queues of the schema holding tasks
    ResumeById              supported    Failed or Killed tasks
    ResumeAbandoned         supported    dead processes at once, else by lease
    RegisterWorker          supported    the heartbeat, extends held leases
    ListWorkers             supported    this queue's worker runs
    ListTasks               supported    this queue, in push order
    WaitForCompletion       supported    polls the results (kept until vacuum)
    ======================  ===========  =======================================
    """

    def __init__(
        self,
        dsn: str,
        *,
        queue: str = "default",
        schema: str = "pyapalis",
        lease: float = 30.0,
        codec: Codec | None = None,
        batch: int = 100,
        prefetch: int = 8,
        poll: float = 1.0,
        pool_size: int = 4,
        synchronous_commit: bool = True,
        statement_timeout: float | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        if not isinstance(dsn, str) or not dsn:
            raise TypeError(f"PostgresStorage: dsn must be a non-empty str, got {dsn!r}")
        _check_queue(queue)
        check_schema_name(schema)
        _check_seconds("lease", lease)
        _check_seconds("poll", poll)
        _check_seconds("connect_timeout", connect_timeout)
        if statement_timeout is not None:
            _check_seconds("statement_timeout", statement_timeout)
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise ValueError(f"PostgresStorage: pool_size must be an int >= 1, got {pool_size!r}")
        if codec is not None and not isinstance(codec, Codec):
            raise TypeError(f"PostgresStorage: codec must be a Codec, got {codec!r}")
        config = LeaseConfig(lease=float(lease), batch=batch, prefetch=prefetch, poll=float(poll))
        settings = SessionSettings(
            synchronous_commit=bool(synchronous_commit),
            statement_timeout=statement_timeout,
            connect_timeout=float(connect_timeout),
        )
        connections = Connections(dsn, Statements(schema), settings, pool_size)
        self._attach(connections, queue, codec or JsonCodec(), config, _Opening())

    def _attach(
        self,
        connections: Connections,
        queue: str,
        codec: Codec,
        config: LeaseConfig,
        opening: _Opening,
        names: frozenset[str] | None = None,
    ) -> None:
        self._connections = connections
        self._names = names  # a FiltersTaskNames view claims only these (None: every task)
        self._statements = connections.statements
        self._queue = queue
        self._codec = codec
        self._config = config
        self._opening = opening
        self._store = PostgresStore(connections, queue, codec)
        self._identity: WorkerIdentity | None = None  # the owner of direct take()s
        self._direct: dict[str, int] = {}  # tasks taken directly: id -> attempt (the fence)

    def queue(self, name: str, *, codec: Codec | None = None) -> PostgresStorage:
        """A handle on queue ``name`` of the same database and schema (shared sessions)."""
        _check_queue(name)
        handle = PostgresStorage.__new__(PostgresStorage)
        handle._attach(self._connections, name, codec or self._codec, self._config, self._opening)
        return handle

    def only_task_names(self, names: Iterable[str]) -> PostgresStorage:
        """A view of this queue whose takes and worker sessions claim only typed tasks
        named in ``names`` (``FiltersTaskNames``).

        Tasks of other names, and plain tasks, stay Pending for another
        consumer. The view shares this storage's sessions (closing either
        closes both), as a :meth:`queue` handle does.
        """
        found = check_task_names(names, "PostgresStorage.only_task_names")
        view = PostgresStorage.__new__(PostgresStorage)
        view._attach(
            self._connections, self._queue, self._codec, self._config, self._opening, found
        )
        return view

    @property
    def schema(self) -> str:
        return self._statements.schema

    def __repr__(self) -> str:
        names = self._names_repr()
        return f"PostgresStorage(schema={self.schema!r}, queue={self._queue!r}{names})"

    # -- opening and closing -------------------------------------------------------

    async def open(self) -> PostgresStorage:
        """Connect and create or migrate the schema (once; idempotent)."""
        opening = self._opening
        if opening.done:
            return self
        async with opening.lock:
            if not opening.done:
                async with self._connections.connection() as conn:
                    await migrate(conn, self.schema)
                await self._connections.listening(self._connections.settings.connect_timeout)
                opening.done = True
        return self

    async def aclose(self) -> None:
        """Close every session of this storage (all its queue handles)."""
        self.close()
        await trio.lowlevel.checkpoint()

    def close(self) -> None:
        """Close every session of this storage, the :meth:`push_sync` one too (never blocks)."""
        SyncProducer.close_of(self._connections)
        self._connections.close()

    async def __aenter__(self) -> PostgresStorage:
        return await self.open()

    async def _execute(self, sql: bytes, params: list[bytes | None]) -> list[Row]:
        if not self._opening.done:
            await self.open()
        return await self._connections.execute(sql, params)

    # -- TaskSink ---------------------------------------------------------------------

    async def push(self, args: Any) -> TaskId:
        """Store ``args`` as a new task of this queue, due now (committed when this returns)."""
        (task_id,) = await self._push(PushRows.of_args(self._codec, [args], run_clock().wall_now()))
        return task_id

    async def push_bulk(self, items: Iterable[Any]) -> list[TaskId]:
        """Store every item as a task in one statement: all or nothing."""
        rows = PushRows.of_args(self._codec, list(items), run_clock().wall_now())
        if not rows.ids:
            await trio.lowlevel.checkpoint()
            return []
        return await self._push(rows)

    async def push_task(self, task: Task) -> TaskId:
        """Store a prepared task (its id, run_at, attempts, limits, priority, metadata).

        A task without an id gets one. If the id is already stored (any
        status, also vacuumed, until deleted), or a live task holds the task's
        uniqueness key, nothing is stored and that task's id is returned.
        """
        task = check_task(task, "push_task: task")
        (task_id,) = await self._push(PushRows.of_tasks(self._codec, [task]))
        return task_id

    async def push_stream(self, items: AsyncIterable[Any]) -> int:
        """Store every item an async iterable yields, as it yields; returns the count."""
        return await push_each(self.push, items)

    async def _push(self, rows: PushRows) -> list[TaskId]:
        sql, params = push_statement_params(self._statements, self._queue, rows, time.time())
        stored = {value[0] for value in await self._execute(sql, params) if value[0] is not None}
        self._connections.wake(self._queue)
        return await self._resolve(rows, {raw.decode() for raw in stored})

    async def _resolve(self, rows: PushRows, stored: set[str]) -> list[TaskId]:
        """The ids to report: the stored ones, or those of the tasks already there."""
        missing = [i for i, task_id in enumerate(rows.ids) if task_id not in stored]
        result = [TaskId(task_id) for task_id in rows.ids]
        if missing:
            found = await self._execute(
                self._statements.existing,
                [
                    text(self._queue),
                    text_array(rows.ids[i] for i in missing),
                    text_array(rows.unique_keys[i] for i in missing),
                ],
            )
            holders = {
                raw_id.decode(): holder.decode()
                for raw_id, holder in found
                if raw_id is not None and holder is not None
            }
            for i in missing:
                holder = holders.get(rows.ids[i])
                if holder is not None:
                    result[i] = TaskId(holder)
        return result

    # -- the Backend protocol (direct use; a worker run uses session()) -----------

    def session(self, worker: WorkerIdentity) -> LeaseSession:
        """The session of one worker run (the kit's LeaseSession over this store)."""
        return _Session(self, worker)

    def bind(self) -> None:
        """Nothing to learn: times come from the run's clock when needed."""

    def take_nowait(self) -> Task | None:
        """Always None: claiming is a round trip (use :meth:`take`, or a worker)."""
        return None

    async def take(self) -> Task:
        """Claim the next due task for this handle (cancellable; nothing is lost)."""
        identity = self._direct_identity()
        while True:
            now = run_clock().wall_now()
            if not self._opening.done:
                await self.open()
            claim = await self._store.exchange(
                identity, (), 1, now, self._config.lease, names=self._names
            )
            if claim.tasks:
                claimed = claim.tasks[0]
                self._direct[str(claimed.task.parts.task_id)] = claimed.attempt
                return claimed.task
            timeout = self._config.poll
            if claim.next_due is not None:
                timeout = max(0.0, min(timeout, claim.next_due - now))
            await self._store.wait_wake(timeout)

    async def ack(
        self, task: Task, status: Status, result: Any, error: BaseException | None
    ) -> None:
        """Record a final outcome of a task this handle took (fenced)."""
        if not isinstance(status, Status) or not status.is_final:
            raise ValueError(f"ack: status must be Done, Failed or Killed, got {status!r}")
        message = None if error is None else describe(error)
        await self._settle_direct(
            task, status, result=result if status is Status.Done else None, error=message
        )

    async def retry(self, task: Task, delay: float, error: BaseException) -> None:
        run_at = run_clock().wall_now() + max(delay, 0.0)
        await self._settle_direct(task, Status.Pending, error=describe(error), run_at=run_at)

    async def release(self, task: Task) -> None:
        await self._settle_direct(task, Status.Pending, release=True)

    def _direct_identity(self) -> WorkerIdentity:
        if self._identity is None:
            self._identity = WorkerIdentity.mint(f"{self._queue} (direct)", 1)
        return self._identity

    def lease_store(self) -> PostgresStore:
        """The store operations of this queue (what a worker session runs on)."""
        return self._store

    @property
    def lease_config(self) -> LeaseConfig:
        return self._config

    async def _settle_direct(
        self,
        task: Task,
        status: Status,
        *,
        result: Any = None,
        error: str | None = None,
        run_at: float | None = None,
        release: bool = False,
    ) -> None:
        if not isinstance(task, Task):
            raise TypeError(f"expected a Task, got {type(task).__name__}")
        task_id = str(task.parts.task_id)
        attempt = self._direct.get(task_id)
        if attempt is None:
            raise StorageError(f"PostgresStorage: task {task_id} was not taken through this handle")
        settlement = Settlement(task_id, attempt, status, result, error, run_at, release)
        await self._store.exchange(
            self._direct_identity(), [settlement], 0, run_clock().wall_now(), self._config.lease
        )
        task.parts.status = status

    # -- capabilities --------------------------------------------------------------

    async def fetch_by_id(self, task_id: TaskId | str) -> Task | None:
        """The task of this queue with this id (any status), or None."""
        key = str(check_task_id(task_id, "fetch_by_id: task_id"))
        rows = await self._execute(self._statements.fetch, [text(self._queue), text(key)])
        return self._task(rows[0]) if rows else None

    def _task(self, row: Row) -> Task:
        try:
            return task_of(row, self._codec)
        except CodecError:
            raise
        except Exception as error:
            raise CodecError(
                f"PostgresStorage: a stored task cannot be decoded: {error}"
            ) from error

    async def update(self, task: Task) -> None:
        """Store the task's parts (status, attempts, run_at, limits, priority, metadata).

        A Running task cannot be updated (its worker owns it); nor can a task
        be made Running or Queued. Raises :class:`StorageError` if the task is
        not stored or is Running.
        """
        parts = check_task(task, "update: task").parts
        if parts.status in (Status.Running, Status.Queued):
            raise ValueError(
                f"update: status must be Pending, Done, Failed or Killed, got {parts.status.value}"
            )
        meta = None if not parts.ctx else encode(self._codec, parts.ctx, "metadata")
        rows = await self._execute(
            self._statements.update,
            [
                text(self._queue),
                text(str(parts.task_id)),
                text(parts.status.value),
                number(parts.attempt.current()),
                number(parts.run_at),
                number(parts.max_attempts),
                number(parts.timeout),
                number(parts.priority),
                bytea(meta),
                number(time.time()),
                text(self._statements.channel),
            ],
        )
        if not rows:
            raise StorageError(
                f"PostgresStorage.update: task {parts.task_id} is not stored in queue "
                f"{self._queue!r}, or is Running (its worker owns it)"
            )
        if parts.status is Status.Pending:
            self._connections.wake(self._queue)

    async def reschedule(self, task: Task, delay: float) -> None:
        """Make the task Pending again, due ``delay`` seconds from now."""
        task = check_task(task, "reschedule: task")
        delay = check_delay(delay, "reschedule: delay")
        copy = task.clone()
        copy.parts.status = Status.Pending
        copy.parts.run_at = run_clock().wall_now() + delay
        await self.update(copy)
        task.parts.status = Status.Pending
        task.parts.run_at = copy.parts.run_at

    async def vacuum(self) -> int:
        """Delete this queue's finished tasks; how many. Their ids stay known: a task
        pushed again under one of them stores nothing (see :meth:`push_task`)."""
        rows = await self._execute(self._statements.vacuum, [text(self._queue)])
        return int(rows[0][0] or 0)

    async def kill_by_id(self, task_id: TaskId | str, reason: str = "killed") -> bool:
        """Make a Pending or Running task Killed, with ``reason`` as its error.

        A Running task's worker finishes its execution, but its acknowledgement
        is fenced off (the task is no longer Running under its owner), so the
        task stays Killed. False for an unknown id or a finished task.
        """
        key = str(check_task_id(task_id, "kill_by_id: task_id"))
        if not isinstance(reason, str):
            raise TypeError(f"kill_by_id: reason must be a str, got {reason!r}")
        rows = await self._execute(
            self._statements.kill,
            [text(self._queue), text(key), text(reason), number(run_clock().wall_now())],
        )
        return bool(rows)

    async def count_tasks(self) -> dict[Status, int]:
        """How many of this queue's tasks are in each status (zeros included)."""
        rows = await self._execute(self._statements.count_by_status, [text(self._queue)])
        counts = dict.fromkeys(Status, 0)
        for status, count in rows:
            assert status is not None and count is not None
            counts[Status(status.decode())] = int(count)
        return counts

    async def list_queues(self) -> list[str]:
        """The queues of this schema that hold tasks, and this handle's own, sorted."""
        rows = await self._execute(self._statements.queues, [])
        return sorted({self._queue, *((row[0] or b"").decode() for row in rows)})

    async def delete(self, task_id: TaskId | str) -> bool:
        """Forget one task, in any status; False if it was not there.

        A Running task's worker then acknowledges nothing (its fenced
        acknowledgement finds no row): this is what ``WorkerPool`` retention
        calls once a task's outcome is queued for acknowledgement.
        """
        key = str(check_task_id(task_id, "delete: task_id"))
        rows = await self._execute(self._statements.delete, [text(self._queue), text(key)])
        return bool(rows)

    async def resume_by_id(self, task_id: TaskId | str) -> bool:
        """Make a Failed or Killed task Pending again, due now; False if it is not one."""
        rows = await self._execute(
            self._statements.resume,
            [
                text(self._queue),
                text(str(check_task_id(task_id, "resume_by_id: task_id"))),
                number(run_clock().wall_now()),
                text(self._statements.channel),
            ],
        )
        if rows:
            self._connections.wake(self._queue)
        return bool(rows)

    async def resume_abandoned(self) -> int:
        """Re-queue the Running tasks whose worker is gone; how many.

        At once for the worker runs whose process is provably dead (their
        liveness lock is free: the session holding it ended), else once their
        lease expires. Each counts the lost execution; a task with no
        attempts left becomes Failed.
        """
        if not self._opening.done:
            await self.open()
        total = 0
        limit = self._config.recover_limit
        while True:
            handled = await self._store.recover(run_clock().wall_now(), limit, owners_gone=True)
            total += handled
            if handled < limit:
                return total

    async def register_worker(self, name: str) -> None:
        """Record this handle as a worker named ``name`` (and extend its direct leases)."""
        name = check_name(name, "register_worker: name")
        identity = self._direct_identity()
        if identity.name != name:
            identity = self._identity = WorkerIdentity(
                name, identity.id, identity.host, identity.pid, identity.started_at, 1
            )
        if not self._opening.done:
            await self.open()
        await self._store.heartbeat(identity, run_clock().wall_now(), self._config.lease)

    async def list_workers(self) -> list[WorkerInfo]:
        """The live worker runs of this queue (seen within a lease), most recent first.

        A worker that stopped leaves the list at once, one that died once its
        lease has passed.
        """
        cutoff = run_clock().wall_now() - self._config.lease
        rows = await self._execute(
            self._statements.list_workers, [text(self._queue), number(cutoff)]
        )
        return [
            WorkerInfo(
                name=(name or b"").decode(),
                pid=int(pid or 0),
                started_at=float(started or 0),
                last_seen=float(seen or 0),
                id=(worker_id or b"").decode(),
                host=(host or b"").decode(),
            )
            for name, pid, started, seen, worker_id, host in rows
        ]

    async def list_tasks(
        self, status: Status | None = None, page: int = 1, page_size: int = 10
    ) -> list[Task]:
        """A page of this queue's tasks in push order (pages start at 1)."""
        status = check_status_filter(status, "list_tasks: status")
        page = check_positive_int(page, "list_tasks: page")
        page_size = check_positive_int(page_size, "list_tasks: page_size")
        status_text = None if status is None else status.value
        if status_text == Status.Queued.value:
            status_text = Status.Pending.value  # no separate Queued state is stored
        rows = await self._execute(
            self._statements.list_tasks,
            [
                text(self._queue),
                text(status_text),
                number(min(page_size, 2**62)),
                number(min((page - 1) * page_size, 2**62)),
            ],
        )
        return [self._task(row) for row in rows]

    async def count(self) -> int:
        """How many tasks of this queue are not final."""
        rows = await self._execute(self._statements.count, [text(self._queue)])
        return int(rows[0][0] or 0)

    async def check_status(self, task_ids: Iterable[TaskId | str]) -> list[TaskResult]:
        """The status (and outcome, once final) of each task; KeyError for an unknown id."""
        keys = [str(key) for key in check_task_ids(task_ids, "check_status: task_ids")]
        rows = await self._execute(
            self._statements.status_of, [text(self._queue), text_array(keys)]
        )
        by_id = {row[0].decode(): row for row in rows if row[0] is not None}
        results = []
        for key in keys:
            row = by_id.get(key)
            if row is None:
                raise KeyError(f"task {key} is not in queue {self._queue!r}")
            results.append(self._result(key, row))
        return results

    def _result(self, key: str, row: Row) -> TaskResult:
        _, status_raw, result, error = row
        status = Status((status_raw or b"Pending").decode())
        task_id = TaskId(key)
        if status is Status.Done:
            value = None
            if result is not None:
                try:
                    value = self._codec.decode(unbytea(result))
                except Exception as decode_error:
                    return TaskResult(task_id, status, outcome.Error(TaskError(str(decode_error))))
            return TaskResult.done(task_id, value)
        if status.is_final:
            return TaskResult.failed(task_id, status, (error or b"").decode())
        return TaskResult(task_id, status)

    async def wait_for_single(self, task_id: TaskId | str) -> TaskResult:
        """Wait until the task is final; its result."""
        key = str(check_task_id(task_id, "wait_for_single: task_id"))
        delay = _POLL_FIRST
        while True:
            (result,) = await self.check_status([key])
            if result.is_final:
                return result
            await trio.sleep(delay)
            delay = _next_poll(delay)

    async def wait_for(self, task_ids: Iterable[TaskId | str]) -> AsyncGenerator[TaskResult, None]:
        """Yield each task's result as it becomes final (polling, 5 ms up to 250 ms)."""
        checked = check_task_ids(task_ids, "wait_for: task_ids")
        waiting = list(dict.fromkeys(str(key) for key in checked))
        delay = _POLL_FIRST
        while waiting:
            results = await self.check_status(waiting)
            finished = [result for result in results if result.is_final]
            for result in finished:
                yield result
            if finished:
                done = {str(result.task_id) for result in finished}
                waiting = [key for key in waiting if key not in done]
                delay = _POLL_FIRST
                continue
            await trio.sleep(delay)
            delay = _next_poll(delay)

    # -- producers outside trio -------------------------------------------------------

    def push_sync(self, args: Any) -> TaskId:
        """Push from plain (non-trio) code: a blocking psycopg session of this storage.

        Safe from any thread; one session per storage, opened on first use and
        migrated if needed. Do not call it on a trio thread (it blocks).
        """
        rows = PushRows.of_args(self._codec, [args], time.time())
        return self._producer().push(self._queue, rows)[0]

    def push_bulk_sync(self, items: Iterable[Any]) -> list[TaskId]:
        """:meth:`push_bulk` from plain (non-trio) code (see :meth:`push_sync`)."""
        rows = PushRows.of_args(self._codec, list(items), time.time())
        return self._producer().push(self._queue, rows) if rows.ids else []

    def push_task_sync(self, task: Task) -> TaskId:
        """:meth:`push_task` from plain (non-trio) code (see :meth:`push_sync`)."""
        return self._producer().push(self._queue, PushRows.of_tasks(self._codec, [task]))[0]

    def _producer(self) -> SyncProducer:
        return SyncProducer.of(self._connections, self._connections.dsn, self._statements)

    # -- inside the caller's transaction ------------------------------------------------

    def push_on(self, connection: psycopg.Connection[Any], args: Any) -> TaskId:
        """Push ``args`` on the caller's psycopg connection, inside its transaction.

        Nothing is committed here: the task exists if and only if the caller's
        transaction commits (and workers are notified at that commit). The
        schema must exist (open the storage once, or run ``pyapalis migrate``).
        """
        rows = PushRows.of_args(self._codec, [args], time.time())
        return push_on(connection, self._statements, self._queue, rows)[0]

    def push_task_on(self, connection: psycopg.Connection[Any], task: Task) -> TaskId:
        """:meth:`push_task` on the caller's psycopg connection (see :meth:`push_on`)."""
        rows = PushRows.of_tasks(self._codec, [task])
        return push_on(connection, self._statements, self._queue, rows)[0]

    async def push_on_async(self, connection: psycopg.AsyncConnection[Any], args: Any) -> TaskId:
        """:meth:`push_on` for an async psycopg connection (asyncio code)."""
        rows = PushRows.of_args(self._codec, [args], time.time())
        return (await push_on_async(connection, self._statements, self._queue, rows))[0]

    async def push_task_on_async(
        self, connection: psycopg.AsyncConnection[Any], task: Task
    ) -> TaskId:
        """:meth:`push_task` on an async psycopg connection (see :meth:`push_on`)."""
        rows = PushRows.of_tasks(self._codec, [task])
        return (await push_on_async(connection, self._statements, self._queue, rows))[0]

    @property
    def dsn(self) -> str:
        return self._connections.dsn

    @property
    def codec(self) -> Codec:
        return self._codec


class _Opening:
    """Whether the schema was brought up to date, shared by a storage's queue handles."""

    __slots__ = ("done", "lock")

    def __init__(self) -> None:
        self.done = False
        self.lock = trio.Lock()


class _Session(LeaseSession):
    """A LeaseSession that opens its storage first (a worker may be given it unopened)."""

    def __init__(self, storage: PostgresStorage, worker: WorkerIdentity) -> None:
        super().__init__(storage.lease_store(), worker, storage.lease_config, storage.task_names)
        self._storage = storage

    async def __aenter__(self) -> LeaseSession:
        await self._storage.open()
        return await super().__aenter__()


def _next_poll(delay: float) -> float:
    """The next wait between two looks at results: doubling up to ``_POLL_MOST``."""
    return min(delay * 2, _POLL_MOST)


def _check_queue(name: object) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"PostgresStorage: queue must be a non-empty str, got {name!r}")


def _check_seconds(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ValueError(
            f"PostgresStorage: {name} must be a finite number of seconds > 0, got {value!r}"
        )
