"""RedisStorage: many worker processes on many machines, sharing one Redis server."""

from __future__ import annotations

import contextlib
import math
import socket
from collections.abc import AsyncGenerator, AsyncIterable, Iterable
from types import TracebackType
from typing import Any
from urllib.parse import SplitResult, urlunsplit

import trio

from ..._errors import StorageError
from ..._implementation import Task, TaskId
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
from .._kit._leases import LeaseConfig, LeaseSession, LiveSession, worker_alive
from .._kit._names import check_task_names
from .._kit._sink import push_batches
from .._open import take_options
from .._worker_protocols import WorkerIdentity
from ._client import RedisClient, acquire, redacted, release
from ._keys import QueueKeys
from ._store import RedisStore
from ._sync import SyncProducer

__all__ = ["RedisStorage"]

DEFAULT_URL = "redis://127.0.0.1:6379/0"
DEFAULT_RETENTION = 7 * 24 * 3600.0
_VACUUM_BATCH = 1000

LIVE_WORKERS: set[str] = set()
"""The worker runs of this process that are still running (their sessions are open).

A run of this process that is not here is provably gone (its handle crashed
or was dropped), so :meth:`RedisStorage.resume_abandoned` takes its tasks
back at once, as it does for runs of dead processes on this host."""
"""Tasks per script when vacuuming or resuming everything (a script blocks the server)."""


