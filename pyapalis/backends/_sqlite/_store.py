"""The SQL of the shared-backend model on SQLite (a ``LeaseStore``, see ``_kit._leases``).

One :class:`SqliteStore` per queue handle. Every write is one transaction
opened with ``BEGIN IMMEDIATE`` (the write lock first, so two processes never
deadlock upgrading a read); a claim is one ``UPDATE ... RETURNING`` over the
first due rows (priority, then ``run_at``, then push order), after the
settlements the session folded into it; a claim given task names adds
``task_name IN (...)`` (``tasks_ready_named`` serves one name in order).
Rows hold the codec's bytes; the store decodes a claimed row into a Task and
fails (in the same transaction) a row that cannot be decoded, so a bad
payload never reaches a worker.
"""

from __future__ import annotations

import math
import socket
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..._errors import CodecError
from ..._implementation import Attempt, Parts, Task, TaskId
from ..._status import Status
from .._codec import Codec
from .._kit._leases import Claim, Claimed, Settlement, worker_alive
from .._worker_protocols import WorkerIdentity
from ._db import Database, notify

__all__ = ["Row", "SqliteStore", "claim_statements", "ms_ceil", "ms_floor"]

_HOST = socket.gethostname()

LIVE_WORKERS: set[str] = set()
"""Worker ids whose session is open in this process (the others of this pid are gone)."""


def ms_floor(seconds: float) -> int:
    """Wall seconds as integer milliseconds, rounded down (for "now": never early)."""
    return math.floor(seconds * 1000)


def ms_ceil(seconds: float) -> int:
    """Wall seconds as integer milliseconds, rounded up (for ``run_at``: never early)."""
    return math.ceil(seconds * 1000)


@dataclass(frozen=True, slots=True)
class Row:
    """A task row as read from the file (payloads still encoded)."""

    id: str
    args: bytes
    meta: bytes | None
    status: str
    attempt: int
    max_attempts: int | None
    timeout: float | None
    priority: int
    run_at: int
    result: bytes | None
    error: str | None


ROW_COLUMNS = (
    "id, args, meta, status, attempt, max_attempts, timeout, priority, run_at, result, error"
)

_SETTLE_FINAL = (
    "UPDATE tasks SET status = ?, result = ?, error = ?, owner = NULL, lease_until = NULL, "
    "done_at = ? WHERE id = ? AND owner = ? AND attempt = ? AND status = 'Running'"
)
_SETTLE_RETRY = (
    "UPDATE tasks SET status = 'Pending', run_at = ?, error = ?, owner = NULL, "
    "lease_until = NULL WHERE id = ? AND owner = ? AND attempt = ? AND status = 'Running'"
)
_SETTLE_RELEASE = (
    "UPDATE tasks SET status = 'Pending', attempt = attempt - 1, owner = NULL, "
    "lease_until = NULL WHERE id = ? AND owner = ? AND attempt = ? AND status = 'Running'"
)
_CLAIM = (
    "UPDATE tasks SET status = 'Running', owner = ?, attempt = attempt + 1, lease_until = ? "
    "WHERE rowid IN (SELECT rowid FROM tasks WHERE queue = ? AND status = 'Pending' "
    "AND run_at <= ?{} ORDER BY priority DESC, run_at, rowid LIMIT ?) "
    "RETURNING rowid, " + ROW_COLUMNS
)
_NEXT_DUE = "SELECT min(run_at) FROM tasks WHERE queue = ? AND status = 'Pending' AND run_at > ?{}"


def claim_statements(count: int) -> tuple[str, str]:
    """The claim and next-due statements, restricted to ``count`` task names if > 0.

    The name test sits beside the queue's so that ``tasks_ready_named``
    serves it (with one name, in claim order).
    """
    if not count:
        return _CLAIM.format(""), _NEXT_DUE.format("")
    test = " AND task_name IN ({})".format(", ".join("?" * count))
    return _CLAIM.format(test), _NEXT_DUE.format(test)


_CLAIM_ALL, _NEXT_DUE_ALL = claim_statements(0)
_REQUEUE = (
    "UPDATE tasks SET owner = NULL, lease_until = NULL, "
    "status = CASE WHEN max_attempts IS NOT NULL AND attempt >= max_attempts "
    "THEN 'Failed' ELSE 'Pending' END, "
    "error = CASE WHEN max_attempts IS NOT NULL AND attempt >= max_attempts "
    "THEN ? ELSE error END, "
    "done_at = CASE WHEN max_attempts IS NOT NULL AND attempt >= max_attempts "
    "THEN ? ELSE NULL END "
)


