"""One queue in Redis: the LeaseStore of the shared-backend model, and the capabilities' queries.

:class:`RedisStore` implements :class:`~pyapalis.backends._kit._leases.LeaseStore`
(``exchange``, ``heartbeat``, ``recover``, ``retire``, ``wait_wake``) with one
Lua script per call (:mod:`._scripts`), and what :class:`RedisStorage` needs
beyond it (push, fetch, update, delete, listing). It converts between tasks
and the hash fields of a task; the storage checks arguments and owns the
lifecycle.

The wake-up: pushes and re-queues leave markers on the queue's ``wake`` list;
an idle session blocks on it with ``BLPOP`` (coredis gives a blocking command
a connection of its own), bounded by the session's poll and by the next
scheduled task, so a lost marker only delays; a push from this process wakes
it the same way (its marker comes back within a round trip). Under a virtual
clock (tests) an idle session waits on trio's clock instead, woken by this
run's own pushes (:class:`_LocalWake`): a blocking pop cut short at every
virtual deadline would cost a reconnection each time.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import trio

from ..._errors import CodecError, StorageError
from ..._implementation import Attempt, Parts, Task, TaskId
from ..._status import Status
from .._capabilities import TaskResult, WorkerInfo
from .._codec import Codec
from .._kit._leases import Claim, Claimed, Settlement
from .._kit._names import task_name_of
from .._worker_protocols import WorkerIdentity
from ._client import RedisClient
from ._keys import QueueKeys
from ._scripts import (
    DELETE,
    EXCHANGE,
    HEARTBEAT,
    KILL,
    PUSH,
    RECOVER,
    RESUME,
    RETIRE,
    UPDATE,
)

__all__ = ["NewTask", "RedisStore", "sort_prefix", "to_ms"]

INT64_MAX = 2**63 - 1

logger = logging.getLogger("pyapalis.redis")

_FINAL_KIND = {Status.Done: b"D", Status.Failed: b"F", Status.Killed: b"K"}
_FIELDS = (b"a", b"m", b"s", b"n", b"r", b"x", b"T", b"p", b"v", b"e")


def to_ms(seconds: float) -> int:
    """Wall seconds as whole milliseconds, rounded down (now, deadlines)."""
    return math.floor(seconds * 1000.0)


def due_ms(seconds: float) -> int:
    """A run_at as whole milliseconds, rounded up: a task is never due early."""
    return math.ceil(seconds * 1000.0)


def sort_prefix(priority: int) -> str:
    """16 hex digits that sort a higher priority first (the whole 64-bit range)."""
    return f"{INT64_MAX - priority:016x}"


def _optional(value: bytes | None) -> bytes | None:
    return value if value else None


@dataclass(frozen=True, slots=True)
class NewTask:
    """A task as the push script stores it (already encoded)."""

    task_id: str
    args: bytes
    meta: bytes
    run_at_ms: int
    """When it is due, in whole ms (rounded up from the task's run_at: never early)."""
    max_attempts: int | None
    timeout: float | None
    priority: int
    unique: str
    attempts: int
    task_name: str
    """The envelope's task name (``_kit._names.task_name_of``), or '' (none)."""

    def fields(self) -> list[Any]:
        return [
            self.task_id,
            self.args,
            self.meta,
            self.run_at_ms,
            "" if self.max_attempts is None else self.max_attempts,
            "" if self.timeout is None else repr(self.timeout),
            self.priority,
            sort_prefix(self.priority),
            self.unique,
            self.attempts,
            self.task_name,
        ]


class _LocalWake:
    """This run's idle waiters, by queue: woken by this run's pushes and re-queues."""

    __slots__ = ("_events",)

    def __init__(self) -> None:
        self._events: dict[str, trio.Event] = {}

    def event(self, prefix: str) -> trio.Event:
        event = self._events.get(prefix)
        if event is None:
            event = self._events[prefix] = trio.Event()
        return event

    def wake(self, prefix: str) -> None:
        event = self._events.pop(prefix, None)
        if event is not None:
            event.set()


_LOCAL_WAKE: trio.lowlevel.RunVar[_LocalWake] = trio.lowlevel.RunVar("pyapalis_redis_wake")


def _local_wake() -> _LocalWake:
    try:
        return _LOCAL_WAKE.get()
    except LookupError:
        local = _LocalWake()
        _LOCAL_WAKE.set(local)
        return local


class RedisStore:
    """One queue of one Redis server, for one trio run's client."""

    __slots__ = ("_client", "_codec", "_keep_workers", "_keys", "_retention_ms")

    def __init__(
        self,
        client: RedisClient | None,
        keys: QueueKeys,
        codec: Codec,
        retention: float,
        keep_workers: float,
    ) -> None:
        self._client = client
        self._keys = keys
        self._codec = codec
        self._retention_ms = -1 if math.isinf(retention) else to_ms(retention)
        self._keep_workers = max(1, to_ms(keep_workers))

    @property
    def keys(self) -> QueueKeys:
        return self._keys

    @property
    def client(self) -> RedisClient:
        """The client of the trio run this store serves (StorageError before :meth:`bind`)."""
        client = self._client
        if client is None:
            raise StorageError(f"the store of {self._keys.prefix!r} is not open yet")
        return client

    def bind(self, client: RedisClient) -> None:
        """Serve the trio run of ``client`` (a session's store is bound when it opens)."""
        self._client = client

    # -- LeaseStore -----------------------------------------------------------------

    async def exchange(
        self,
        worker: WorkerIdentity,
        settle: Sequence[Settlement],
        limit: int,
        now: float,
        lease: float,
        *,
        names: frozenset[str] | None = None,
    ) -> Claim:
        keys = self._keys
        args: list[Any] = [
            keys.prefix,
            worker.id,
            to_ms(now),
            max(1, to_ms(lease)),
            limit,
            max(limit, 256),
            0 if names is None else len(names),
        ]
        if names is not None:
            args.extend(sorted(names))
        for item in settle:
            args.extend(self._settlement(item))
        reply = await self.client.run(EXCHANGE, keys.ready, args)
        if settle:
            _local_wake().wake(keys.prefix)
        next_due = None if reply[1] is None else (int(reply[1]) + 0.5) / 1000.0
        tasks: list[Claimed] = []
        broken: list[Settlement] = []
        for index in range(2, len(reply), 8):
            task_id, args_raw, meta, attempt, run_at, most, timeout, priority = reply[
                index : index + 8
            ]
            identifier = task_id.decode()
            attempt = int(attempt)
            try:
                task = self._task(
                    identifier,
                    args_raw,
                    meta,
                    attempt - 1,
                    Status.Running,
                    run_at,
                    most,
                    timeout,
                    priority,
                )
            except (CodecError, ValueError, TypeError) as error:
                broken.append(Settlement(identifier, attempt, Status.Failed, error=f"{error}"))
                continue
            tasks.append(Claimed(task, attempt))
        if broken:
            await self.exchange(worker, broken, 0, now, lease)
        return Claim(tasks, next_due)

    def _settlement(self, item: Settlement) -> list[Any]:
        status = item.status
        run_at: Any = ""
        if status is Status.Done:
            try:
                payload: Any = self._codec.encode(item.result)
                kind = b"D"
            except CodecError as error:
                payload, kind = f"the result cannot be stored: {error}", b"F"
        elif status.is_final:
            kind = _FINAL_KIND[status]
            payload = item.error or ""
        elif item.release:
            kind, payload = b"B", ""
        else:
            kind, payload = b"R", item.error or ""
            run_at = due_ms(item.run_at if item.run_at is not None else 0.0)
        return [item.task_id, item.attempt, kind, payload, run_at]

    async def heartbeat(self, worker: WorkerIdentity, now: float, lease: float) -> int:
        keys = self._keys
        reply = await self.client.run(
            HEARTBEAT,
            keys.lease,
            [
                keys.prefix,
                worker.id,
                to_ms(now),
                max(1, to_ms(lease)),
                worker.name,
                worker.host,
                worker.pid,
                to_ms(worker.started_at),
                self._keep_workers,
            ],
        )
        return int(reply)

    async def recover(self, now: float, limit: int) -> int:
        expire = "" if self._retention_ms < 0 else to_ms(now) - self._retention_ms
        recovered, _ = await self.recover_and_expire(now, limit, expire, limit)
        return recovered

    async def recover_and_expire(
        self,
        now: float,
        limit: int,
        expire_before: int | str = "",
        expire_limit: int = 0,
        owners: Sequence[str] = (),
    ) -> tuple[int, int]:
        """Re-queue up to ``limit`` expired leases and every task of ``owners`` (dead
        worker runs); delete up to ``expire_limit`` tasks finished before
        ``expire_before`` (ms, ``"+inf"``, or ``""`` for none). ``(re-queued, deleted)``."""
        keys = self._keys
        reply = await self.client.run(
            RECOVER,
            keys.lease,
            [
                keys.prefix,
                to_ms(now),
                limit,
                ",".join(owners),
                expire_before,
                expire_limit,
                "" if self._retention_ms < 0 else to_ms(now) - self._retention_ms,
            ],
        )
        if int(reply[0]):
            _local_wake().wake(keys.prefix)
        return int(reply[0]), int(reply[1])

    async def retire(self, worker: WorkerIdentity) -> None:
        keys = self._keys
        await self.client.run(RETIRE, keys.workers, [keys.prefix, worker.id])

    async def wait_wake(self, timeout: float) -> None:
        if timeout <= 0.0:
            await trio.lowlevel.checkpoint()
            return
        if self.client.virtual:
            with trio.move_on_after(timeout):
                await _local_wake().event(self._keys.prefix).wait()
            return
        wake = self._keys.wake
        # BLPOP's timeout has a resolution of milliseconds; 0 would mean forever.
        # The server's timeout ends the wait; the trio scope is only a backstop.
        server_timeout = max(timeout, 0.001)
        with trio.move_on_after(timeout + 0.05):
            try:
                await self.client.call(
                    "waiting for a wake-up",
                    lambda client: client.blpop([wake], timeout=server_timeout),
                    idle=True,
                )
            except StorageError as error:
                # Only a hint is lost: the next claim meets the fault itself (and
                # backs off); wait a little so a broken server is not hammered.
                logger.debug("wake-up wait on %s failed: %s", wake, error)
                await trio.sleep(min(timeout, 0.1))

    # -- pushes ---------------------------------------------------------------------

    def new_task(self, task: Task, unique: str = "", now: float | None = None) -> NewTask:
        """``task`` encoded for the push script (raises CodecError for what cannot be stored).

        ``now``: the task is due now (push, push_bulk), whatever its run_at.
        """
        parts = task.parts
        ctx = parts.ctx
        task_id = parts.task_id
        return NewTask(
            task_id=str(task_id) if task_id is not None else str(TaskId.generate()),
            args=self._codec.encode(task.args),
            meta=self._codec.encode(ctx) if ctx else b"",
            run_at_ms=due_ms(parts.run_at if now is None else now),
            max_attempts=parts.max_attempts,
            timeout=parts.timeout,
            priority=parts.priority,
            unique=unique,
            attempts=parts.attempt.current(),
            task_name=task_name_of(task.args) or "",
        )

    async def push(self, tasks: Sequence[NewTask], now: float) -> list[TaskId]:
        """Store ``tasks`` in one script; the id of each (an existing holder's for duplicates)."""
        if not tasks:
            return []
        keys = self._keys
        # The push's "now" is rounded up like the run_at of the tasks it stores:
        # a task due within this millisecond is queued as ready (a task built a
        # moment ago and one pushed "now" compare by push order, not by a
        # rounding), so it may run less than a millisecond early, never more.
        args: list[Any] = [keys.prefix, due_ms(now)]
        for item in tasks:
            args.extend(item.fields())
        reply = await self.client.run(PUSH, keys.ready, args)
        _local_wake().wake(keys.prefix)
        return [TaskId(raw.decode()) for raw in reply]

    # -- reads ----------------------------------------------------------------------

    async def fetch(self, task_ids: Sequence[str]) -> list[Task | None]:
        """The stored tasks (None for unknown ids), one pipelined round trip."""
        rows = await self._rows(task_ids)
        return [
            None if row is None else self._row_task(task_id, row)
            for task_id, row in zip(task_ids, rows, strict=True)
        ]

    async def results(self, task_ids: Sequence[str]) -> list[TaskResult | None]:
        """Each task's status and outcome once final (None for unknown ids)."""
        rows = await self._rows(task_ids)
        out: list[TaskResult | None] = []
        for task_id, row in zip(task_ids, rows, strict=True):
            out.append(None if row is None else self._row_result(task_id, row))
        return out

    async def _rows(self, task_ids: Sequence[str]) -> list[list[bytes | None] | None]:
        if not task_ids:
            return []
        keys = self._keys

        async def read(client: Any) -> list[Any]:
            async with client.pipeline(transaction=False) as pipe:
                pending = [pipe.hmget(keys.task(task_id), _FIELDS) for task_id in task_ids]
            return [await item for item in pending]

        rows = await self.client.call("reading tasks", read)
        return [None if row[2] is None else list(row) for row in rows]

    def _row_task(self, task_id: str, row: list[bytes | None]) -> Task:
        args, meta, status, attempts, run_at, most, timeout, priority = row[:8]
        assert status is not None and attempts is not None
        return self._task(
            task_id,
            args,
            meta,
            int(attempts),
            Status(status.decode()),
            run_at,
            most,
            timeout,
            priority,
        )

    def _row_result(self, task_id: str, row: list[bytes | None]) -> TaskResult:
        status_raw = row[2]
        assert status_raw is not None
        status = Status(status_raw.decode())
        identifier = TaskId(task_id)
        if status is Status.Done:
            value = row[8]
            return TaskResult.done(identifier, None if value is None else self._decode(value))
        if status.is_final:
            error = row[9]
            return TaskResult.failed(
                identifier, status, error.decode() if error else f"task {task_id} {status.value}"
            )
        return TaskResult(identifier, status)

    def _decode(self, raw: bytes) -> Any:
        return self._codec.decode(raw)

    def _task(
        self,
        task_id: str,
        args: bytes | None,
        meta: bytes | None,
        attempts: int,
        status: Status,
        run_at: bytes | None,
        most: bytes | None,
        timeout: bytes | None,
        priority: bytes | None,
    ) -> Task:
        codec = self._codec
        if args is None:
            raise ValueError(f"task {task_id} has no arguments stored")
        try:
            value = codec.decode(args)
            ctx = codec.decode(meta) if meta else None
        except CodecError as error:
            raise CodecError(f"RedisStorage: task {task_id} cannot be decoded: {error}") from error
        parts = Parts(
            task_id=TaskId(task_id),
            attempt=Attempt(attempts),
            ctx=ctx,
            status=status,
            run_at=int(run_at or 0) / 1000.0,
            max_attempts=int(most) if most else None,
            timeout=float(timeout) if timeout else None,
            priority=int(priority or 0),
        )
        return Task.from_parts(value, parts)

    # -- changes --------------------------------------------------------------------

    async def update(self, task: Task, now: float, mode: str) -> int:
        """Store ``task``'s parts (``update``) or queue it at its run_at (``reschedule``).

        1 done, 0 unknown id, -1 the task is Running (its worker owns it).
        """
        parts = task.parts
        keys = self._keys
        ctx = parts.ctx
        reply = await self.client.run(
            UPDATE,
            keys.ready,
            [
                keys.prefix,
                to_ms(now),
                str(parts.task_id),
                parts.status.value,
                parts.attempt.current(),
                due_ms(parts.run_at),
                "" if parts.max_attempts is None else parts.max_attempts,
                "" if parts.timeout is None else repr(parts.timeout),
                parts.priority,
                sort_prefix(parts.priority),
                self._codec.encode(ctx) if ctx else b"",
                mode,
            ],
        )
        _local_wake().wake(keys.prefix)
        return int(reply)

    async def resume(self, task_id: str, now: float) -> bool:
        keys = self._keys
        reply = await self.client.run(RESUME, keys.ready, [keys.prefix, to_ms(now), task_id])
        _local_wake().wake(keys.prefix)
        return int(reply) == 1

    async def kill(self, task_id: str, reason: str, now: float) -> bool:
        keys = self._keys
        reply = await self.client.run(KILL, keys.ready, [keys.prefix, to_ms(now), task_id, reason])
        return int(reply) == 1

    async def counts(self) -> dict[Status, int]:
        """How many tasks are in each status (one pipelined round trip)."""
        keys = self._keys
        indexed = (Status.Pending, Status.Done, Status.Failed, Status.Killed)

        async def read(client: Any) -> list[int]:
            async with client.pipeline(transaction=False) as pipe:
                pending = [pipe.zcard(keys.status(status.value)) for status in indexed]
                pending.append(pipe.zcard(keys.lease))
            return [int(await item) for item in pending]

        *found, running = await self.client.call("counting tasks", read)
        counts = dict.fromkeys(Status, 0)
        counts.update(zip(indexed, found, strict=True))
        counts[Status.Running] = running
        return counts

    async def queues(self, namespace: str) -> list[str]:
        """The queues of ``namespace`` that hold tasks (found by their ``all`` index)."""
        pattern = _glob(f"{namespace}:{{") + "*" + _glob("}:all")

        async def scan(client: Any) -> list[str]:
            found = set()
            async for key in client.scan_iter(match=pattern, count=500):
                text = key.decode()
                found.add(text[len(namespace) + 2 : -len("}:all")])
            return sorted(found)

        return await self.client.call("listing queues", scan)

    async def delete(self, task_id: str) -> int:
        keys = self._keys
        return int(await self.client.run(DELETE, keys.ready, [keys.prefix, task_id]))

    # -- listings -------------------------------------------------------------------

    async def page(self, status: Status | None, start: int, count: int) -> list[Task]:
        """Tasks in push order (of one status), ``count`` from ``start``."""
        keys = self._keys
        if status is None:
            index = keys.all
        elif status is Status.Running:
            index = keys.lease  # Running tasks, by lease deadline
        else:
            index = keys.status(status.value)
        raw = await self.client.call(
            "listing tasks",
            lambda client: client.zrange(index, start, start + count - 1),
        )
        ids = [item.decode() for item in raw]
        return [task for task in await self.fetch(ids) if task is not None]

    async def count(self) -> int:
        keys = self._keys
        return int(await self.client.call("counting tasks", lambda c: c.zcard(keys.all)))

    async def workers(self, now: float, within: float) -> list[WorkerInfo]:
        """Worker runs that beat within the last ``within`` seconds."""
        keys = self._keys
        since = to_ms(now - within)

        async def read(client: Any) -> list[WorkerInfo]:
            from coredis.tokens import PureToken

            ids = await client.zrange(keys.workers, since, "+inf", sortby=PureToken.BYSCORE)
            if not ids:
                return []
            async with client.pipeline(transaction=False) as pipe:
                pending = [
                    pipe.hmget(
                        keys.worker(raw.decode()), [b"name", b"pid", b"started", b"seen", b"host"]
                    )
                    for raw in ids
                ]
            out = []
            for raw, item in zip(ids, pending, strict=True):
                name, pid, started, seen, host = await item
                if name is None:
                    continue
                out.append(
                    WorkerInfo(
                        name=name.decode(),
                        pid=int(pid or 0),
                        started_at=int(started or 0) / 1000.0,
                        last_seen=int(seen or 0) / 1000.0,
                        id=raw.decode(),
                        host=host.decode() if host else None,
                    )
                )
            return out

        return await self.client.call("listing workers", read)

    async def worker_hosts(self, now: float) -> list[tuple[str, str, int]]:
        """(worker id, host, pid) of every registered worker run."""
        keys = self._keys

        async def read(client: Any) -> list[tuple[str, str, int]]:
            ids = await client.zrange(keys.workers, 0, -1)
            if not ids:
                return []
            async with client.pipeline(transaction=False) as pipe:
                pending = [pipe.hmget(keys.worker(raw.decode()), [b"host", b"pid"]) for raw in ids]
            out = []
            for raw, item in zip(ids, pending, strict=True):
                host, pid = await item
                if host is not None:
                    out.append((raw.decode(), host.decode(), int(pid or 0)))
            return out

        return await self.client.call("listing workers", read)

    async def owners(self) -> list[str]:
        """The worker ids that hold at least one Running task."""
        keys = self._keys

        async def read(client: Any) -> list[str]:
            ids = await client.zrange(keys.lease, 0, -1)
            if not ids:
                return []
            async with client.pipeline(transaction=False) as pipe:
                pending = [pipe.hget(keys.task(raw.decode()), b"w") for raw in ids]
            found = {(await item) for item in pending}
            return sorted(owner.decode() for owner in found if owner)

        return await self.client.call("listing owners", read)

    async def drop_queue(self) -> int:
        """Delete every key of the queue (tests, ``purge``); how many keys."""
        pattern = self._keys.pattern()

        async def scan(client: Any) -> int:
            removed = 0
            batch: list[Any] = []
            async for key in client.scan_iter(match=pattern, count=500):
                batch.append(key)
                if len(batch) >= 500:
                    removed += await client.delete(batch)
                    batch = []
            if batch:
                removed += await client.delete(batch)
            return removed

        return int(await self.client.call("deleting the queue", scan))


def _glob(text: str) -> str:
    """``text`` with the glob characters of SCAN MATCH escaped."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
