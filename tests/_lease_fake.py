"""An in-memory :class:`LeaseStore` for testing the shared-backend machinery without a database.

It keeps the rules a real store keeps (claim order, fenced settlements,
heartbeats extending leases, bounded recovery) in plain Python, records every
call, and can be told to fail the next calls with a ``StorageError``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from pyapalis import StorageError, Task, TaskId
from pyapalis._implementation import Attempt, Parts
from pyapalis._status import Status
from pyapalis.backends import WorkerIdentity
from pyapalis.backends._kit._leases import Claim, Claimed, Settlement


@dataclass
class Row:
    id: str
    args: Any
    seq: int
    run_at: float = 0.0
    priority: int = 0
    status: Status = Status.Pending
    attempt: int = 0
    max_attempts: int = 1
    owner: str | None = None
    lease_until: float = 0.0
    result: Any = None
    error: str | None = None
    runs: list[str] = field(default_factory=list)  # the owners of each claim
    name: str | None = None  # the task name stored at push (a typed task's)


class FakeLeaseStore:
    """One queue of tasks in a dict, with the :class:`LeaseStore` operations."""

    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}
        self.workers: dict[str, tuple[WorkerIdentity, float]] = {}
        self.calls: list[tuple[str, Any]] = []
        self.fail_next = 0  # how many of the next calls raise StorageError
        self.fail_only: set[str] = set()  # if given, only calls of these names fail
        self._seq = itertools.count()
        self._wake = trio.Event()

    # -- producer side (what the backend's TaskSink would do) --

    def push(
        self,
        args: Any,
        *,
        run_at: float = 0.0,
        priority: int = 0,
        max_attempts: int = 1,
        name: str | None = None,
    ) -> str:
        task_id = str(TaskId.generate())
        self.rows[task_id] = Row(
            task_id, args, next(self._seq), run_at, priority, max_attempts=max_attempts, name=name
        )
        self._wake.set()
        return task_id

    def by_status(self, status: Status) -> list[Row]:
        return [row for row in self.rows.values() if row.status is status]

    def _fault(self, name: str) -> None:
        if self.fail_next and (not self.fail_only or name in self.fail_only):
            self.fail_next -= 1
            raise StorageError(f"fake store: {name} refused (disk full)")

    # -- LeaseStore --

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
        await trio.lowlevel.checkpoint()
        self.calls.append(("exchange", (len(settle), limit)))
        if names is not None:
            self.calls.append(("names", names))
        self._fault("exchange")
        for outcome in settle:
            row = self.rows.get(outcome.task_id)
            if (
                row is None
                or row.status is not Status.Running
                or row.owner != worker.id
                or row.attempt != outcome.attempt
            ):
                continue  # fenced off: the lease was lost
            row.owner = None
            row.status = outcome.status
            row.error = outcome.error
            if outcome.release:
                row.attempt -= 1
            elif outcome.status is Status.Pending:
                assert outcome.run_at is not None
                row.run_at = outcome.run_at
            else:
                row.result = outcome.result
        pending = [
            r
            for r in self.rows.values()
            if r.status is Status.Pending and (names is None or r.name in names)
        ]
        due = sorted(
            (r for r in pending if r.run_at <= now),
            key=lambda r: (-r.priority, r.run_at, r.seq),
        )[:limit]
        claimed = []
        for row in due:
            row.status = Status.Running
            row.owner = worker.id
            row.attempt += 1
            row.lease_until = now + lease
            row.runs.append(worker.id)
            parts = Parts(
                task_id=TaskId(row.id),
                attempt=Attempt(row.attempt - 1),
                max_attempts=row.max_attempts,
                priority=row.priority,
            )
            claimed.append(Claimed(Task.from_parts(row.args, parts), row.attempt))
        later = [r.run_at for r in pending if r.run_at > now]
        return Claim(claimed, min(later) if later else None)

    async def heartbeat(self, worker: WorkerIdentity, now: float, lease: float) -> int:
        await trio.lowlevel.checkpoint()
        self.calls.append(("heartbeat", worker.id))
        self._fault("heartbeat")
        self.workers[worker.id] = (worker, now)
        extended = 0
        for row in self.rows.values():
            if row.status is Status.Running and row.owner == worker.id:
                row.lease_until = now + lease
                extended += 1
        return extended

    async def recover(self, now: float, limit: int) -> int:
        await trio.lowlevel.checkpoint()
        self.calls.append(("recover", now))
        self._fault("recover")
        expired = [
            r for r in self.rows.values() if r.status is Status.Running and r.lease_until < now
        ][:limit]
        for row in expired:
            row.owner = None
            if row.attempt >= row.max_attempts:
                row.status = Status.Failed
                row.error = "lease expired"
            else:
                row.status = Status.Pending
        if expired:
            self._wake.set()
        return len(expired)

    async def retire(self, worker: WorkerIdentity) -> None:
        await trio.lowlevel.checkpoint()
        self.calls.append(("retire", worker.id))
        self._fault("retire")
        self.workers.pop(worker.id, None)

    async def wait_wake(self, timeout: float) -> None:
        await trio.lowlevel.checkpoint()
        self._fault("wait_wake")
        with trio.move_on_after(timeout):
            await self._wake.wait()
        self._wake = trio.Event()