class RedisStorage(QueueHandle):
    """Tasks in Redis, shared by worker processes on any number of machines.

    ``RedisStorage(url, *, queue="default", namespace="pyapalis", lease=30.0,
    retention=7 days, ...)`` does no I/O; ``async with storage:`` connects (a
    coredis client for the current trio run) and closes; a worker given an
    unopened storage opens it for its run. Keys live under
    ``<namespace>:{<queue>}:`` (one Redis Cluster hash tag per queue; see the
    README for the layout). Requires Redis >= 6.2.

    The delivery model of shared backends (:mod:`pyapalis.backends._kit._leases`):
    each worker run claims up to its free slots plus ``prefetch`` due tasks in
    one Lua script (status Running, owner = the run's id, attempt + 1, lease
    deadline), settles outcomes fenced by owner and attempt (folded into the
    next claim or flushed every few ms), extends every lease it holds with one
    heartbeat script every lease/3, and re-queues expired leases every lease/2
    (or fails the task when no attempts are left). Idle workers block on the
    queue's wake list (BLPOP on a connection of their own), backed by a poll
    of ``poll`` seconds. Finished tasks and their results are deleted
    ``retention`` seconds after they finish (``math.inf`` keeps them).

    Task names (``FiltersTaskNames``): a typed task's ``TASK_NAME`` is stored
    with it, and its ready entry also goes to a per-name set;
    ``storage.only_task_names(names)`` is a view whose consumers claim only
    those names, the one a ``WorkerPool`` consumes.

    Redis failures (a restart, a lost connection, flushed scripts) surface as
    :class:`StorageError`; workers back off and go on, and scripts are loaded
    again on NOSCRIPT. What Redis keeps across a restart is its persistence's
    business (AOF with ``appendfsync everysec`` or ``always``: see the README).

    ==================  ==============  =====================================
    capability          support         notes
    ==================  ==============  =====================================
    TaskSink            supported       push_bulk is one script; ids kept
    FetchById           supported
    Update              supported       not while Running (its worker owns it)
    Reschedule          supported       Pending, final or abandoned tasks
    Vacuum              supported       deletes every finished task
    ResumeById          supported       Failed or Killed tasks
    ResumeAbandoned     supported       dead processes of this host at once
    RegisterWorker      supported       worker runs with heartbeats
    ListWorkers         supported
    ListTasks           supported       push order; by status
    WaitForCompletion   supported       polls the server (any process)
    count_tasks         supported       one pipelined round trip
    list_queues         supported       the namespace's queues (SCAN)
    delete              supported       not while Running
    kill                supported       Pending or Running tasks
    push_sync           supported       from threads, asyncio, sync code
    ==================  ==============  =====================================
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        queue: str = "default",
        namespace: str = "pyapalis",
        lease: float = 30.0,
        retention: float = DEFAULT_RETENTION,
        poll: float = 1.0,
        prefetch: int = 8,
        batch: int = 100,
        codec: Codec | None = None,
        connect_timeout: float = 5.0,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                f"RedisStorage: url must be a redis://, rediss:// or unix:// URL, got {url!r}"
            )
        _check_name(queue, "queue")
        _check_name(namespace, "namespace")
        if not (isinstance(retention, (int, float)) and not isinstance(retention, bool)) or not (
            retention >= 0
        ):
            raise ValueError(f"RedisStorage: retention must be seconds >= 0, got {retention!r}")
        if not (
            isinstance(connect_timeout, (int, float))
            and math.isfinite(connect_timeout)
            and connect_timeout > 0
        ):
            raise ValueError(
                f"RedisStorage: connect_timeout must be seconds > 0, got {connect_timeout!r}"
            )
        self._config = LeaseConfig(lease=lease, prefetch=prefetch, batch=batch, poll=poll)
        self._url = url
        self._queue = queue
        self._namespace = namespace
        self._retention = float(retention)
        self._codec: Codec = codec if codec is not None else JsonCodec()
        self._connect_timeout = float(connect_timeout)
        self._keys = QueueKeys(namespace, queue)
        self._clients: dict[trio.lowlevel.TrioToken, RedisClient] = {}
        self._direct: tuple[trio.lowlevel.TrioToken, LeaseSession] | None = None
        self._registered: dict[str, WorkerIdentity] = {}
        self._producer: SyncProducer | None = None
        self._names: frozenset[str] | None = None  # a FiltersTaskNames view's (None: all)

    def queue(self, name: str) -> RedisStorage:
        """A handle on another queue of the same server and namespace (same settings).

        Every handle of a trio run shares the run's connection to the server.
        """
        _check_name(name, "queue")
        other = RedisStorage(
            self._url,
            queue=name,
            namespace=self._namespace,
            lease=self._config.lease,
            retention=self._retention,
            poll=self._config.poll,
            prefetch=self._config.prefetch,
            batch=self._config.batch,
            codec=self._codec,
            connect_timeout=self._connect_timeout,
        )
        return other

    def only_task_names(self, names: Iterable[str]) -> RedisStorage:
        """A view of this queue whose takes and worker sessions claim only typed tasks
        named in ``names`` (``FiltersTaskNames``).

        Tasks of other names, and plain tasks, stay Pending for another
        consumer. The view is a handle like :meth:`queue`'s (it shares the
        run's connection; a worker run opens and closes it as needed).
        """
        found = check_task_names(names, "RedisStorage.only_task_names")
        view = self.queue(self._queue)
        view._names = found
        return view

    @property
    def url(self) -> str:
        """The server's URL, password hidden."""
        return redacted(self._url)

    @property
    def namespace(self) -> str:
        return self._namespace

    @property
    def lease(self) -> float:
        return self._config.lease

    @property
    def is_open(self) -> bool:
        """True if this handle holds a client in the current trio run."""
        return trio.lowlevel.current_trio_token() in self._clients

    def __repr__(self) -> str:
        names = self._names_repr()
        return (
            f"RedisStorage({self.url!r}, queue={self._queue!r}, "
            f"namespace={self._namespace!r}{names})"
        )

    # -- lifecycle -----------------------------------------------------------------

    async def _client(self) -> RedisClient:
        """This handle's client in the current trio run (acquired on first use)."""
        token = trio.lowlevel.current_trio_token()
        client = self._clients.get(token)
        if client is None:
            client = await acquire(self._url, connect_timeout=self._connect_timeout)
            self._clients[token] = client
        return client

    async def __aenter__(self) -> RedisStorage:
        """Open the handle for the current trio run (no round trip yet)."""
        await self._client()
        return self

    async def aclose(self) -> None:
        """Release this handle's client in the current run and stop the synchronous producer.

        A handle used without ``async with`` opens itself at first use; its
        client closes at the latest when the trio run ends.
        """
        producer, self._producer = self._producer, None
        if producer is not None:
            await trio.to_thread.run_sync(producer.close)
        token = trio.lowlevel.current_trio_token()
        direct, self._direct = self._direct, None
        if direct is not None and direct[0] is token:
            try:
                await direct[1].__aexit__(None, None, None)
            finally:
                LIVE_WORKERS.discard(direct[1].worker.id)
        await self._release(token)

    def crash(self) -> None:
        """Drop this handle as a killed process would: nothing flushed, nothing handed back.

        Its tasks come back through :meth:`resume_abandoned` (at once: its
        worker runs are provably gone) or when their leases expire. For tests
        of recovery; the client stays open until the run ends.
        """
        direct, self._direct = self._direct, None
        if direct is not None:
            LIVE_WORKERS.discard(direct[1].worker.id)
        self._clients.clear()

    async def _release(self, token: trio.lowlevel.TrioToken) -> None:
        if self._clients.pop(token, None) is not None:
            await release(self._url, connect_timeout=self._connect_timeout)

    async def _store(self) -> RedisStore:
        store = self._unbound_store()
        store.bind(await self._client())
        return store

    def _unbound_store(self) -> RedisStore:
        return RedisStore(None, self._keys, self._codec, self._retention, self._keep_workers())

    def _keep_workers(self) -> float:
        """How long a worker run stays listed without a heartbeat: three leases."""
        return 3 * self._config.lease

    # -- WorkerSessions ------------------------------------------------------------

    def session(self, worker: WorkerIdentity) -> _RunSession:
        """The session of one worker run (opens the storage for the run if needed)."""
        return _RunSession(self, worker)

    # -- Backend (the handle as a consumer of its own) ---------------------------------

    async def _own_session(self) -> LeaseSession:
        """The handle's own session in this run: no prefetch, outcomes written at once."""
        token = trio.lowlevel.current_trio_token()
        direct = self._direct
        if direct is None or direct[0] is not token:
            config = self._config
            identity = WorkerIdentity.mint(f"{self._queue}-direct", 1)
            session = LeaseSession(
                await self._store(),
                identity,
                LeaseConfig(lease=config.lease, prefetch=0, batch=config.batch, poll=config.poll),
                self._names,
            )
            LIVE_WORKERS.add(identity.id)
            self._direct = direct = (token, session)
        return direct[1]

    def bind(self) -> None:
        """Nothing to learn: the handle opens on first use."""

    def take_nowait(self) -> Task | None:
        """Never a round trip: a task only when the handle's own session holds one."""
        direct = self._direct
        return direct[1].take_nowait() if direct is not None else None

    async def take(self) -> Task:
        """Claim the next due task under the handle's own worker id (no heartbeat)."""
        return await (await self._own_session()).take()

    async def ack(
        self, task: Task, status: Status, result: Any, error: BaseException | None
    ) -> None:
        await (await self._own_session()).ack_now(task, status, result, error)

    async def retry(self, task: Task, delay: float, error: BaseException) -> None:
        await (await self._own_session()).retry_now(task, delay, error)

    async def release(self, task: Task) -> None:
        await (await self._own_session()).release_now(task)

    # -- TaskSink ------------------------------------------------------------------

    async def push(self, args: Any) -> TaskId:
        """Store ``args`` as a new task, due now."""
        [task_id] = await self.push_bulk([args])
        return task_id

    async def push_bulk(self, items: Iterable[Any]) -> list[TaskId]:
        """Store every item as a task in one script (all or nothing); their ids."""
        store = await self._store()
        now = run_clock().wall_now()
        tasks = [store.new_task(Task(args), now=now) for args in items]
        return await store.push(tasks, now)

    async def push_task(self, task: Task) -> TaskId:
        """Store a prepared task (its id, run_at, attempts, limits, priority, metadata).

        A task without an id gets one (set on ``task``). A stored id returns
        that id and stores nothing; a typed task whose uniqueness key is held
        by a Pending or Running task returns that task's id (atomically,
        across processes).
        """
        check_task(task, "push_task: task")
        store = await self._store()
        if task.parts.task_id is None:
            task.parts.task_id = TaskId.generate()
        new = store.new_task(task, _unique_key(task))
        [task_id] = await store.push([new], run_clock().wall_now())
        return task_id

    async def push_stream(self, items: AsyncIterable[Any]) -> int:
        """Store what an async iterable yields, in batches of what is ready; the count."""
        return await push_batches(self.push_bulk, items, 100)

    # -- the synchronous producer --------------------------------------------------

    def _sync(self) -> SyncProducer:
        producer = self._producer
        if producer is None:
            producer = self._producer = SyncProducer(
                self._url, {"connect_timeout": self._connect_timeout}, self._keys, self._codec
            )
        return producer

    def push_sync(self, args: Any) -> TaskId:
        """``push`` for code outside trio (threads, Django/Flask views, asyncio).

        Blocks until Redis has the task. Uses a thread of its own with its own
        connection, started at the first call and closed by :meth:`close_sync`
        or :meth:`aclose`. Not for a trio thread: there, ``await push``.
        """
        [task_id] = self._sync().push([Task(args)], stamp_now=True)
        return task_id

    def push_bulk_sync(self, items: Iterable[Any]) -> list[TaskId]:
        """``push_bulk`` for code outside trio (see :meth:`push_sync`)."""
        return self._sync().push([Task(args) for args in items], stamp_now=True)

    def push_task_sync(self, task: Task) -> TaskId:
        """``push_task`` for code outside trio (see :meth:`push_sync`)."""
        check_task(task, "push_task_sync: task")
        if task.parts.task_id is None:
            task.parts.task_id = TaskId.generate()
        [task_id] = self._sync().push([task], stamp_now=False, unique=[_unique_key(task)])
        return task_id

    def close_sync(self) -> None:
        """Stop the synchronous producer's thread (from any thread but a trio one)."""
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.close()

    # -- capabilities ----------------------------------------------------------------

    async def fetch_by_id(self, task_id: TaskId | str) -> Task | None:
        """The stored task with this id (any status), or None."""
        [task] = await (await self._store()).fetch(
            [str(check_task_id(task_id, "fetch_by_id: task_id"))]
        )
        return task

    async def update(self, task: Task) -> None:
        """Store the task's parts: status, attempts, run_at, limits, priority, metadata.

        Pending queues it at its run_at; a final status finishes it. A Running
        task belongs to its worker (StorageError); an unknown id raises
        KeyError; Running and Queued cannot be set.
        """
        check_task(task, "update: task")
        status = task.parts.status
        if status is Status.Running or status is Status.Queued:
            raise ValueError(
                f"update: status must be Pending, Done, Failed or Killed, got {status.value}"
            )
        task_id = _id_text(task.parts.task_id, "update")
        outcome = await (await self._store()).update(task, run_clock().wall_now(), "update")
        _check_change(outcome, task_id, "update")

    async def reschedule(self, task: Task, delay: float) -> None:
        """Queue a stored task again ``delay`` seconds from now, its attempts kept."""
        check_task(task, "reschedule: task")
        delay = check_delay(delay, "reschedule: delay")
        task_id = _id_text(task.parts.task_id, "reschedule")
        store = await self._store()
        [stored] = await store.fetch([task_id])
        if stored is None:
            raise KeyError(f"reschedule: unknown task id {task_id!r}")
        now = run_clock().wall_now()
        stored.parts.status = Status.Pending
        stored.parts.run_at = now + delay
        outcome = await store.update(stored, now, "reschedule")
        _check_change(outcome, task_id, "reschedule")

    async def vacuum(self) -> int:
        """Delete every finished task of this queue now; how many.

        Their ids stay known for another ``retention`` (at most the last
        100,000): a ``push_task`` of one stores nothing, so vacuum never reopens
        a periodic tick. :meth:`delete` of such an id forgets it.
        """
        store = await self._store()
        removed = 0
        while True:
            _, deleted = await store.recover_and_expire(
                run_clock().wall_now(), 0, "+inf", _VACUUM_BATCH
            )
            removed += deleted
            if deleted < _VACUUM_BATCH:
                return removed

    async def delete(self, task_id: TaskId | str) -> bool:
        """Forget a task for good (or the remembered id of a deleted one); False for an
        unknown id. A Running task raises StorageError."""
        key = str(check_task_id(task_id, "delete: task_id"))
        outcome = await (await self._store()).delete(key)
        if outcome == -1:
            raise StorageError(f"RedisStorage.delete: task {key} is Running; its worker owns it")
        return outcome == 1

    async def resume_by_id(self, task_id: TaskId | str) -> bool:
        """Make a Failed or Killed task Pending again with a fresh attempt budget, due now."""
        key = str(check_task_id(task_id, "resume_by_id: task_id"))
        return await (await self._store()).resume(key, run_clock().wall_now())

    async def resume_abandoned(self) -> int:
        """Re-queue Running tasks whose worker is gone; how many.

        At once for worker runs provably dead (their process on this host is
        gone); the others when their lease expires. Each resumption counts the
        dead execution as an attempt (Failed when none are left).
        """
        store = await self._store()
        now = run_clock().wall_now()
        host = socket.gethostname()
        dead = [
            worker_id
            for worker_id, worker_host, pid in await store.worker_hosts(now)
            if worker_host == host and pid > 0 and not worker_alive(pid, worker_id, LIVE_WORKERS)
        ]
        total = 0
        if dead:
            recovered, _ = await store.recover_and_expire(now, 0, owners=dead)
            total += recovered
        while True:
            recovered, _ = await store.recover_and_expire(now, _VACUUM_BATCH)
            total += recovered
            if recovered < _VACUUM_BATCH:
                return total

    async def register_worker(self, name: str) -> None:
        """Record ``name`` as a live worker of this process (a heartbeat)."""
        check_name(name, "register_worker: name")
        identity = self._registered.get(name)
        if identity is None:
            identity = self._registered[name] = WorkerIdentity.mint(name, 0)
        await (await self._store()).heartbeat(identity, run_clock().wall_now(), self._config.lease)

    async def list_workers(self) -> list[WorkerInfo]:
        """Worker runs that beat within the last lease (they beat every lease/3), by name."""
        store = await self._store()
        workers = await store.workers(run_clock().wall_now(), self._config.lease)
        return sorted(workers, key=lambda info: (info.name, info.started_at))

    async def list_tasks(
        self, status: Status | str | None = None, page: int = 1, page_size: int = 10
    ) -> list[Task]:
        """This queue's tasks, a page at a time: all or Pending ones in push order, Running
        ones by lease deadline, finished ones by finish time."""
        status = check_status_filter(status, "list_tasks: status")
        check_page(page, "list_tasks: page")
        check_page(page_size, "list_tasks: page_size")
        return await (await self._store()).page(status, (page - 1) * page_size, page_size)

    async def kill_by_id(self, task_id: TaskId | str, reason: str = "killed") -> bool:
        """Make a Pending or Running task Killed, with ``reason`` as its error.

        A Running task's worker finishes its execution, but its ack is fenced
        off, so the task stays Killed. False for an unknown id or a finished task.
        """
        key = str(check_task_id(task_id, "kill_by_id: task_id"))
        if not isinstance(reason, str):
            raise TypeError(f"kill_by_id: reason must be a str, got {reason!r}")
        return await (await self._store()).kill(key, reason, run_clock().wall_now())

    async def count_tasks(self) -> dict[Status, int]:
        """How many of this queue's tasks are in each status (zeros included)."""
        return await (await self._store()).counts()

    async def list_queues(self) -> list[str]:
        """The namespace's queues that hold tasks, and this handle's own, sorted."""
        found = await (await self._store()).queues(self._namespace)
        return sorted({self._queue, *found})

    async def count(self) -> int:
        """How many tasks the queue holds (any status)."""
        return await (await self._store()).count()

    async def purge(self) -> int:
        """Delete every key of this queue (every task, worker record and index); how many keys."""
        return await (await self._store()).drop_queue()

    # -- WaitForCompletion -------------------------------------------------------------

    async def check_status(self, task_ids: Iterable[TaskId | str]) -> list[TaskResult]:
        """Each task's status (and outcome once final), in order; KeyError for unknown ids."""
        keys = [str(key) for key in check_task_ids(task_ids, "check_status: task_ids")]
        results = await (await self._store()).results(keys)
        out = []
        for key, result in zip(keys, results, strict=True):
            if result is None:
                raise KeyError(f"check_status: unknown task id {key!r}")
            out.append(result)
        return out

    async def wait_for_single(self, task_id: TaskId | str) -> TaskResult:
        """Wait until the task is final (polling the server) and return its result."""
        key = str(check_task_id(task_id, "wait_for_single: task_id"))
        async with contextlib.aclosing(self._finished([key], "wait_for_single")) as results:
            async for result in results:
                return result
        raise AssertionError("unreachable")  # pragma: no cover

    async def wait_for(self, task_ids: Iterable[TaskId | str]) -> AsyncGenerator[TaskResult, None]:
        """Yield each task's result once final: final ones first, then as they finish.

        Polls the server every 5 ms at first, backing off to 200 ms while
        nothing finishes (any process may finish them). KeyError for an
        unknown (or deleted) id.
        """
        keys = list(
            dict.fromkeys(str(key) for key in check_task_ids(task_ids, "wait_for: task_ids"))
        )
        async with contextlib.aclosing(self._finished(keys, "wait_for")) as results:
            async for result in results:
                yield result

    async def _finished(self, waiting: list[str], where: str) -> AsyncGenerator[TaskResult, None]:
        delay = 0.005
        while waiting:
            results = await (await self._store()).results(waiting)
            still = []
            progressed = False
            for key, result in zip(waiting, results, strict=True):
                if result is None:
                    raise KeyError(f"{where}: unknown task id {key!r}")
                if result.is_final:
                    progressed = True
                    yield result
                else:
                    still.append(key)
            waiting = still
            if waiting:
                delay = 0.005 if progressed else min(delay * 2, 0.2)
                await trio.sleep(delay)


