"""SqliteStorage: the public handle on a SQLite task file shared by many processes."""

from __future__ import annotations

import contextlib
import math
import sqlite3
import time
from collections.abc import AsyncGenerator, AsyncIterable, Iterable
from types import TracebackType
from typing import Any

import outcome
import trio

from ..._errors import CodecError, StorageError, TaskError
from ..._implementation import Attempt, Parts, Task, TaskId
from ..._status import Status
from .._capabilities import TaskResult, WorkerInfo
from .._codec import Codec, JsonCodec
from .._kit._clock import run_clock
from .._kit._leases import LeaseConfig, LeaseSession
from .._worker_protocols import WorkerIdentity
from ._db import SYNCHRONOUS, Database, notify
from ._store import LIVE_WORKERS, ROW_COLUMNS, Row, SqliteStore, ms_ceil

__all__ = ["SqliteStorage"]

_MAX_INT = 2**63 - 1


class SqliteStorage:
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

    Delivery (DESIGN §8, :mod:`pyapalis.backends._kit._leases`): each worker
    run claims tasks under a fresh worker id with a ``lease`` (seconds); a
    heartbeat every lease/3 extends the leases it holds; acks are fenced by
    owner and attempt and batched; any live worker re-queues expired leases
    every lease/2 (Failed when no attempts are left). Claims take the free
    slots plus ``prefetch`` tasks, at most ``batch``. An idle worker notices a
    push from this process at once and from another within ~10 ms
    (``PRAGMA data_version``), and polls every ``poll`` seconds whatever happens.
    The storage itself is also a Backend (``take``/``ack``...) under a worker
    id of its own, without prefetch or heartbeat.

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
    Vacuum                  supported    removes this queue's finished tasks
    delete                  supported
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
    ) -> None:
        path = str(path) if not isinstance(path, str) else path
        if not path:
            raise ValueError("SqliteStorage: path must be a non-empty file path")
        if not isinstance(queue, str) or not queue:
            raise ValueError(f"SqliteStorage: queue must be a non-empty str, got {queue!r}")
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
        self._db.acquire()
        self._codec = codec if codec is not None else JsonCodec()
        self._queue = queue
        self._store = SqliteStore(self._db, queue, self._codec)
        self._direct: LeaseSession | None = None
        self._registered: dict[str, WorkerIdentity] = {}
        self._closed = False

    # -- handle ---------------------------------------------------------------------

    @property
    def path(self) -> str:
        return self._db.path

    @property
    def queue_name(self) -> str:
        return self._queue

    @property
    def lease(self) -> float:
        return self._leases.lease

    def queue(self, name: str, *, codec: Codec | None = None) -> SqliteStorage:
        """A handle on queue ``name`` of the same file, sharing this handle's connection."""
        db = self._db
        return SqliteStorage(
            db.path,
            queue=name,
            lease=self._leases.lease,
            synchronous=db.synchronous,
            busy_timeout=db.busy_timeout,
            codec=codec if codec is not None else self._codec,
            prefetch=self._leases.prefetch,
            batch=self._leases.batch,
            poll=self._leases.poll,
            _db=db,
        )

    def __repr__(self) -> str:
        return f"SqliteStorage({self.path!r}, queue={self._queue!r})"

    async def open(self) -> SqliteStorage:
        """Open the file now (idempotent); a call that needs it opens it anyway."""
        self._check_open()
        await self._db.open()
        return self

    async def __aenter__(self) -> SqliteStorage:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

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
        self._db.release()

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(f"SqliteStorage {self.path}: this handle is closed")

    # -- WorkerSessions ---------------------------------------------------------------

    def session(self, worker: WorkerIdentity) -> LeaseSession:
        """The session of one worker run (see :mod:`pyapalis.backends._kit._leases`)."""
        self._check_open()
        return _Session(self, worker, self._leases)

    # -- Backend (the handle as a consumer of its own) ---------------------------------

    def _own_session(self) -> LeaseSession:
        direct = self._direct
        if direct is None:
            self._check_open()
            identity = WorkerIdentity.mint(f"{self._queue}-direct", 1)
            LIVE_WORKERS.add(identity.id)
            direct = self._direct = LeaseSession(self._store, identity, self._direct_config)
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
        session = self._own_session()
        await session.ack(task, status, result, error)
        await session.flush()

    async def retry(self, task: Task, delay: float, error: BaseException) -> None:
        session = self._own_session()
        await session.retry(task, delay, error)
        await session.flush()

    async def release(self, task: Task) -> None:
        session = self._own_session()
        await session.release(task)
        await session.flush()

    # -- TaskSink ------------------------------------------------------------------

    async def push(self, args: Any) -> TaskId:
        """Queue ``args`` as a new task due now; its id once it is committed."""
        [task_id] = await self._insert([Task(args)])
        return task_id

    async def push_bulk(self, items: Iterable[Any]) -> list[TaskId]:
        """Queue every item in one transaction (all or nothing)."""
        return await self._insert([Task(item) for item in items])

    async def push_task(self, task: Task) -> TaskId:
        """Queue a prepared task, keeping its id, run_at, attempts, limits and metadata."""
        if not isinstance(task, Task):
            raise TypeError(f"push_task: expected a Task, got {type(task).__name__}")
        [task_id] = await self._insert([task])
        return task_id

    async def push_stream(self, items: AsyncIterable[Any]) -> int:
        """Queue every item of an async iterable, committing in batches of up to 1000."""
        count = 0
        batch: list[Task] = []
        async for item in items:
            batch.append(Task(item))
            if len(batch) >= 1000:
                count += len(await self._insert(batch))
                batch = []
        if batch:
            count += len(await self._insert(batch))
        return count

    def push_sync(self, args: Any) -> TaskId:
        """Queue ``args`` from code that is not trio (threads, web views, asyncio).

        Blocks the calling thread until the task is committed (its own
        connection per thread). Inside a trio run use ``await push()``.
        """
        [task_id] = self._insert_sync([Task(args)])
        return task_id

    def push_task_sync(self, task: Task) -> TaskId:
        """:meth:`push_task` for code that is not trio (see :meth:`push_sync`)."""
        if not isinstance(task, Task):
            raise TypeError(f"push_task_sync: expected a Task, got {type(task).__name__}")
        [task_id] = self._insert_sync([task])
        return task_id

    def _insert_sync(self, tasks: list[Task]) -> list[TaskId]:
        try:
            trio.lowlevel.current_trio_token()
        except RuntimeError:
            pass
        else:
            raise RuntimeError(
                "SqliteStorage.push_sync would block the trio thread: use await push()"
            )
        self._check_open()
        rows, fast = self._rows(tasks)
        ids = self._db.run_sync("pushing tasks", lambda c: _insert_rows(c, rows, fast, self._queue))
        notify(self._db.key)
        return ids

    async def _insert(self, tasks: list[Task]) -> list[TaskId]:
        self._check_open()
        if not tasks:
            await trio.lowlevel.checkpoint()
            return []
        rows, fast = self._rows(tasks)
        queue = self._queue
        ids = await self._db.run("pushing tasks", lambda c: _insert_rows(c, rows, fast, queue))
        notify(self._db.key)
        return ids

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
                )
            )
        return rows, fast

    # -- capabilities ------------------------------------------------------------------

    async def fetch_by_id(self, task_id: TaskId | str) -> Task | None:
        """The stored task (any queue of the file), or None."""
        key = _id_text(task_id, "fetch_by_id")
        row = await self._db.run(
            "reading a task",
            lambda c: c.execute(f"SELECT {ROW_COLUMNS} FROM tasks WHERE id = ?", (key,)).fetchone(),
        )
        return None if row is None else self._task_of(Row(*row))

    async def list_tasks(
        self, status: Status | None = None, page: int = 1, page_size: int = 10
    ) -> list[Task]:
        """This queue's tasks in push order, optionally of one status; pages start at 1."""
        if status is not None and not isinstance(status, Status):
            raise TypeError(f"list_tasks: status must be a Status or None, got {status!r}")
        for name, value in (("page", page), ("page_size", page_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"list_tasks: {name} must be an int >= 1, got {value!r}")
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

    async def update(self, task: Task) -> None:
        """Store the task's parts: status, attempts, run_at, limits, priority, metadata."""
        parts = task.parts
        key = _id_text(parts.task_id, "update")
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
        notify(self._db.key)

    async def reschedule(self, task: Task, delay: float) -> None:
        """Queue the task again ``delay`` seconds from now (Pending, its attempts kept)."""
        if not (isinstance(delay, (int, float)) and math.isfinite(delay) and delay >= 0):
            raise ValueError(f"reschedule: delay must be >= 0 seconds, got {delay!r}")
        key = _id_text(task.parts.task_id, "reschedule")
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
        notify(self._db.key)

    async def vacuum(self) -> int:
        """Remove this queue's finished tasks (Done, Failed, Killed); how many."""
        count: int = await self._db.run(
            "vacuuming",
            lambda c: (
                c.execute(
                    "DELETE FROM tasks WHERE queue = ? AND status IN ('Done', 'Failed', 'Killed')",
                    (self._queue,),
                ).rowcount
            ),
        )
        return count

    async def delete(self, task_id: TaskId | str) -> bool:
        """Forget one task (any status); False if the file does not hold it."""
        key = _id_text(task_id, "delete")
        count = await self._db.run(
            "deleting a task",
            lambda c: c.execute("DELETE FROM tasks WHERE id = ?", (key,)).rowcount,
        )
        if count:
            notify(self._db.key)
        return bool(count)

    async def resume_by_id(self, task_id: TaskId | str) -> bool:
        """Make a Failed, Killed or Running task Pending again with a fresh attempt budget."""
        key = _id_text(task_id, "resume_by_id")
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
            notify(self._db.key)
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
        if not isinstance(name, str) or not name:
            raise ValueError(f"register_worker: name must be a non-empty str, got {name!r}")
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
        keys = [_id_text(task_id, "check_status") for task_id in task_ids]
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
        async with contextlib.aclosing(self.wait_for([task_id])) as results:
            async for result in results:
                return result
        raise AssertionError("unreachable")  # pragma: no cover

    async def wait_for(self, task_ids: Iterable[TaskId | str]) -> AsyncGenerator[TaskResult, None]:
        """Yield each task's result once it is final, whichever process runs it.

        Final ones first, in the order given, then in completion order. A
        commit in this process wakes the wait at once, another process's
        within ~10 ms (``data_version``), and it re-reads every second anyway.
        Raises ``KeyError`` for an id the file does not hold (or that is deleted).
        """
        keys = list(dict.fromkeys(_id_text(task_id, "wait_for") for task_id in task_ids))
        db = self._db
        waiting = keys
        while waiting:
            generation = db.hub.generation
            version = await db.read_data_version()
            found = await self._statuses(waiting)
            missing = [key for key in waiting if key not in found]
            if missing:
                raise KeyError(f"wait_for: task {missing[0]!r} is not in {self.path}")
            still = []
            for key in waiting:
                result = found[key]
                if result.is_final:
                    yield result
                else:
                    still.append(key)
            waiting = still
            if waiting:
                await db.changed_since(generation, version, 1.0)

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


class _Session(LeaseSession):
    """A worker run's session: opens the storage and marks the worker live in this process."""

    def __init__(self, storage: SqliteStorage, worker: WorkerIdentity, config: LeaseConfig) -> None:
        super().__init__(storage._store, worker, config)
        self._storage = storage

    async def __aenter__(self) -> LeaseSession:
        await self._storage.open()
        LIVE_WORKERS.add(self.worker.id)
        return await super().__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await super().__aexit__(exc_type, exc, tb)
        finally:
            LIVE_WORKERS.discard(self.worker.id)


def _insert_rows(
    connection: sqlite3.Connection, rows: list[tuple[Any, ...]], fast: bool, queue: str
) -> list[TaskId]:
    """Insert rows in one transaction; an existing id or a live uniqueness key gives the holder."""
    insert = (
        "INSERT {} INTO tasks (id, queue, args, meta, attempt, max_attempts, timeout, priority, "
        "run_at, unique_key, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'Pending')"
    )
    connection.execute("BEGIN IMMEDIATE")
    if fast:
        connection.executemany(insert.format(""), rows)
        connection.execute("COMMIT")
        return [TaskId(row[0]) for row in rows]
    ids = []
    statement = insert.format("OR IGNORE")
    for row in rows:
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


def _unique_key(ctx: Any) -> str | None:
    """A typed task's uniqueness key from its metadata (``TaskHash``), or None."""
    if not isinstance(ctx, dict):
        return None
    from ...typed._unique import INFO_KEY  # (typed imports backends: import at use)

    info = ctx.get(INFO_KEY)
    if not isinstance(info, dict):
        return None
    name, uniq = info.get("task_name"), info.get("uniq")
    if isinstance(name, str) and isinstance(uniq, str):
        return f"{name}\x00{uniq}"
    return None


def _id_text(task_id: object, what: str) -> str:
    if isinstance(task_id, TaskId):
        return str(task_id)
    if isinstance(task_id, str) and task_id:
        return task_id
    raise TypeError(f"{what}: expected a TaskId or a non-empty str, got {task_id!r}")
