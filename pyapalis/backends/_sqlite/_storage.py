"""SqliteStorage: the public handle on a SQLite task file shared by many processes."""

from __future__ import annotations

import contextlib
import math
import sqlite3
import time
from collections.abc import AsyncGenerator, AsyncIterable, Iterable
from typing import Any

import outcome
import trio

from ..._errors import CodecError, StorageError, TaskError
from ..._implementation import Attempt, Parts, Task, TaskId
from ..._status import Status
from .._capabilities import TaskResult, WorkerInfo
from .._codec import Codec, JsonCodec
from .._kit._args import (
    check_delay,
    check_name,
    check_page,
    check_status_filter,
    check_task,
    check_task_id,
    check_task_ids,
)
from .._kit._clock import run_clock
from .._kit._handle import QueueHandle
from .._kit._leases import LeaseConfig, LeaseSession, LiveSession
from .._kit._names import check_task_names, task_name_of, typed_unique_key
from .._kit._results import ResultWaiters
from .._kit._sink import push_batches
from .._worker_protocols import WorkerIdentity
from ._db import SYNCHRONOUS, Database, notify
from ._store import LIVE_WORKERS, ROW_COLUMNS, Row, SqliteStore, ms_ceil

__all__ = ["SqliteStorage"]

_MAX_INT = 2**63 - 1

VACUUMED_IDS = 100_000
"""How many ids of vacuumed tasks a file remembers (the most recent): a push of one
stores nothing, so vacuum never reopens a periodic tick."""