class SqliteStore:
    """The lease operations (and the SQL the storage's API needs) for one queue."""

    def __init__(self, db: Database, queue: str, codec: Codec) -> None:
        self.db = db
        self.queue = queue
        self.codec = codec
        self._generation = 0
        self._data_version = 0
        self._filters: dict[frozenset[str], tuple[tuple[str, ...], str, str]] = {}

    def _filter(self, names: frozenset[str] | None) -> tuple[tuple[str, ...], str, str]:
        """The name parameters and the claim / next-due statements for ``names``."""
        if names is None:
            return (), _CLAIM_ALL, _NEXT_DUE_ALL
        found = self._filters.get(names)
        if found is None:
            ordered = tuple(sorted(names))
            found = self._filters[names] = (ordered, *claim_statements(len(ordered)))
        return found

    # -- LeaseStore ----------------------------------------------------------------

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
        finals, retries, releases = self._settle_params(worker.id, settle, now)
        named, claim_sql, next_due_sql = self._filter(names)
        queue = self.queue
        now_ms = ms_floor(now)
        lease_ms = ms_ceil(now + lease)
        owner = worker.id
        # What a later wait_wake compares with: only a claim saw the queue (a
        # flush that claims nothing must not hide a push made before it).
        generation = self.db.work.generation

        def run(connection: sqlite3.Connection) -> tuple[list[Any], int | None, int, list[str]]:
            connection.execute("BEGIN IMMEDIATE")
            if finals:
                connection.executemany(_SETTLE_FINAL, finals)
            if retries:
                connection.executemany(_SETTLE_RETRY, retries)
            if releases:
                connection.executemany(_SETTLE_RELEASE, releases)
            rows: list[Any] = []
            next_due = None
            failed: list[str] = []
            if limit:
                rows = connection.execute(
                    claim_sql, (owner, lease_ms, queue, now_ms, *named, limit)
                ).fetchall()
                if len(rows) < limit:
                    next_due = connection.execute(next_due_sql, (queue, now_ms, *named)).fetchone()[
                        0
                    ]
                rows.sort(key=lambda r: (-r[8], r[9], r[0]))
                decoded = []
                for row in rows:
                    task = self._task_or_error(row)
                    if isinstance(task, str):
                        connection.execute(
                            "UPDATE tasks SET status = 'Failed', error = ?, owner = NULL, "
                            "lease_until = NULL, done_at = ? WHERE id = ?",
                            (task, now_ms, row[1]),
                        )
                        failed.append(row[1])
                    else:
                        decoded.append(task)
                rows = decoded
                # Read inside the transaction: no other connection can commit
                # while it holds the write lock, so any later commit changes it.
                version = connection.execute("PRAGMA data_version").fetchone()[0]
            else:
                version = 0
            connection.execute("COMMIT")
            return rows, next_due, version, failed

        tasks, next_due, version, failed = await self.db.run("claiming tasks", run)
        if limit:
            self._generation = generation
            self._data_version = version
        if finals or retries or releases or failed:
            # Results for waiters; retries and hand-backs for idle takers.
            notify(self.db.key, work=bool(retries or releases), results=bool(finals or failed))
        return Claim(tasks, None if next_due is None else next_due / 1000)

    def _settle_params(
        self, owner: str, settle: Sequence[Settlement], now: float
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        finals: list[tuple[Any, ...]] = []
        retries: list[tuple[Any, ...]] = []
        releases: list[tuple[Any, ...]] = []
        now_ms = ms_floor(now)
        for outcome in settle:
            if outcome.release:
                releases.append((outcome.task_id, owner, outcome.attempt))
            elif outcome.status is Status.Pending:
                run_at = ms_ceil(outcome.run_at if outcome.run_at is not None else now)
                retries.append((run_at, outcome.error, outcome.task_id, owner, outcome.attempt))
            else:
                status, result, error = outcome.status.value, None, outcome.error
                if outcome.status is Status.Done and outcome.result is not None:
                    try:
                        result = self.codec.encode(outcome.result)
                    except CodecError as codec_error:
                        status, error = "Failed", f"CodecError: {codec_error}"
                finals.append(
                    (status, result, error, now_ms, outcome.task_id, owner, outcome.attempt)
                )
        return finals, retries, releases

    def _task_or_error(self, row: Any) -> Claimed | str:
        """A claimed row as a task (``row`` starts with the rowid), or why it cannot be one."""
        (_, task_id, args, meta, _, attempt, max_attempts, timeout, priority, run_at, _, _) = row
        try:
            decoded_args = self.codec.decode(args)
            ctx = self.codec.decode(meta) if meta is not None else None
        except Exception as error:
            return f"CodecError: cannot decode the stored task: {type(error).__name__}: {error}"
        try:
            parts = Parts(
                task_id=TaskId(task_id),
                attempt=Attempt(attempt - 1),
                ctx=ctx,
                run_at=run_at / 1000,
                max_attempts=max_attempts,
                timeout=timeout,
                priority=priority,
            )
            return Claimed(Task.from_parts(decoded_args, parts), attempt)
        except Exception as error:
            kind = type(error).__name__
            return f"StorageError: the stored task is not a valid task: {kind}: {error}"

    async def heartbeat(self, worker: WorkerIdentity, now: float, lease: float) -> int:
        lease_ms = ms_ceil(now + lease)
        values = (
            worker.id,
            self.queue,
            worker.name,
            worker.host,
            worker.pid,
            worker.started_at,
            now,
            worker.concurrency,
        )

        def run(connection: sqlite3.Connection) -> int:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute(
                "INSERT INTO workers (id, queue, name, host, pid, started_at, last_seen, "
                "concurrency) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen",
                values,
            )
            extended = connection.execute(
                "UPDATE tasks SET lease_until = ? WHERE owner = ? AND status = 'Running'",
                (lease_ms, worker.id),
            ).rowcount
            connection.execute("COMMIT")
            return extended

        return await self.db.run("recording a heartbeat", run)

    async def recover(self, now: float, limit: int) -> int:
        now_ms = ms_floor(now)

        def run(connection: sqlite3.Connection) -> int:
            connection.execute("BEGIN IMMEDIATE")
            count = connection.execute(
                _REQUEUE + "WHERE rowid IN (SELECT rowid FROM tasks WHERE status = 'Running' "
                "AND lease_until < ? LIMIT ?)",
                ("lease expired", now_ms, now_ms, limit),
            ).rowcount
            connection.execute("COMMIT")
            return count

        count = await self.db.run("re-queueing expired leases", run)
        if count:
            notify(self.db.key, work=True, results=True)
        return count

    async def retire(self, worker: WorkerIdentity) -> None:
        LIVE_WORKERS.discard(worker.id)
        await self.db.run(
            "retiring a worker",
            lambda connection: connection.execute("DELETE FROM workers WHERE id = ?", (worker.id,)),
        )

    async def wait_wake(self, timeout: float) -> None:
        await self.db.changed_since(self.db.work, self._generation, self._data_version, timeout)

    # -- recovery of provably dead workers -------------------------------------------

    async def resume_abandoned(self, now: float) -> int:
        """Re-queue Running tasks of this queue whose worker is gone or whose lease expired.

        Gone: its worker row was retired (the run ended, so nothing runs the
        task), or it ran on this host in a process that no longer exists, or
        in this process without a live session. Counts each as an attempt.
        """
        queue = self.queue
        now_ms = ms_floor(now)

        def owners(connection: sqlite3.Connection) -> list[tuple[str, str | None, int | None]]:
            return connection.execute(
                "SELECT DISTINCT t.owner, w.host, w.pid FROM tasks t LEFT JOIN workers w "
                "ON w.id = t.owner WHERE t.queue = ? AND t.status = 'Running'",
                (queue,),
            ).fetchall()

        gone = [
            owner
            for owner, host, pid in await self.db.run("listing running tasks", owners)
            if host is None or (host == _HOST and not _alive(pid, owner))
        ]

        def run(connection: sqlite3.Connection) -> int:
            connection.execute("BEGIN IMMEDIATE")
            count = 0
            for owner in gone:
                count += connection.execute(
                    _REQUEUE + "WHERE queue = ? AND status = 'Running' AND owner = ?",
                    ("worker gone", now_ms, queue, owner),
                ).rowcount
            count += connection.execute(
                _REQUEUE + "WHERE queue = ? AND status = 'Running' AND lease_until < ?",
                ("lease expired", now_ms, queue, now_ms),
            ).rowcount
            if gone:
                connection.executemany(
                    "DELETE FROM workers WHERE id = ?", [(owner,) for owner in gone]
                )
            connection.execute("COMMIT")
            return count

        count = await self.db.run("resuming abandoned tasks", run)
        if count:
            notify(self.db.key, work=True, results=True)
        return count


def _alive(pid: int | None, owner: str) -> bool:
    """Whether the worker ``owner`` of process ``pid`` on this host may still run."""
    return pid is not None and worker_alive(pid, owner, LIVE_WORKERS)
