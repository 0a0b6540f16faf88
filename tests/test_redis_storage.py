"""RedisStorage as users see it: capabilities, workers sharing a queue, typed tasks, push_sync.

Worker tests run in virtual time (``autojump_clock``): a RedisStorage under a
virtual clock keeps the run busy during round trips, so the clock moves only
when the run is idle for real (see ``_client.RedisClient.keep_busy``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing
from _redis_support import REDIS_URL, drop_namespace, needs_redis, new_namespace

from pyapalis import (
    BackgroundTask,
    CurrentTask,
    RedisStorage,
    Status,
    StorageError,
    TaskBuilder,
    TaskHash,
    TaskId,
    WorkerBuilder,
    WorkerContext,
    WorkerPool,
    open_backend,
)

pytestmark = needs_redis


@pytest.fixture
async def namespace() -> AsyncIterator[str]:
    name = new_namespace()
    try:
        yield name
    finally:
        await drop_namespace(REDIS_URL, name)


@pytest.fixture
async def storage(namespace: str) -> AsyncIterator[RedisStorage]:
    async with RedisStorage(REDIS_URL, namespace=namespace, lease=10.0) as opened:
        yield opened


async def run_until(storage: RedisStorage, handler: Any, done: trio.Event, **kw: Any) -> None:
    builder = WorkerBuilder(kw.pop("name", "w")).backend(storage)
    if "concurrency" in kw:
        builder = builder.concurrency(kw.pop("concurrency"))
    worker = builder.build(handler)

    async def until() -> None:
        await done.wait()

    with trio.fail_after(60):
        await worker.run_until(until)


def test_construction_does_no_io_and_refuses_bad_arguments() -> None:
    storage = RedisStorage("redis://:secret@127.0.0.1:1/0", queue="emails")
    assert "secret" not in repr(storage) and "***" in storage.url
    assert storage.queue("other").queue_name == "other"
    with pytest.raises(ValueError, match="url must be a redis://"):
        RedisStorage("http://127.0.0.1")
    with pytest.raises(ValueError, match="queue must not contain braces"):
        RedisStorage(queue="a{b}")
    with pytest.raises(ValueError, match="retention must be seconds >= 0"):
        RedisStorage(retention=-1)
    with pytest.raises(ValueError, match="lease must be a positive number"):
        RedisStorage(lease=0)


def test_open_backend_builds_it_from_a_url() -> None:
    storage = open_backend(f"{REDIS_URL}?queue=emails&lease=12&namespace=app")
    assert isinstance(storage, RedisStorage)
    assert (storage.queue_name, storage.lease, storage.namespace) == ("emails", 12.0, "app")
    with pytest.raises(ValueError, match="unknown option 'synchronous'"):
        open_backend(f"{REDIS_URL}?synchronous=FULL")


async def test_an_unreachable_server_is_a_storage_error() -> None:
    storage = RedisStorage(f"redis://127.0.0.1:{_closed_port()}/0", connect_timeout=1.0)
    with pytest.raises(StorageError, match=r"RedisStorage\(redis://127.0.0.1:\d+/0\)"):
        await storage.push(1)
    await storage.aclose()


def _closed_port() -> int:
    from _redis_support import free_port

    return free_port()


async def test_keys_share_one_hash_tag_per_queue(storage: RedisStorage, namespace: str) -> None:
    import coredis

    await storage.push(1)
    await storage.queue("other").push(2)
    async with coredis.Redis.from_url(REDIS_URL) as client:
        keys = {key.decode() async for key in client.scan_iter(match=f"{namespace}:*")}
    assert keys, "the push stored nothing"
    tags = {key.split(":", 2)[1] for key in keys}
    assert tags == {"{default}", "{other}"}, keys


async def test_capabilities(storage: RedisStorage, autojump_clock: trio.testing.MockClock) -> None:
    first = await storage.push("a")
    later = await storage.push_task(TaskBuilder("b").run_after(60).meta({"k": 1}).build())
    fetched = await storage.fetch_by_id(later)
    assert fetched is not None
    assert (fetched.args, fetched.parts.status, fetched.parts.ctx) == (
        "b",
        Status.Pending,
        {"dict": {"k": 1}},
    )
    assert await storage.fetch_by_id("missing") is None
    # update: a final status finishes it, Pending queues it again.
    fetched.parts.status = Status.Killed
    await storage.update(fetched)
    [result] = await storage.check_status([later])
    assert result.status is Status.Killed
    assert await storage.resume_by_id(later) is True
    assert await storage.resume_by_id(first) is False  # Pending: nothing to resume
    [result] = await storage.check_status([later])
    assert result.status is Status.Pending
    # reschedule an existing task; an unknown one is a KeyError.
    await storage.reschedule(fetched, 30)
    with pytest.raises(KeyError, match="unknown task id"):
        await storage.reschedule(TaskBuilder("x").id("nope").build(), 1)
    # list_tasks pages in push order, by status.
    ids = [first, later, *await storage.push_bulk(range(5))]
    page1 = await storage.list_tasks(page=1, page_size=3)
    page3 = await storage.list_tasks(page=3, page_size=3)
    assert [t.parts.task_id for t in page1] == ids[:3]
    assert [t.parts.task_id for t in page3] == ids[6:]
    assert len(await storage.list_tasks(status="Pending", page_size=100)) == 7
    assert await storage.list_tasks(status=Status.Done) == []
    # delete forgets a task for good; check_status then raises KeyError.
    assert await storage.delete(first) is True
    assert await storage.delete(first) is False
    with pytest.raises(KeyError):
        await storage.check_status([first])
    assert await storage.count() == 6


async def test_two_workers_share_a_queue_exactly_once(
    storage: RedisStorage, autojump_clock: trio.testing.MockClock
) -> None:
    ids = await storage.push_bulk(range(300))
    seen: dict[int, str] = {}
    done = trio.Event()

    async def handler(item: int, ctx: WorkerContext) -> int:
        assert item not in seen, f"{item} ran twice"
        seen[item] = ctx.name
        if len(seen) == 300:
            done.set()
        await trio.sleep(0.001)
        return item

    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: run_until(storage, handler, done, name="a", concurrency=8))
        nursery.start_soon(
            lambda: run_until(storage.queue("default"), handler, done, name="b", concurrency=8)
        )
    assert sorted(seen) == list(range(300))
    assert set(seen.values()) == {"a", "b"}
    results = [r async for r in storage.wait_for(ids)]
    assert sorted(r.unwrap() for r in results) == list(range(300))


async def test_list_workers_shows_running_workers(
    storage: RedisStorage, autojump_clock: trio.testing.MockClock
) -> None:
    await storage.push("x")
    listed: list[Any] = []
    done = trio.Event()

    async def handler(item: str) -> None:
        listed.extend(await storage.list_workers())
        done.set()

    await run_until(storage, handler, done, name="lister")
    assert [info.name for info in listed] == ["lister"]
    assert listed[0].last_seen >= listed[0].started_at
    assert await storage.list_workers() == []  # a run that ended cleanly is forgotten
    await storage.register_worker("manual")
    assert [info.name for info in await storage.list_workers()] == ["manual"]


async def test_retries_and_results_survive_in_redis(
    storage: RedisStorage, autojump_clock: trio.testing.MockClock
) -> None:
    task_id = await storage.push_task(TaskBuilder(3).attempts(3).build())
    done = trio.Event()
    attempts: list[int] = []

    async def handler(item: int, ctx: WorkerContext, task_id: TaskId) -> int:
        attempts.append(len(attempts) + 1)
        if len(attempts) < 3:
            raise RuntimeError("not yet")
        done.set()
        return item * 2

    await run_until(storage, handler, done)
    result = await storage.wait_for_single(task_id)
    assert (result.status, result.unwrap(), attempts) == (Status.Done, 6, [1, 2, 3])
    stored = await storage.fetch_by_id(task_id)
    assert stored is not None and stored.parts.attempt.current() == 3
    assert await storage.vacuum() == 1
    assert await storage.fetch_by_id(task_id) is None


class Greet(BackgroundTask):
    TASK_NAME = "greet"
    QUEUE = "typed"

    name: str

    async def run(self, task: CurrentTask, app: Any) -> str:
        return f"hello {self.name}"

    def uniq(self) -> TaskHash | None:
        return TaskHash.of(self.name)


async def test_typed_tasks_and_uniqueness_across_handles(
    storage: RedisStorage, autojump_clock: trio.testing.MockClock
) -> None:
    first = await Greet("ann").enqueue(storage)
    # Another handle (as another process would have) sees the same holder.
    other = RedisStorage(REDIS_URL, namespace=storage.namespace)
    assert await Greet("ann").enqueue(other) == first
    assert await Greet("bob").enqueue(other) != first
    pool = WorkerPool(storage).register_task_type(Greet)
    typed = storage.queue("typed")

    async def finished() -> None:
        while True:
            statuses = [r.status for r in await typed.check_status([first])]
            if statuses == [Status.Done]:
                return
            await trio.sleep(0.05)

    with trio.fail_after(60):
        await pool.run_until(finished)
    # Done frees the key (or RemoveDone deleted the task): a new one is stored.
    assert await Greet("ann").enqueue(storage) != first
    await other.aclose()


def test_push_sync_from_threads_and_asyncio() -> None:
    namespace = new_namespace()
    try:
        _push_sync_from_threads_and_asyncio(namespace)
    finally:
        trio.run(drop_namespace, REDIS_URL, namespace)


def _push_sync_from_threads_and_asyncio(namespace: str) -> None:
    storage = RedisStorage(REDIS_URL, namespace=namespace)
    ids: list[TaskId] = []
    threads = [
        threading.Thread(target=lambda: ids.append(storage.push_sync("thread"))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    async def from_asyncio() -> list[TaskId]:
        return await asyncio.to_thread(storage.push_bulk_sync, ["asyncio", "asyncio"])

    ids += asyncio.run(from_asyncio())
    ids.append(storage.push_task_sync(TaskBuilder("fixed").id("sync-id").build()))
    assert storage.push_task_sync(TaskBuilder("again").id("sync-id").build()) == TaskId("sync-id")
    storage.close_sync()

    async def check() -> list[Any]:
        async with storage:
            return [task.args for task in await storage.list_tasks(page_size=100)]

    args = trio.run(check)
    assert sorted(args) == ["asyncio", "asyncio", "fixed", "thread", "thread", "thread", "thread"]
    assert len(set(ids)) == 7


async def test_kill_count_and_queues(
    storage: RedisStorage, autojump_clock: trio.testing.MockClock
) -> None:
    doomed, kept = await storage.push_bulk(["doomed", "kept"])
    await storage.queue("other").push(1)
    assert await storage.kill_by_id(doomed, "not wanted") is True
    assert await storage.kill_by_id(doomed) is False  # already final
    [result] = await storage.check_status([doomed])
    assert result.status is Status.Killed
    with pytest.raises(Exception, match="not wanted"):
        result.unwrap()
    counts = await storage.count_tasks()
    assert (counts[Status.Pending], counts[Status.Killed], counts[Status.Done]) == (1, 1, 0)
    assert await storage.list_queues() == ["default", "other"]
    assert [t.args for t in await storage.list_tasks(status="Killed")] == ["doomed"]
    assert kept != doomed
