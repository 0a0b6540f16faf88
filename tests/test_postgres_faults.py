"""PostgresStorage under server faults: sessions terminated mid-run, statement timeouts.

These run on the real clock (the server's faults are real); every wait is
bounded by ``fail_after`` as a safety net, and ordering comes from events
(the handler itself triggers the fault after a given number of tasks).
"""

from __future__ import annotations

import time

import pytest
import trio

from pyapalis import PostgresStorage, Status, WorkerBuilder, WorkerContext
from tests._postgres import DSN, needs_postgres
from tests._postgres import pg_schema as pg_schema

pytestmark = needs_postgres


async def _admin(sql: bytes, params: list[bytes | None] | None = None) -> list[list[bytes | None]]:
    from pyapalis.backends._postgres._connections import driver

    conn = await driver().connect(DSN)
    try:
        return await conn.execute(sql, params or [])
    finally:
        conn.close()


async def _terminate_storage_sessions(schema: str) -> int:
    """Terminate every session of the storages on ``schema`` (their names end in it)."""
    rows = await _admin(
        b"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        b" WHERE application_name IN ($1::text, $2::text)",
        [f"pyapalis:{schema}".encode(), f"pyapalis-listener:{schema}".encode()],
    )
    return int(rows[0][0] or 0)


async def test_terminated_sessions_mid_run_lose_nothing(pg_schema: str) -> None:
    count = 300
    async with PostgresStorage(DSN, schema=pg_schema, lease=5.0, poll=0.2) as storage:
        ids = await storage.push_bulk(range(count))
        seen: set[int] = set()
        terminated: list[int] = []
        fault_at = {60, 180}

        async def handler(item: int, ctx: WorkerContext) -> None:
            seen.add(item)
            if len(seen) in fault_at:
                fault_at.discard(len(seen))
                terminated.append(await _terminate_storage_sessions(pg_schema))
            if len(seen) == count:
                ctx.stop()

        worker = WorkerBuilder("survivor").backend(storage).concurrency(4).build(handler)
        with trio.fail_after(60):
            await worker.run()
        assert len(terminated) == 2 and all(n >= 1 for n in terminated), terminated
        results = await storage.check_status(ids)
        assert [r.status for r in results] == [Status.Done] * count, "an ack was lost"
        assert seen == set(range(count))
        assert await storage.count() == 0


async def test_statement_timeout_is_a_storage_error_the_worker_rides_out(pg_schema: str) -> None:
    async with PostgresStorage(DSN, schema=pg_schema, statement_timeout=0.3, poll=0.05) as storage:
        await storage.push_bulk(range(20))
        from pyapalis.backends._postgres._connections import driver

        locker = await driver().connect(DSN)
        try:
            # Another session holds the table: every claim times out meanwhile.
            await locker.execute(b"BEGIN")
            await locker.execute(
                f'LOCK TABLE "{pg_schema}".tasks IN ACCESS EXCLUSIVE MODE'.encode()
            )
            from pyapalis import StorageError

            with pytest.raises(StorageError, match="statement timeout"):
                await storage.count()
            seen: list[int] = []
            released = trio.Event()

            async def handler(item: int, ctx: WorkerContext) -> None:
                assert released.is_set()
                seen.append(item)
                if len(seen) == 20:
                    ctx.stop()

            worker = WorkerBuilder("patient").backend(storage).build(handler)
            with trio.fail_after(30):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(worker.run)
                    await trio.sleep(1.0)  # claims time out and back off
                    released.set()
                    await locker.execute(b"ROLLBACK")
            assert sorted(seen) == list(range(20))
        finally:
            locker.close()


async def test_sessions_ended_while_idle_are_replaced_before_the_next_statement(
    pg_schema: str,
) -> None:
    """A session the server ended while it idled in the pool (a restart, an admin's
    ``pg_terminate_backend``) is noticed before use: the next statements succeed."""
    async with PostgresStorage(DSN, schema=pg_schema, pool_size=2) as storage:
        first = await storage.push("before")
        async with trio.open_nursery() as nursery:  # two sessions idle in the pool
            nursery.start_soon(storage.count)
            nursery.start_soon(storage.count)
        assert await _terminate_storage_sessions(pg_schema) >= 2
        with trio.fail_after(30):
            while await _admin(
                b"SELECT 1 FROM pg_stat_activity WHERE application_name = $1::text",
                [f"pyapalis:{pg_schema}".encode()],
            ):
                await trio.sleep(0.01)  # until the server has ended them
        # Each of these failed with "connection lost" on a dead pooled session.
        second = await storage.push("after")
        assert await storage.count() == 2
        fetched = await storage.fetch_by_id(first)
        assert fetched is not None and fetched.args == "before"
        assert [r.status for r in await storage.check_status([first, second])] == [
            Status.Pending
        ] * 2


async def test_a_lost_claim_is_undone_once_when_heartbeat_and_exchange_meet(
    pg_schema: str,
) -> None:
    """A claim whose answer was lost is undone before the worker's next statement; when
    its heartbeat and its next exchange both come first, at once (as after a server
    restart), one undoes it and neither fails (the second used to raise KeyError,
    which ended the worker)."""
    from pyapalis.backends import WorkerIdentity

    async with PostgresStorage(DSN, schema=pg_schema, lease=30.0) as storage:
        task_id = await storage.push("lost in transit")
        store = storage.lease_store()
        worker = WorkerIdentity.mint("unlucky", 1)
        now = time.time() + 1  # the task is due; the time marks the claim's rows
        claim = await store.exchange(worker, (), 1, now, 30.0)
        assert [str(c.task.parts.task_id) for c in claim.tasks] == [str(task_id)]
        # As if the claim's answer had never arrived (what exchange records then).
        store._in_doubt[worker.id] = [now]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(store.heartbeat, worker, now + 1, 30.0)
            nursery.start_soon(store.exchange, worker, (), 0, now + 1, 30.0)
        task = await storage.fetch_by_id(task_id)
        assert task is not None
        assert (task.parts.status, task.parts.attempt.current()) == (Status.Pending, 0)
        assert not store._in_doubt, "undone once, forgotten"