class SqliteStorage(QueueHandle):
    """Tasks in a SQLite file that many processes on one machine share.

    ``SqliteStorage(path, *, queue="default", lease=30.0, synchronous="NORMAL",
    busy_timeout=5.0, codec=JsonCodec(), prefetch=8, batch=100, poll=1.0)``.
    Construction does no I/O; ``async with storage:`` (or the first call, or a
    worker's run) opens the file: created with mode 0600, WAL, the schema
    created or migrated (``PRAGMA user_version``; idempotent, safe when
    several processes open at once; a file from a newer pyapalis is refused).
    ``storage.queue("emails")`` is another named queue of the same file on the
    same connection. One connection per storage, used on a worker thread one
    call at a time, so the trio thread never blocks on the disk.

    Durability: ``synchronous="NORMAL"`` (the default) survives any process
    crash; a power loss may forget the last commits. ``"FULL"`` fsyncs every
    commit: a push acknowledged is on disk even after a power loss.

    Delivery (:mod:`pyapalis.backends._kit._leases`): each worker
    run claims tasks under a fresh worker id with a ``lease`` (seconds); a
    heartbeat every lease/3 extends the leases it holds; acks are fenced by
    owner and attempt and batched; any live worker re-queues expired leases
    every lease/2 (Failed when no attempts are left). Claims take the free
    slots plus ``prefetch`` tasks, at most ``batch``. An idle worker notices a
    push from this process at once and from another within ~10 ms
    (``PRAGMA data_version``), and polls every ``poll`` seconds whatever happens.
    The storage itself is also a Backend (``take``/``ack``...) under a worker
    id of its own, without prefetch or heartbeat.

    Task names (``FiltersTaskNames``): a typed task's ``TASK_NAME`` is stored
    with it (an indexed column); ``storage.only_task_names(names)`` is a handle
    whose consumers claim only those names, the one a ``WorkerPool`` consumes.

    Priorities: higher first, then ``run_at`` (milliseconds), then push
    order. A pushed task whose id exists (in any status, until deleted)
    stores nothing and returns that id; a typed task's uniqueness key
    (``TaskHash``) blocks a second task while the first is Pending or Running
    (a partial unique index), returning the first one's id. Faults (not a
    database, corrupt, locked past ``busy_timeout``, disk full) raise
    :class:`StorageError` naming the file; a worker backs off and goes on.

    ======================  ===========  =======================================
    capability              support      notes
    ======================  ===========  =======================================
    TaskSink                supported    push_bulk: one transaction; push_sync
    FetchById               supported    any queue of the file
    Update                  supported    status, attempts, run_at, limits, meta
    Reschedule              supported
    Vacuum                  supported    removes this queue's finished tasks; ids kept
    delete                  supported
    kill                    supported    Pending or Running (the late ack is fenced)
    count_tasks             supported    one GROUP BY on the (queue, status) index
    list_queues             supported    queues of the file holding tasks
    ResumeById              supported    Failed, Killed or Running tasks
    ResumeAbandoned         supported    dead processes at once, else by lease
    RegisterWorker          supported
    ListWorkers             supported    workers seen within a lease
    ListTasks               supported    this queue, in push order
    WaitForCompletion       supported    across processes
    ======================  ===========  =======================================
    """

    def __init__(
        self,
        path: str | Any,
        *,
        queue: str = "default",
        lease: float = 30.0,
        synchronous: str = "NORMAL",
        busy_timeout: float = 5.0,
        codec: Codec | None = None,
        prefetch: int = 8,
        batch: int = 100,
        poll: float = 1.0,
        _db: Database | None = None,
        _names: frozenset[str] | None = None,
        _borrowed: bool = False,
    ) -> None:
        path = str(path) if not isinstance(path, str) else path
        if not path:
            raise ValueError("SqliteStorage: path must be a non-empty file path")
        check_name(queue, "SqliteStorage: queue")
        sync = synchronous.upper() if isinstance(synchronous, str) else synchronous
        if sync not in SYNCHRONOUS:
            raise ValueError(
                f"SqliteStorage: synchronous must be one of {', '.join(SYNCHRONOUS)}, "
                f"got {synchronous!r}"
            )
        if not (
            isinstance(busy_timeout, (int, float))
            and math.isfinite(busy_timeout)
            and busy_timeout >= 0
        ):
            raise ValueError(
                f"SqliteStorage: busy_timeout must be >= 0 seconds, got {busy_timeout!r}"
            )
        self._leases = LeaseConfig(lease=lease, prefetch=prefetch, batch=batch, poll=poll)
        self._direct_config = LeaseConfig(lease=lease, prefetch=0, batch=batch, poll=poll)
        self._db = _db if _db is not None else Database(path, sync, float(busy_timeout))
        self._borrowed = _borrowed  # a view: it holds no reference to the file of its own
        if not _borrowed:
            self._db.acquire()
        self._codec = codec if codec is not None else JsonCodec()
        self._queue = queue
        self._store = SqliteStore(self._db, queue, self._codec)
        self._names = _names
        self._direct: LeaseSession | None = None
        self._registered: dict[str, WorkerIdentity] = {}
        self._waiters: ResultWaiters[TaskResult] = ResultWaiters()
        self._closed = False

    # -- handle ---------------------------------------------------------------------

    @property
    def path(self) -> str:
        return self._db.path

    @property
    def lease(self) -> float:
        return self._leases.lease

    def queue(self, name: str, *, codec: Codec | None = None) -> SqliteStorage:
        """A handle on queue ``name`` of the same file, sharing this handle's connection."""
        return self._handle(name, codec if codec is not None else self._codec, None)

    def only_task_names(self, names: Iterable[str]) -> SqliteStorage:
        """A view of this queue whose takes and worker sessions claim only typed tasks
        named in ``names`` (``FiltersTaskNames``).

        Tasks of other names, and plain tasks, stay Pending for another
        consumer. Pushes and management calls are those of any handle. The
        view borrows this handle's connection: closing this handle ends it
        (closing the view only flushes what the view itself took).
        """
        found = check_task_names(names, "SqliteStorage.only_task_names")
        return self._handle(self._queue, self._codec, found, borrowed=True)

    def _handle(
        self, name: str, codec: Codec, names: frozenset[str] | None, *, borrowed: bool = False
    ) -> SqliteStorage:
        db = self._db
        return SqliteStorage(
            db.path,
            queue=name,
            lease=self._leases.lease,
            synchronous=db.synchronous,
            busy_timeout=db.busy_timeout,
            codec=codec,
            prefetch=self._leases.prefetch,
            batch=self._leases.batch,
            poll=self._leases.poll,
            _db=db,
            _names=names,
            _borrowed=borrowed,
        )

    def __repr__(self) -> str:
        names = self._names_repr()
        return f"SqliteStorage({self.path!r}, queue={self._queue!r}{names})"

    async def open(self) -> SqliteStorage:
        """Open the file now (idempotent); a call that needs it opens it anyway."""
        self._check_open()
        await self._db.open()
        return self

    async def __aenter__(self) -> SqliteStorage:
        return await self.open()

    async def aclose(self) -> None:
        """Flush this handle's own outcomes, then release the file (the last handle closes it)."""
        if self._closed:
            return
        direct, self._direct = self._direct, None
        if direct is not None and self._db.is_open:
            await direct.__aexit__(None, None, None)
        self.close()

    def close(self) -> None:
        """Release the file without awaiting (tasks this handle took come back by lease)."""
        if self._closed:
            return
        self._closed = True
        if self._direct is not None:
            LIVE_WORKERS.discard(self._direct.worker.id)
            self._direct = None
        for identity in self._registered.values():
            LIVE_WORKERS.discard(identity.id)
        if not self._borrowed:
            self._db.release()

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(f"SqliteStorage {self.path}: this handle is closed")

    # -- WorkerSessions ---------------------------------------------------------------

    def session(self, worker: WorkerIdentity) -> LeaseSession:
        """The session of one worker run (see :mod:`pyapalis.backends._kit._leases`)."""
        self._check_open()
        return _Session(self, worker, self._leases, self._names)

    # -- Backend (the handle as a consumer of its own) ---------------------------------

    def _own_session(self) -> LeaseSession:
        direct = self._direct
        if direct is None:
            self._check_open()
            identity = WorkerIdentity.mint(f"{self._queue}-direct", 1)
            LIVE_WORKERS.add(identity.id)
            direct = self._direct = LeaseSession(
                self._store, identity, self._direct_config, self._names
            )
        return direct

    def bind(self) -> None:
        """Nothing to learn: the database opens on first use."""

    def take_nowait(self) -> Task | None:
        return self._own_session().take_nowait()

    async def take(self) -> Task:
        """Claim the next due task of this queue under the handle's own worker id."""
        await self._db.open()
        return await self._own_session().take()

    async def ack(
        self, task: Task, status: Status, result: Any, error: BaseException | None
    ) -> None:
        await self._own_session().ack_now(task, status, result, error)

    async def retry(self, task: Task, delay: float, error: BaseException) -> None:
        await self._own_session().retry_now(task, delay, error)

    async def release(self, task: Task) -> None:
        await self._own_session().release_now(task)

    # -- TaskSink ------------------------------------------------------------------

    async def push(self, args: Any) -> TaskId:
        """Queue ``args`` as a new task due now; its id once it is committed."""
        [task_id] = await self._insert_args([args])
        return task_id

    async def push_bulk(self, items: Iterable[Any]) -> list[TaskId]:
        """Queue every item in one transaction (all or nothing)."""
        return await self._insert_args(items)

    async def push_task(self, task: Task) -> TaskId:
        """Queue a prepared task, keeping its id, run_at, attempts, limits and metadata."""
        check_task(task, "push_task: task")
        [task_id] = await self._insert([task])
        return task_id

    async def push_stream(self, items: AsyncIterable[Any]) -> int:
        """Queue every item of an async iterable, committing in batches of up to 1000."""
        return await push_batches(self._insert_args, items, 1000)

    def push_sync(self, args: Any) -> TaskId:
        """Queue ``args`` from code that is not trio (threads, web views, asyncio).

        Blocks the calling thread until the task is committed (its own
        connection per thread). Inside a trio run use ``await push()``.
        """
        [task_id] = self._write_sync(self._arg_rows([args]), True)
        return task_id

    def push_task_sync(self, task: Task) -> TaskId:
        """:meth:`push_task` for code that is not trio (see :meth:`push_sync`)."""
        check_task(task, "push_task_sync: task")
        [task_id] = self._write_sync(*self._rows([task]))
        return task_id

    async def _insert(self, tasks: list[Task]) -> list[TaskId]:
        return await self._write(*self._rows(tasks))

    async def _insert_args(self, items: Iterable[Any]) -> list[TaskId]:
        """Insert plain arguments as new tasks due now (no Task objects: the hot push path)."""
        return await self._write(self._arg_rows(items), True)

    async def _write(self, rows: list[tuple[Any, ...]], fast: bool) -> list[TaskId]:
        """Insert rows in one transaction (off the trio thread), then wake this process."""
        self._check_open()
        if not rows:
            await trio.lowlevel.checkpoint()
            return []
        queue = self._queue
        ids = await self._db.run("pushing tasks", lambda c: _insert_rows(c, rows, fast, queue))
        notify(self._db.key, work=True)
        return ids

    def _write_sync(self, rows: list[tuple[Any, ...]], fast: bool) -> list[TaskId]:
        """:meth:`_write` on this thread's own connection, for code outside trio."""
        try:
            trio.lowlevel.current_trio_token()
        except RuntimeError:
            pass
        else:
            raise RuntimeError(
                "SqliteStorage.push_sync would block the trio thread: use await push()"
            )
        self._check_open()
        queue = self._queue
        ids = self._db.run_sync("pushing tasks", lambda c: _insert_rows(c, rows, fast, queue))
        notify(self._db.key, work=True)
        return ids

    def _arg_rows(self, items: Iterable[Any]) -> list[tuple[Any, ...]]:
        """Rows of new tasks with default parts (fresh ULIDs never conflict)."""
        encode = self._codec.encode
        queue = self._queue
        generate = TaskId.generate
        run_at = ms_ceil(time.time())
        return [
            (
                str(generate()),
                queue,
                encode(item),
                None,
                0,
                None,
                None,
                0,
                run_at,
                None,
                task_name_of(item),
            )
            for item in items
        ]

    def _rows(self, tasks: list[Task]) -> tuple[list[tuple[Any, ...]], bool]:
        """The rows to insert, and whether every id is freshly generated (no conflicts)."""
        encode = self._codec.encode
        queue = self._queue
        rows = []
        fast = True
        for task in tasks:
            parts = task.parts
            if parts.task_id is None:
                task_id = str(TaskId.generate())
            else:
                task_id = str(parts.task_id)
                fast = False
            ctx = parts.ctx
            unique = _unique_key(ctx)
            if unique is not None:
                fast = False
            run_at = parts.run_at
            rows.append(
                (
                    task_id,
                    queue,
                    encode(task.args),
                    None if ctx is None else encode(ctx),
                    parts.attempt.current(),
                    parts.max_attempts,
                    parts.timeout,
                    parts.priority,
                    ms_ceil(run_at) if run_at is not None else ms_ceil(time.time()),
                    unique,
                    task_name_of(task.args),
                )
            )
        return rows, fast

    # -- capabilities ------------------------------------------------------------------

    async def fetch_by_id(self, task_id: TaskId | str) -> Task | None:
        """The stored task (any queue of the file), or None."""
        key = str(check_task_id(task_id, "fetch_by_id: task_id"))
        row = await self._db.run(
            "reading a task",
            lambda c: c.execute(f"SELECT {ROW_COLUMNS} FROM tasks WHERE id = ?", (key,)).fetchone(),
        )
        return None if row is None else self._task_of(Row(*row))

    async def list_tasks(
        self, status: Status | None = None, page: int = 1, page_size: int = 10
    ) -> list[Task]:
        """This queue's tasks in push order, optionally of one status; pages start at 1."""
        status = check_status_filter(status, "list_tasks: status")
        page = check_page(page, "list_tasks: page")
        page_size = check_page(page_size, "list_tasks: page_size")
        limit = min(page_size, _MAX_INT)
        offset = min((page - 1) * page_size, _MAX_INT)
        where, params = "queue = ?", [self._queue]
        if status is not None:
            where += " AND status = ?"
            params.append(status.value)
        rows = await self._db.run(
            "listing tasks",
            lambda c: c.execute(
                f"SELECT {ROW_COLUMNS} FROM tasks WHERE {where} ORDER BY rowid LIMIT ? OFFSET ?",
                (*params, limit, offset),
            ).fetchall(),
        )
        return [self._task_of(Row(*row)) for row in rows]

    async def list_queues(self) -> list[str]:
        """The file's queues that hold tasks, and this handle's own, sorted."""
        rows = await self._db.run(
            "listing queues",
            lambda c: c.execute("SELECT DISTINCT queue FROM tasks").fetchall(),
        )
        return sorted({self._queue, *(row[0] for row in rows)})

    async def count_tasks(self) -> dict[Status, int]:
        """How many of this queue's tasks are in each status (zeros included)."""
        rows = await self._db.run(
            "counting tasks",
            lambda c: c.execute(
                "SELECT status, COUNT(*) FROM tasks WHERE queue = ? GROUP BY status",
                (self._queue,),
            ).fetchall(),
        )
        counts = dict.fromkeys(Status, 0)
        for status, count in rows:
            counts[Status(status)] = count
        return counts

    async def update(self, task: Task) -> None:
        """Store the task's parts: status, attempts, run_at, limits, priority, metadata."""
        parts = check_task(task, "update: task").parts
        key = str(check_task_id(parts.task_id, "update: task.parts.task_id"))
        status = parts.status.value
        meta = None if parts.ctx is None else self._codec.encode(parts.ctx)
        values = (
            status,
            parts.attempt.current(),
            ms_ceil(parts.run_at),
            parts.max_attempts,
            parts.timeout,
            parts.priority,
            meta,
            key,
        )

        def run(c: sqlite3.Connection) -> int:
            return c.execute(
                "UPDATE tasks SET status = ?, attempt = ?, run_at = ?, max_attempts = ?, "
                "timeout = ?, priority = ?, meta = ?, "
                "owner = CASE WHEN status = 'Running' THEN owner END WHERE id = ?",
                values,
            ).rowcount

        if not await self._db.run("updating a task", run):
            raise KeyError(f"update: task {key!r} is not in {self.path}")
        notify(self._db.key, work=True, results=True)

    async def reschedule(self, task: Task, delay: float) -> None:
        """Queue the task again ``delay`` seconds from now (Pending, its attempts kept)."""
        check_task(task, "reschedule: task")
        delay = check_delay(delay, "reschedule: delay")
        key = str(check_task_id(task.parts.task_id, "reschedule: task.parts.task_id"))
        run_at = ms_ceil(run_clock().wall_now() + delay)
        count = await self._db.run(
            "rescheduling a task",
            lambda c: (
                c.execute(
                    "UPDATE tasks SET status = 'Pending', run_at = ?, owner = NULL, "
                    "lease_until = NULL WHERE id = ?",
                    (run_at, key),
                ).rowcount
            ),
        )
        if not count:
            raise KeyError(f"reschedule: task {key!r} is not in {self.path}")
        task.parts.status = Status.Pending
        notify(self._db.key, work=True, results=True)

    async def vacuum(self) -> int:
        """Remove this queue's finished tasks (Done, Failed, Killed); how many.

        Their ids are remembered (the last :data:`VACUUMED_IDS` of the file):
        a ``push_task`` of one stores nothing, so vacuum never reopens a
        periodic tick. :meth:`delete` of such an id forgets it.
        """
        queue = self._queue
        now = ms_ceil(time.time())
        count: int = await self._db.run("vacuuming", lambda c: _vacuum(c, queue, now))
        return count

    async def delete(self, task_id: TaskId | str) -> bool:
        """Forget one task (any status), or a vacuumed task's remembered id; False if
        the file holds neither. The id may be pushed again."""
        key = str(check_task_id(task_id, "delete: task_id"))
        count = await self._db.run("deleting a task", lambda c: _delete(c, key))
        if count:
            notify(self._db.key, work=True, results=True)
        return bool(count)

    async def kill_by_id(self, task_id: TaskId | str, reason: str = "killed") -> bool:
        """Make a Pending or Running task Killed, with ``reason`` as its error.

        A Running task's worker finishes its execution, but its ack is fenced
        (the task is no longer Running under its owner), so the task stays
        Killed. False for an unknown id or a finished task.
        """
        key = str(check_task_id(task_id, "kill_by_id: task_id"))
        if not isinstance(reason, str):
            raise TypeError(f"kill_by_id: reason must be a str, got {reason!r}")
        done_at = ms_ceil(run_clock().wall_now())
        count = await self._db.run(
            "killing a task",
            lambda c: (
                c.execute(
                    "UPDATE tasks SET status = 'Killed', error = ?, result = NULL, "
                    "owner = NULL, lease_until = NULL, done_at = ? "
                    "WHERE id = ? AND status IN ('Pending', 'Queued', 'Running')",
                    (reason, done_at, key),
                ).rowcount
            ),
        )
        if count:
            notify(self._db.key)
        return bool(count)

    async def resume_by_id(self, task_id: TaskId | str) -> bool:
        """Make a Failed, Killed or Running task Pending again with a fresh attempt budget."""
        key = str(check_task_id(task_id, "resume_by_id: task_id"))
        count = await self._db.run(
            "resuming a task",
            lambda c: (
                c.execute(
                    "UPDATE tasks SET status = 'Pending', attempt = 0, error = NULL, "
                    "result = NULL, "
                    "owner = NULL, lease_until = NULL, done_at = NULL "
                    "WHERE id = ? AND status IN ('Failed', 'Killed', 'Running')",
                    (key,),
                ).rowcount
            ),
        )
        if count:
            notify(self._db.key, work=True, results=True)
        return bool(count)

    async def resume_abandoned(self) -> int:
        """Re-queue Running tasks whose worker is provably gone, or whose lease expired.

        Provably gone: a worker run that ended, a process on this host that
        no longer exists. Each counts the lost execution as an attempt (Failed
        when none is left). Workers do this by themselves every lease/2 for
        expired leases.
        """
        self._check_open()
        return await self._store.resume_abandoned(run_clock().wall_now())

    async def register_worker(self, name: str) -> None:
        """Record ``name`` as a live worker of this process (a heartbeat)."""
        check_name(name, "register_worker: name")
        identity = self._registered.get(name)
        if identity is None:
            identity = self._registered[name] = WorkerIdentity.mint(name, 1)
            LIVE_WORKERS.add(identity.id)
        await self._store.heartbeat(identity, run_clock().wall_now(), self._leases.lease)

    async def list_workers(self) -> list[WorkerInfo]:
        """Workers of this queue seen within a lease, oldest first."""
        since = run_clock().wall_now() - self._leases.lease
        rows = await self._db.run(
            "listing workers",
            lambda c: c.execute(
                "SELECT name, pid, started_at, last_seen, id, host FROM workers "
                "WHERE queue = ? AND last_seen >= ? ORDER BY started_at, id",
                (self._queue, since),
            ).fetchall(),
        )
        return [WorkerInfo(*row) for row in rows]

    async def check_status(self, task_ids: Iterable[TaskId | str]) -> list[TaskResult]:
        """The status (and outcome, once final) of each task, in order; KeyError if unknown."""
        keys = [str(key) for key in check_task_ids(task_ids, "check_status: task_ids")]
        found = await self._statuses(keys)
        missing = [key for key in keys if key not in found]
        if missing:
            raise KeyError(f"check_status: task {missing[0]!r} is not in {self.path}")
        return [found[key] for key in keys]

    async def _statuses(self, keys: list[str]) -> dict[str, TaskResult]:
        def run(c: sqlite3.Connection) -> list[Any]:
            rows: list[Any] = []
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows += c.execute(
                    f"SELECT id, status, result, error FROM tasks WHERE id IN ({marks})", chunk
                ).fetchall()
            return rows

        rows = await self._db.run("reading task statuses", run)
        return {row[0]: self._result_of(*row) for row in rows}

    def _result_of(
        self, key: str, status: str, result: bytes | None, error: str | None
    ) -> TaskResult:
        task_id = TaskId(key)
        state = Status(status)
        if state is Status.Done:
            value = None
            if result is not None:
                try:
                    value = self._codec.decode(result)
                except CodecError as codec_error:
                    return TaskResult(task_id, state, outcome.Error(TaskError(str(codec_error))))
            return TaskResult(task_id, state, outcome.Value(value))
        if state.is_final:
            return TaskResult(task_id, state, outcome.Error(TaskError(error or state.value)))
        return TaskResult(task_id, state)

    async def wait_for_single(self, task_id: TaskId | str) -> TaskResult:
        """Wait until the task is final (in any process) and return its result."""
        key = check_task_id(task_id, "wait_for_single: task_id")
        async with contextlib.aclosing(self._wait([key], "wait_for_single")) as results:
            async for result in results:
                return result
        raise AssertionError("unreachable: _wait yields every id it is given")

    async def wait_for(self, task_ids: Iterable[TaskId | str]) -> AsyncGenerator[TaskResult, None]:
        """Yield each task's result once it is final, whichever process runs it.

        Final ones first, in the order given, then in completion order. A
        commit in this process wakes the wait at once, another process's
        within ~10 ms (``data_version``), and it re-reads every second anyway.
        Raises ``KeyError`` for an id the file does not hold (or that is deleted).
        """
        keys = check_task_ids(task_ids, "wait_for: task_ids")
        async with contextlib.aclosing(self._wait(keys, "wait_for")) as results:
            async for result in results:
                yield result

    async def _wait(self, keys: list[TaskId], what: str) -> AsyncGenerator[TaskResult, None]:
        """The kit's result waiters, fed by re-reading the file whenever it changed."""
        db = self._db
        hub = db.results
        state = {"generation": hub.generation, "version": await db.read_data_version()}
        known = await self._finals(set(keys), what)

        async def poll(pending: set[TaskId]) -> dict[TaskId, TaskResult]:
            await db.changed_since(hub, state["generation"], state["version"], 1.0)
            state["generation"] = hub.generation
            state["version"] = await db.read_data_version()
            return await self._finals(pending, what)

        waiting = self._waiters.wait(
            keys,
            lambda wanted: {key: known[key] for key in wanted if key in known},
            poll=poll,
            every=0,  # poll() itself waits for a change of the file
            check=self._check_open,
        )
        async with contextlib.aclosing(waiting) as results:
            async for _key, result in results:
                yield result

    async def _finals(self, keys: set[TaskId], what: str) -> dict[TaskId, TaskResult]:
        """The final results among ``keys``; KeyError for one the file does not hold."""
        found = await self._statuses([str(key) for key in keys])
        missing = [key for key in keys if str(key) not in found]
        if missing:
            raise KeyError(f"{what}: task {str(missing[0])!r} is not in {self.path}")
        return {key: found[str(key)] for key in keys if found[str(key)].is_final}

    # -- decoding ----------------------------------------------------------------------

    def _task_of(self, row: Row) -> Task:
        try:
            args = self._codec.decode(row.args)
            ctx = self._codec.decode(row.meta) if row.meta is not None else None
        except CodecError as error:
            raise CodecError(f"task {row.id} in {self.path}: {error}") from error
        parts = Parts(
            task_id=TaskId(row.id),
            attempt=Attempt(row.attempt),
            ctx=ctx,
            status=Status(row.status),
            run_at=row.run_at / 1000,
            max_attempts=row.max_attempts,
            timeout=row.timeout,
            priority=row.priority,
        )
        return Task.from_parts(args, parts)


