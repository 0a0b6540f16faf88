"""PostgresStorage beyond the conformance suite: the shared-backend model, capabilities,
producers outside trio and inside the caller's transaction."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing

from pyapalis import (
    BackgroundTask,
    CodecError,
    CurrentTask,
    PostgresStorage,
    Status,
    StorageError,
    TaskBuilder,
    TaskHash,
    TaskId,
    WorkerBuilder,
    WorkerContext,
    WorkerPool,
)
from pyapalis.backends import WorkerIdentity
from pyapalis.backends._codec import JsonCodec
from pyapalis.backends._kit._clock import run_clock
from pyapalis.backends._kit._leases import Settlement
from pyapalis.testing import WallClock
from tests._postgres import DSN, needs_postgres
from tests._postgres import pg_schema as pg_schema

pytestmark = needs_postgres


@pytest.fixture
def wall_clock(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> WallClock:
    clock = WallClock(clock=autojump_clock)
    monkeypatch.setattr("time.time", clock)
    return clock


@pytest.fixture
async def storage(pg_schema: str, wall_clock: WallClock) -> AsyncIterator[PostgresStorage]:
    async with PostgresStorage(DSN, schema=pg_schema, lease=10.0) as opened:
        yield opened


async def _drain(storage: PostgresStorage, count: int, concurrency: int = 1) -> list[object]:
    seen: list[object] = []

    async def handler(item: object, ctx: WorkerContext) -> None:
        seen.append(item)
        if len(seen) == count:
            ctx.stop()

    worker = WorkerBuilder("drain").backend(storage).concurrency(concurrency).build(handler)
    await worker.run()
    return seen


async def test_priority_then_run_at_then_push_order(storage: PostgresStorage) -> None:
    await storage.push("low-1")
    await storage.push_task(TaskBuilder("high").priority(5).build())
    await storage.push("low-2")
    await storage.push_task(TaskBuilder("mid").priority(1).build())
    assert await _drain(storage, 4) == ["high", "mid", "low-1", "low-2"]


async def test_named_queues_are_separate(storage: PostgresStorage) -> None:
    emails = storage.queue("emails")
    await emails.push("mail")
    await storage.push("job")
    assert await _drain(emails, 1) == ["mail"]
    assert await storage.count() == 1
    assert await emails.count() == 0
    assert await storage.fetch_by_id(await emails.push("x")) is None


async def test_bulk_push_is_one_statement_in_order(storage: PostgresStorage) -> None:
    ids = await storage.push_bulk(range(500))
    assert len(set(ids)) == 500
    assert await _drain(storage, 500, concurrency=8) == list(range(500))


async def test_push_task_of_an_existing_id_stores_nothing(storage: PostgresStorage) -> None:
    first = await storage.push_task(TaskBuilder("a").id("fixed").build())
    again = await storage.push_task(TaskBuilder("b").id("fixed").build())
    assert first == again == TaskId("fixed")
    task = await storage.fetch_by_id("fixed")
    assert task is not None and task.args == "a"


async def test_uniqueness_key_blocks_only_while_live(storage: PostgresStorage) -> None:
    info = {"pyapalis.background": {"task_name": "mail", "uniq": "user-1"}}
    first = await storage.push_task(TaskBuilder("one").with_ctx(dict(info)).build())
    second = await storage.push_task(TaskBuilder("two").with_ctx(dict(info)).build())
    assert second == first
    await _drain(storage, 1)
    (result,) = await storage.check_status([first])
    assert result.status is Status.Done
    third = await storage.push_task(TaskBuilder("three").with_ctx(dict(info)).build())
    assert third != first


async def test_late_ack_of_a_lost_lease_changes_nothing(storage: PostgresStorage) -> None:
    task_id = await storage.push_task(TaskBuilder("x").attempts(3).build())
    store = storage.lease_store()
    old = WorkerIdentity.mint("old", 1)
    new = WorkerIdentity.mint("new", 1)
    now = run_clock().wall_now()
    claim = await store.exchange(old, (), 1, now, 5.0)
    assert [c.attempt for c in claim.tasks] == [1]
    # Its lease expires; recovery re-queues it; another worker claims attempt 2.
    assert await store.recover(now + 6.0, 10) == 1
    claim2 = await store.exchange(new, (), 1, now + 6.0, 5.0)
    assert [c.attempt for c in claim2.tasks] == [2]
    # The old worker's late ack is fenced out.
    await store.exchange(old, [Settlement(str(task_id), 1, Status.Done, "late")], 0, now + 7, 5)
    (result,) = await storage.check_status([task_id])
    assert result.status is Status.Running
    await store.exchange(new, [Settlement(str(task_id), 2, Status.Done, "ok")], 0, now + 7, 5)
    assert (await storage.wait_for_single(task_id)).unwrap() == "ok"


async def test_heartbeat_extends_every_held_lease(storage: PostgresStorage) -> None:
    await storage.push_bulk(["a", "b"])
    store = storage.lease_store()
    worker = WorkerIdentity.mint("beater", 2)
    now = run_clock().wall_now()
    claim = await store.exchange(worker, (), 2, now, 5.0)
    assert len(claim.tasks) == 2
    assert await store.heartbeat(worker, now + 4.0, 5.0) == 2
    assert await store.recover(now + 6.0, 10) == 0, "the beat moved the leases to now + 9"
    assert await store.recover(now + 9.5, 10) == 2
    workers = await storage.list_workers()
    assert [w.name for w in workers] == ["beater"]


async def test_lease_expiry_without_attempts_left_fails_the_task(storage: PostgresStorage) -> None:
    task_id = await storage.push_task(TaskBuilder("once").attempts(1).build())
    store = storage.lease_store()
    now = run_clock().wall_now()
    await store.exchange(WorkerIdentity.mint("w", 1), (), 1, now, 1.0)
    assert await store.recover(now + 2.0, 10) == 1
    result = await storage.wait_for_single(task_id)
    assert result.status is Status.Failed
    with pytest.raises(Exception, match="no attempts"):
        result.unwrap()


async def test_capabilities(storage: PostgresStorage) -> None:
    task_id = await storage.push("x")
    task = await storage.fetch_by_id(task_id)
    assert task is not None and task.parts.status is Status.Pending
    task.parts.status = Status.Killed
    await storage.update(task)
    assert (await storage.check_status([task_id]))[0].status is Status.Killed
    assert await storage.resume_by_id(task_id)
    assert not await storage.resume_by_id(task_id), "Pending: nothing to resume"
    await storage.reschedule(task, 3600)
    refetched = await storage.fetch_by_id(task_id)
    assert refetched is not None and refetched.parts.status is Status.Pending
    assert [t.parts.task_id for t in await storage.list_tasks(Status.Pending)] == [task_id]
    assert await storage.list_tasks(Status.Done) == []
    assert await storage.delete(task_id)
    assert await storage.fetch_by_id(task_id) is None
    done = await storage.push("y")
    await _drain(storage, 1)
    assert (await storage.wait_for_single(done)).status is Status.Done
    assert await storage.vacuum() == 1
    with pytest.raises(KeyError):
        await storage.check_status([done])
    with pytest.raises(ValueError, match="page must be"):
        await storage.list_tasks(page=0)


async def test_update_of_a_running_task_is_refused(storage: PostgresStorage) -> None:
    await storage.push("x")
    task = await storage.take()
    task.parts.status = Status.Pending
    with pytest.raises(StorageError, match="Running"):
        await storage.update(task)
    await storage.release(task)


async def test_an_undecodable_stored_task_fails_and_the_worker_goes_on(
    storage: PostgresStorage,
) -> None:
    bad = await storage.push("bad")
    await storage.push("good")
    from pyapalis.backends._postgres._connections import driver

    conn = await driver().connect(DSN)
    try:
        table = f'"{storage.schema}".tasks'
        await conn.execute(
            f"UPDATE {table} SET args = '\\xff'::bytea WHERE id = $1::text".encode(),
            [str(bad).encode()],
        )
    finally:
        conn.close()
    assert await _drain(storage, 1) == ["good"]
    result = await storage.wait_for_single(bad)
    assert result.status is Status.Failed
    with pytest.raises(Exception, match="cannot decode"):
        result.unwrap()


async def test_bad_arguments_are_refused_with_nothing_stored(storage: PostgresStorage) -> None:
    with pytest.raises(Exception, match="cannot store the task's arguments"):
        await storage.push_bulk([1, object()])
    assert await storage.count() == 0


class _RefusingCodec(JsonCodec):
    """Refuses every value with ``ValueError(message)`` (an empty message by default)."""

    __slots__ = ("message",)

    def __init__(self, message: str = "") -> None:
        super().__init__()
        self.message = message

    def encode(self, value: Any) -> bytes:
        raise ValueError(self.message)


@dataclasses.dataclass
class _Label:
    text: str


async def test_unencodable_values_fail_alike_on_every_push_path(pg_schema: str) -> None:
    """One encoding step for every path: an error with an empty message is named by its
    type alone (no dangling ``": "``), one with a message as ``Type: message``."""
    storage = PostgresStorage(DSN, schema=pg_schema, codec=_RefusingCodec())
    arguments = r"^PostgresStorage: cannot store the task's arguments: ValueError$"
    metadata = r"^PostgresStorage: cannot store the task's metadata: ValueError$"
    labelled = TaskBuilder("x").meta(_Label("a")).build()
    # Each refusal comes before any I/O: this storage never connects.
    with pytest.raises(CodecError, match=arguments):
        await storage.push("x")
    with pytest.raises(CodecError, match=arguments):
        await storage.push_bulk(["x"])
    with pytest.raises(CodecError, match=arguments):
        await storage.push_task(TaskBuilder("x").build())
    with pytest.raises(CodecError, match=arguments):
        await storage.push_task(labelled)
    with pytest.raises(CodecError, match=metadata):
        await storage.update(labelled)  # encoded by the storage itself, not by PushRows
    with pytest.raises(CodecError, match=arguments):
        await trio.to_thread.run_sync(storage.push_sync, "x")
    named = PostgresStorage(DSN, schema=pg_schema, codec=_RefusingCodec("no way"))
    with pytest.raises(CodecError, match=r"arguments: ValueError: no way$"):
        await named.push("x")
    with pytest.raises(CodecError, match=r"metadata: ValueError: no way$"):
        await named.update(labelled)
    storage.close()
    named.close()


def test_bad_configuration_names_the_argument() -> None:
    with pytest.raises(ValueError, match="lease"):
        PostgresStorage(DSN, lease=0)
    with pytest.raises(ValueError, match="queue"):
        PostgresStorage(DSN, queue="")
    with pytest.raises(ValueError, match="pool_size"):
        PostgresStorage(DSN, pool_size=0)
    with pytest.raises(TypeError, match="dsn"):
        PostgresStorage(None)  # type: ignore[arg-type]


# -- producers outside trio and inside the caller's transaction ---------------------


def test_push_sync_from_plain_threads(pg_schema: str) -> None:
    storage = PostgresStorage(DSN, schema=pg_schema)
    ids: list[TaskId] = []
    lock = threading.Lock()

    def produce(n: int) -> None:
        for i in range(5):
            task_id = storage.push_sync({"thread": n, "i": i})
            with lock:
                ids.append(task_id)

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    storage.close()
    assert len(set(ids)) == 20

    async def count() -> int:
        async with PostgresStorage(DSN, schema=pg_schema) as opened:
            return await opened.count()

    assert trio.run(count) == 20


def test_push_on_the_callers_connection_exists_only_if_it_commits(pg_schema: str) -> None:
    import psycopg

    storage = PostgresStorage(DSN, schema=pg_schema)
    storage.push_sync("bring the schema up")  # any first use migrates it
    with psycopg.connect(DSN) as conn:
        kept = storage.push_on(conn, {"order": 1})
        conn.commit()
        dropped = storage.push_on(conn, {"order": 2})
        conn.rollback()
        with conn.transaction():
            conn.execute("SELECT 1")
            inside = storage.push_task_on(conn, TaskBuilder("t").id("in-tx").build())

    async def statuses() -> list[object]:
        async with PostgresStorage(DSN, schema=pg_schema) as opened:
            return [await opened.fetch_by_id(i) is not None for i in (kept, dropped, inside)]

    storage.close()
    assert trio.run(statuses) == [True, False, True]
    assert inside == TaskId("in-tx")


def test_push_on_an_async_psycopg_connection(pg_schema: str) -> None:
    import psycopg

    storage = PostgresStorage(DSN, schema=pg_schema)
    storage.push_sync("bring the schema up")

    async def main() -> tuple[TaskId, TaskId]:
        async with await psycopg.AsyncConnection.connect(DSN) as conn:
            kept = await storage.push_on_async(conn, "kept")
            await conn.commit()
            dropped = await storage.push_on_async(conn, "dropped")
            await conn.rollback()
            return kept, dropped

    kept, dropped = asyncio.run(main())
    storage.close()

    async def present() -> list[bool]:
        async with PostgresStorage(DSN, schema=pg_schema) as opened:
            return [await opened.fetch_by_id(i) is not None for i in (kept, dropped)]

    assert trio.run(present) == [True, False]


# -- wake-up across processes' sessions -----------------------------------------------


async def test_a_push_through_another_session_wakes_an_idle_worker(pg_schema: str) -> None:
    """NOTIFY, not the poll: the poll is an hour, the push arrives by another session."""
    async with PostgresStorage(DSN, schema=pg_schema, poll=3600.0) as storage:
        other = PostgresStorage(DSN, schema=pg_schema)
        seen: list[str] = []

        async def handler(item: str, ctx: WorkerContext) -> None:
            seen.append(item)
            ctx.stop()

        worker = WorkerBuilder("idle").backend(storage).build(handler)
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(worker.run)
                await trio.sleep(0.2)  # the worker is idle, waiting for a wake
                await trio.to_thread.run_sync(other.push_sync, "from afar")
        other.close()
        assert seen == ["from afar"]


# -- typed tasks ----------------------------------------------------------------------


class Report(BackgroundTask):
    TASK_NAME = "report"
    MAX_RETRIES = 0
    day: str

    async def run(self, task: CurrentTask, app: Any) -> str:
        return f"report {self.day}"

    def uniq(self) -> TaskHash | None:
        return TaskHash.of(self.day)


async def test_typed_tasks_and_uniqueness_across_handles(
    storage: PostgresStorage, pg_schema: str
) -> None:
    async with PostgresStorage(DSN, schema=pg_schema) as other:
        first = await Report("monday").enqueue(storage)
        # Another handle (as another process would) meets the same unique key.
        assert await Report("monday").enqueue(other) == first
        pool = WorkerPool(storage).register_task_type(Report)

        async def until_done() -> None:
            # RemoveDone (the default on a backend that can delete): gone once Done.
            while await storage.fetch_by_id(first) is not None:
                await trio.sleep(0.01)

        await pool.run_until(until_done)
        second = await Report("monday").enqueue(other)  # finished: the key is free again
        assert second != first


async def test_a_claim_whose_answer_was_lost_is_undone_before_the_next_heartbeat(
    storage: PostgresStorage,
) -> None:
    """A session dropped after the server applied a claim: the worker never got those
    tasks, so its heartbeat must not keep them Running under it; they come back
    Pending, the claim not counted."""
    task_id = await storage.push("orphan")
    store = storage.lease_store()
    worker = WorkerIdentity.mint("w", 1)
    now = run_clock().wall_now()
    claim = await store.exchange(worker, (), 1, now, 5.0)
    assert [c.task.parts.task_id for c in claim.tasks] == [task_id]
    store._in_doubt[worker.id] = [now]  # as the store records it when the answer is lost
    assert await store.heartbeat(worker, now + 1.0, 5.0) == 0, "nothing left to extend"
    task = await storage.fetch_by_id(task_id)
    assert task is not None
    assert (task.parts.status, task.parts.attempt.current()) == (Status.Pending, 0)