class _RunSession(LiveSession):
    """A worker run's session: the storage opened for the run if needed, this process's
    live runs kept up to date (see :data:`LIVE_WORKERS`)."""

    live = LIVE_WORKERS

    def __init__(self, storage: RedisStorage, worker: WorkerIdentity) -> None:
        self._unbound = storage._unbound_store()
        super().__init__(self._unbound, worker, storage._config, storage.task_names)
        self._storage = storage
        self._opened = False

    async def __aenter__(self) -> LeaseSession:
        storage = self._storage
        self._opened = not storage.is_open
        self._unbound.bind(await storage._client())
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
            if self._opened:
                with trio.CancelScope(shield=True):
                    await self._storage.aclose()


def _check_name(value: object, what: str) -> None:
    check_name(value, f"RedisStorage: {what}")
    assert isinstance(value, str)
    if any(c in value for c in "{}") or any(ord(c) < 32 for c in value):
        raise ValueError(
            f"RedisStorage: {what} must not contain braces or control characters, got {value!r}"
        )


def _id_text(task_id: object, where: str) -> str:
    """The id of a task given to update/reschedule (one that was never pushed has none)."""
    if task_id is None:
        raise ValueError(f"{where}: the task has no id (it was never pushed)")
    return str(check_task_id(task_id, f"{where}: task id"))


def _check_change(outcome: int, task_id: str, what: str) -> None:
    if outcome == 0:
        raise KeyError(f"{what}: unknown task id {task_id!r}")
    if outcome == -1:
        raise StorageError(f"RedisStorage.{what}: task {task_id} is Running; its worker owns it")


def _unique_key(task: Task) -> str:
    """The uniqueness key of a typed task (its name and hash), or ''."""
    from ...typed._unique import info_of  # the typed layer sits above the backends

    info = info_of(task)
    if info is None:
        return ""
    name, uniq = info.get("task_name"), info.get("uniq")
    if isinstance(name, str) and isinstance(uniq, str):
        return f"{len(name)}:{name}:{uniq}"
    return ""


def from_url(url: SplitResult, options: dict[str, str]) -> RedisStorage:
    """``open_backend("redis://host:port/db?queue=emails&lease=10")``."""
    kwargs = take_options(
        url,
        options,
        {
            "queue": str,
            "namespace": str,
            "lease": float,
            "retention": float,
            "poll": float,
            "prefetch": int,
            "batch": int,
        },
    )
    return RedisStorage(urlunsplit((url.scheme, url.netloc, url.path, "", "")), **kwargs)