class _Session(LiveSession):
    """A worker run's session: opens the storage and marks the worker live in this process."""

    live = LIVE_WORKERS

    def __init__(
        self,
        storage: SqliteStorage,
        worker: WorkerIdentity,
        config: LeaseConfig,
        names: frozenset[str] | None,
    ) -> None:
        super().__init__(storage._store, worker, config, names)
        self._storage = storage

    async def __aenter__(self) -> LeaseSession:
        await self._storage.open()
        return await super().__aenter__()


def _insert_rows(
    connection: sqlite3.Connection, rows: list[tuple[Any, ...]], fast: bool, queue: str
) -> list[TaskId]:
    """Insert rows in one transaction; an existing id or a live uniqueness key gives the holder."""
    insert = (
        "INSERT {} INTO tasks (id, queue, args, meta, attempt, max_attempts, timeout, priority, "
        "run_at, unique_key, task_name, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'Pending')"
    )
    connection.execute("BEGIN IMMEDIATE")
    if fast:
        connection.executemany(insert.format(""), rows)
        connection.execute("COMMIT")
        return [TaskId(row[0]) for row in rows]
    ids = []
    statement = insert.format("OR IGNORE")
    for row in rows:
        if connection.execute("SELECT 1 FROM vacuumed WHERE id = ?", (row[0],)).fetchone():
            ids.append(TaskId(row[0]))  # finished and vacuumed: still not pushed again
            continue
        if connection.execute(statement, row).rowcount:
            ids.append(TaskId(row[0]))
            continue
        if connection.execute("SELECT 1 FROM tasks WHERE id = ?", (row[0],)).fetchone():
            ids.append(TaskId(row[0]))
            continue
        holder = connection.execute(
            "SELECT id FROM tasks WHERE queue = ? AND unique_key = ? "
            "AND status IN ('Pending', 'Running')",
            (queue, row[9]),
        ).fetchone()
        ids.append(TaskId(holder[0]))
    connection.execute("COMMIT")
    return ids


