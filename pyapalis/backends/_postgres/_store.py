"""The store operations of the shared-backend model on PostgreSQL, for one queue.

:class:`PostgresStore` implements :class:`~pyapalis.backends._kit._leases.LeaseStore`
(the session machinery — batching, heartbeats, recovery rounds, backoff — is
the kit's :class:`LeaseSession`); each operation is one statement on a pooled
session (see :mod:`._sql` for the SQL):

* ``exchange``: the fenced settlements of a batch and the next claim in one
  statement (``unnest`` arrays, ``FOR UPDATE SKIP LOCKED``), and, when the
  queue ran dry, when the next scheduled task comes due.
* ``heartbeat``: the worker's row and every lease it holds, one statement.
* ``recover``: expired leases back to Pending (Failed without attempts left).
* ``wait_wake``: this process's pushes at once, other processes' by NOTIFY.

A worker run's id is also a liveness lock held on the storage's listening
session (see :mod:`._connections`), taken before its first claim, so
``resume_abandoned`` can recover the tasks of a provably dead process at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..._errors import CodecError
from ..._implementation import Attempt, Parts, Task, TaskId
from ..._status import Status
from .._codec import Codec
from .._kit._leases import Claim, Claimed, Settlement
from .._worker_protocols import WorkerIdentity
from ._connections import Connections
from ._sql import (
    bytea_array,
    number,
    number_array,
    text,
    text_array,
    unbytea,
)

if TYPE_CHECKING:
    from ._driver import Row

__all__ = ["PostgresStore", "describe", "task_of"]


def describe(error: BaseException) -> str:
    """An error as stored: ``Type: message``."""
    message = str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def _int(value: bytes | None) -> int | None:
    return None if value is None else int(value)


def _float(value: bytes | None) -> float | None:
    return None if value is None else float(value)


def task_of(row: Row, codec: Codec, *, claimed: bool = False) -> Task:
    """Rebuild a task from a row of ``TASK_COLUMNS``.

    ``claimed``: the row comes from a claim, whose attempt count already
    includes the execution about to start; the task carries the count before
    it (the worker counts the execution when it starts it). Raises
    :class:`CodecError` or ``ValueError`` when the row cannot be a task.
    """
    task_id, args, attempts, run_at, max_attempts, timeout, priority, meta, status, _ = row
    assert task_id is not None and args is not None and attempts is not None
    assert run_at is not None and priority is not None and status is not None
    count = int(attempts) - (1 if claimed else 0)
    parts = Parts(
        task_id=TaskId(task_id.decode()),
        attempt=Attempt(count),
        ctx=codec.decode(unbytea(meta)) if meta is not None else None,
        status=Status(status.decode()),
        run_at=float(run_at),
        max_attempts=_int(max_attempts),
        timeout=_float(timeout),
        priority=int(priority),
    )
    return Task.from_parts(codec.decode(unbytea(args)), parts)


def _claim_order(row: Row) -> tuple[int, float, int]:
    # Rows come back from UPDATE ... RETURNING in no particular order.
    return (-int(row[6] or 0), float(row[3] or 0), int(row[9] or 0))


class PostgresStore:
    """The :class:`LeaseStore` of one queue of a PostgresStorage."""

    def __init__(self, connections: Connections, queue: str, codec: Codec) -> None:
        self._connections = connections
        self._durable_acks = connections.settings.synchronous_commit
        self._statements = connections.statements
        self._queue = queue
        self._codec = codec
        # Claims whose answer was lost (the session never got their tasks), by
        # worker id: the time each marked its rows with (claimed_at). Undone
        # before that worker's next statement, or its heartbeat would keep those
        # tasks Running under it for good.
        self._in_doubt: dict[str, list[float]] = {}

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
        connections = self._connections
        if limit:
            await connections.hold_owner(worker.id)
        await self._undo_lost_claims(worker.id)
        ids: list[str | None] = []
        attempts: list[float | None] = []
        statuses: list[str | None] = []
        run_ats: list[float | None] = []
        deltas: list[float | None] = []
        results: list[bytes | None] = []
        errors: list[str | None] = []
        requeued = False
        for item in settle:
            status, result, error = item.status, None, item.error
            if status is Status.Done and item.result is not None:
                try:
                    result = self._codec.encode(item.result)
                except Exception as codec_error:  # the task fails, the batch goes on
                    status, error = Status.Failed, describe(_codec_error(codec_error))
            requeued = requeued or status is Status.Pending
            ids.append(item.task_id)
            attempts.append(item.attempt)
            statuses.append(status.value)
            run_ats.append(item.run_at)
            deltas.append(-1 if item.release else 0)
            results.append(result)
            errors.append(error)
        try:
            rows = await self._send_exchange(
                worker,
                ids,
                attempts,
                statuses,
                run_ats,
                deltas,
                results,
                errors,
                limit,
                now,
                lease,
                names,
            )
        except BaseException:
            if limit:
                # The claim may have been applied with its answer lost (a dropped session).
                self._in_doubt.setdefault(worker.id, []).append(now)
            raise
        if requeued:
            connections.wake(self._queue)  # a hand-back or retry here: wake local takers
        return await self._claimed(worker, rows, now, lease)

    async def _send_exchange(
        self,
        worker: WorkerIdentity,
        ids: list[str | None],
        attempts: list[float | None],
        statuses: list[str | None],
        run_ats: list[float | None],
        deltas: list[float | None],
        results: list[bytes | None],
        errors: list[str | None],
        limit: int,
        now: float,
        lease: float,
        names: frozenset[str] | None,
    ) -> list[Row]:
        statements = self._statements
        params = [
            text(self._queue),
            number(now),
            text(worker.id),
            text_array(ids),
            number_array(attempts),
            text_array(statuses),
            number_array(run_ats),
            number_array(deltas),
            bytea_array(results),
            text_array(errors),
            text(self._statements.channel),
            number(limit),
            number(now + lease),
        ]
        statement = statements.exchange
        if names is not None:
            statement = statements.exchange_named
            params.append(text_array(sorted(names)))
        return await self._connections.execute(
            statement,
            params,
            # A claim alone need not wait for the WAL flush (see Connections.connection);
            # acknowledgements do, unless the storage says otherwise.
            relaxed=not ids or not self._durable_acks,
        )

    async def _claimed(
        self, worker: WorkerIdentity, rows: list[Row], now: float, lease: float
    ) -> Claim:
        """The claim an exchange's rows describe (undecodable tasks are failed)."""
        summary = rows.pop()  # the last row: (NULL id, ..., next due in run_at)
        next_due = _float(summary[3])
        rows.sort(key=_claim_order)
        claimed: list[Claimed] = []
        broken: list[Settlement] = []
        for row in rows:
            try:
                task = task_of(row, self._codec, claimed=True)
            except Exception as error:
                # A stored task that cannot be rebuilt fails; the worker goes on.
                assert row[0] is not None and row[2] is not None
                broken.append(
                    Settlement(
                        row[0].decode(),
                        int(row[2]),
                        Status.Failed,
                        error=f"cannot decode the stored task: {describe(error)}",
                    )
                )
                continue
            claimed.append(Claimed(task, int(row[2] or 0)))
        if broken:
            await self.exchange(worker, broken, 0, now, lease)
        return Claim(claimed, next_due)

    async def _undo_lost_claims(self, owner: str) -> None:
        """Hand back what the lost claims of ``owner`` took (see ``release_in_doubt``)."""
        # Taken before the round trip: the worker's heartbeat and its next
        # exchange may both get here at once (they did, after a server restart,
        # and the second one's removal of the entry failed and ended the worker).
        deadlines = self._in_doubt.pop(owner, None)
        if not deadlines:
            return
        statements = self._statements
        try:
            await self._connections.execute(
                statements.release_in_doubt,
                [
                    text(self._queue),
                    text(owner),
                    number_array(deadlines),
                    text(statements.channel),
                ],
            )
        except BaseException:
            # Not undone (or not known to be): the next statement tries again.
            self._in_doubt.setdefault(owner, []).extend(deadlines)
            raise
        self._connections.wake(self._queue)

    async def heartbeat(self, worker: WorkerIdentity, now: float, lease: float) -> int:
        await self._connections.hold_owner(worker.id)
        await self._undo_lost_claims(worker.id)
        rows = await self._connections.execute(
            self._statements.heartbeat,
            relaxed=not self._durable_acks,
            params=[
                text(worker.id),
                number(now),
                number(now + lease),
                text(self._queue),
                text(worker.name),
                text(worker.host),
                number(worker.pid),
                number(worker.started_at),
            ],
        )
        return int(rows[0][0] or 0) if rows else 0

    async def recover(self, now: float, limit: int, *, owners_gone: bool = False) -> int:
        """Re-queue expired leases (see :meth:`LeaseStore.recover`).

        ``owners_gone``: also the tasks of worker runs whose liveness lock is
        free (their process is provably dead), whatever their lease says.
        """
        statements = self._statements
        rows = await self._connections.execute(
            statements.recover,
            [
                text(self._queue),
                number(now),
                number(limit),
                b"true" if owners_gone else b"false",
                text(statements.channel),
                text(statements.owner_key("")),
            ],
        )
        requeued, failed = (int(value or 0) for value in rows[0][:2])
        if requeued:
            self._connections.wake(self._queue)
        return requeued + failed

    async def retire(self, worker: WorkerIdentity) -> None:
        await self._undo_lost_claims(worker.id)
        await self._connections.execute(self._statements.retire, [text(worker.id)])
        await self._connections.drop_owner(worker.id)

    async def wait_wake(self, timeout: float) -> None:
        await self._connections.wait_wake(self._queue, timeout)


def _codec_error(error: Exception) -> CodecError:
    if isinstance(error, CodecError):
        return error
    return CodecError(f"cannot store the task's result: {describe(error)}")