def _vacuum(connection: sqlite3.Connection, queue: str, now: int) -> int:
    """Delete the queue's finished tasks, remembering their ids; how many."""
    finished = "FROM tasks WHERE queue = ? AND status IN ('Done', 'Failed', 'Killed')"
    connection.execute("BEGIN IMMEDIATE")
    try:
        connection.execute(
            f"INSERT OR IGNORE INTO vacuumed (id, at) SELECT id, ? {finished}", (now, queue)
        )
        count: int = connection.execute(f"DELETE {finished}", (queue,)).rowcount
        connection.execute(
            "DELETE FROM vacuumed WHERE rowid <= (SELECT MAX(rowid) FROM vacuumed) - ?",
            (VACUUMED_IDS,),
        )
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    return count


def _delete(connection: sqlite3.Connection, key: str) -> int:
    """Delete the task ``key`` and forget it as vacuumed; how many rows went."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        count: int = connection.execute("DELETE FROM tasks WHERE id = ?", (key,)).rowcount
        count += connection.execute("DELETE FROM vacuumed WHERE id = ?", (key,)).rowcount
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    return count


def _unique_key(ctx: Any) -> str | None:
    """A typed task's uniqueness key from its metadata (``TaskHash``), or None."""
    return typed_unique_key(ctx, "\x00")
