"""MemoryStorage: the in-process backend (FIFO, schedules, waking, backpressure).

Time-dependent tests run in virtual time (``autojump_clock``) and assert exact
instants. A scheduled task's wall-clock ``run_at`` becomes a trio deadline when
it is queued: ``deadline = trio.current_time() + (run_at - time.time())``, so
the test brackets ``time.time()`` around the push to know the deadline.
"""

from __future__ import annotations

import math
import threading
import time

import pytest
import trio
import trio.testing

from pyapalis import MemoryStorage, Status, Task, TaskBuilder, TaskId, WorkerBuilder, WorkerContext
from pyapalis.backends import MemoryStorageStatistics
from pyapalis.testing import WallClock


class Tenant:
    def __init__(self, name: str) -> None:
        self.name = name


class Db:
    pass


def _no_deadline_pending() -> bool:
    return trio.lowlevel.current_statistics().seconds_to_next_deadline == math.inf


# -- construction ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "error", "shown"),
    [
        (0, ValueError, "int 0"),
        (-1, ValueError, "int -1"),
        (1.5, TypeError, "float 1.5"),
        ("3", TypeError, "str '3'"),
        (True, TypeError, "bool True"),
    ],
)
def test_bad_maxsize(bad: object, error: type[Exception], shown: str) -> None:
    message = f"MemoryStorage: maxsize must be an int >= 1 or None, got {shown}"
    with pytest.raises(error) as raised:
        MemoryStorage(maxsize=bad)  # type: ignore[arg-type]
    assert (type(raised.value), str(raised.value)) == (error, message)


def test_created_and_pushed_outside_trio() -> None:
    storage = MemoryStorage()
    task_id = storage.push_nowait("early")
    assert isinstance(task_id, TaskId)
    assert len(storage) == 1
    assert "len=1" in repr(storage)

    async def main() -> list[object]:
        seen: list[object] = []

        async def handler(item: object, ctx: WorkerContext) -> None:
            seen.append(item)
            ctx.stop()

        await WorkerBuilder("w").backend(storage).build(handler).run()
        return seen

    assert trio.run(main) == ["early"]
    assert len(storage) == 0


# -- pushing and taking -------------------------------------------------------------


async def test_push_take_fifo(storage: MemoryStorage) -> None:
    ids = [await storage.push(i) for i in range(5)]
    ids += await storage.push_bulk(range(5, 10))
    ids.append(storage.push_nowait(10))
    assert len(ids) == len(set(ids)) == 11
    assert all(isinstance(i, TaskId) for i in ids)
    assert len(storage) == 11
    tasks = [await storage.take() for _ in range(11)]
    assert [t.args for t in tasks] == list(range(11))
    assert [t.parts.task_id for t in tasks] == ids
    assert len(storage) == 0
    assert storage.take_nowait() is None


async def test_push_stream(storage: MemoryStorage) -> None:
    async def source():  # type: ignore[no-untyped-def]
        for i in range(4):
            await trio.sleep(0)
            yield f"item-{i}"

    assert await storage.push_stream(source()) == 4
    assert [storage.take_nowait().args for _ in range(4)] == [f"item-{i}" for i in range(4)]


async def test_push_task_keeps_everything(storage: MemoryStorage) -> None:
    db = Db()
    task = (
        TaskBuilder({"k": 1})
        .id("task-123")
        .attempts(7)
        .timeout(30)
        .data(db)
        .meta(Tenant("acme"))
        .priority(3)
        .build()
    )
    task.parts.attempt.increment()
    returned = await storage.push_task(task)
    assert returned == TaskId("task-123")
    got = await storage.take()
    assert got is task
    parts = got.parts
    assert parts.task_id == TaskId("task-123")
    assert parts.max_attempts == 7
    assert parts.timeout == 30.0
    assert parts.data.get(Db) is db
    assert parts.ctx["Tenant"].name == "acme"
    assert parts.priority == 3
    assert parts.attempt.current() == 1
    assert parts.status is Status.Pending


async def test_push_task_assigns_an_id_and_resets_the_status(storage: MemoryStorage) -> None:
    task = Task("x")
    task.parts.status = Status.Done
    task_id = await storage.push_task(task)
    assert isinstance(task_id, TaskId)
    assert task_id.is_ulid
    assert task.parts.task_id == task_id
    assert task.parts.status is Status.Pending
    with pytest.raises(TypeError, match="push_task: task must be a Task"):
        await storage.push_task("not a task")  # type: ignore[arg-type]


async def test_take_waits_for_a_push_without_polling(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    got: list[tuple[float, object]] = []

    async def consumer() -> None:
        task = await storage.take()
        got.append((trio.current_time(), task.args))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consumer)
        await trio.testing.wait_all_tasks_blocked()
        assert storage.statistics().consumers_waiting == 1
        # The waiting consumer set no timer: it is woken by the push, not by polling.
        assert _no_deadline_pending()
        await trio.sleep(5)
        assert got == []
        storage.push_nowait("hello")
    assert got == [(5.0, "hello")]
    assert storage.statistics().consumers_waiting == 0


async def test_a_cancelled_take_takes_nothing(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.move_on_after(3) as scope:
        await storage.take()
    assert scope.cancelled_caught
    assert trio.current_time() == 3.0
    await storage.push("kept")
    assert len(storage) == 1
    assert (await storage.take()).args == "kept"


async def test_push_nowait_from_a_thread_wakes_a_waiting_take(storage: MemoryStorage) -> None:
    # Real threads, no virtual clock; the fail_after is only a safety net.
    got: list[object] = []

    async def consumer() -> None:
        got.append((await storage.take()).args)

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(consumer)
            await trio.testing.wait_all_tasks_blocked()
            await trio.to_thread.run_sync(storage.push_nowait, "from-thread")
    assert got == ["from-thread"]


async def test_release_puts_back_at_the_front_uncounted(storage: MemoryStorage) -> None:
    await storage.push_bulk(["a", "b"])
    task = await storage.take()
    task.parts.attempt.increment()
    task.parts.status = Status.Running
    await storage.release(task)
    assert task.parts.status is Status.Pending
    assert task.parts.attempt.current() == 0
    assert [(await storage.take()).args for _ in range(2)] == ["a", "b"]


async def test_ack_sets_the_final_status(storage: MemoryStorage) -> None:
    await storage.push("x")
    task = await storage.take()
    await storage.ack(task, Status.Killed, None, RuntimeError("boom"))
    assert task.parts.status is Status.Killed
    assert len(storage) == 0


# -- schedules ------------------------------------------------------------------------


async def test_scheduled_task_never_handed_out_early(
    storage: MemoryStorage, wall_clock: WallClock, autojump_clock: trio.testing.MockClock
) -> None:
    start = trio.current_time()
    task = TaskBuilder("later").run_at_timestamp(wall_clock.after(10)).build()
    await storage.push_task(task)
    await storage.push("now")
    assert len(storage) == 2
    stats = storage.statistics()
    assert (stats.ready, stats.scheduled) == (1, 1)
    # The ready task overtakes the scheduled one.
    assert (await storage.take()).args == "now"
    assert trio.current_time() == start
    got = await storage.take()
    assert got.args == "later"
    taken_at = trio.current_time()
    assert taken_at - start == 10.0  # exactly when due, never before


async def test_scheduled_tasks_come_out_by_deadline(
    storage: MemoryStorage, wall_clock: WallClock, autojump_clock: trio.testing.MockClock
) -> None:
    # Due times read from the test's wall clock, which stands still between
    # the pushes: "a" and "a2" are due at the same instant and push order
    # decides (with run_after, the real clock's gap between each build and
    # its push decided, under load either way).
    for name, delay in [("c", 30), ("a", 10), ("b", 20), ("a2", 10)]:
        await storage.push_task(TaskBuilder(name).run_at_timestamp(wall_clock.after(delay)).build())
    assert storage.statistics().scheduled == 4
    order = []
    for _ in range(4):
        task = await storage.take()
        order.append((task.args, round(trio.current_time())))
    assert order == [("a", 10), ("a2", 10), ("b", 20), ("c", 30)]


async def test_a_past_run_at_is_due_at_once(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    await storage.push_task(TaskBuilder("old").run_at_timestamp(time.time() - 100).build())
    assert storage.statistics().ready == 1
    assert storage.take_nowait().args == "old"


async def test_scheduled_task_from_a_foreign_thread_is_not_early(
    storage: MemoryStorage, wall_clock: WallClock, autojump_clock: trio.testing.MockClock
) -> None:
    # A producer thread with its own trio run pushes a task due in 10 s while
    # a consumer waits on this run. Nothing in this run has a deadline until
    # the task is converted on this run's thread (at virtual time ``start``).
    got: list[tuple[float, object]] = []

    async def consumer() -> None:
        task = await storage.take()
        got.append((trio.current_time(), task.args))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consumer)
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        task = TaskBuilder("scheduled").run_at_timestamp(wall_clock.after(10)).build()

        def produce() -> None:
            assert trio.run(storage.push_task, task) == task.parts.task_id

        await trio.to_thread.run_sync(produce)
        # (Once the task was converted on this run's thread, the consumer waits
        # for its deadline and the virtual clock may jump while the thread ends.)
    assert len(storage) == 0
    assert len(got) == 1
    taken_at, args = got[0]
    assert args == "scheduled"
    assert taken_at - start == 10.0


async def test_scheduled_task_pushed_before_a_worker_runs(
    wall_clock: WallClock, autojump_clock: trio.testing.MockClock
) -> None:
    storage = MemoryStorage()
    seen: list[float] = []
    start = trio.current_time()
    await storage.push_task(TaskBuilder("x").run_at_timestamp(wall_clock.after(4)).build())

    async def handler(item: str, ctx: WorkerContext) -> None:
        seen.append(trio.current_time() - start)
        ctx.stop()

    await WorkerBuilder("w").backend(storage).build(handler).run()
    assert seen == [4.0]


# -- backpressure (maxsize) ---------------------------------------------------------


async def test_push_nowait_raises_would_block_when_full(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage(maxsize=2)
    storage.push_nowait(1)
    await storage.push(2)
    with pytest.raises(trio.WouldBlock, match="maxsize=2"):
        storage.push_nowait(3)
    # The async pushes wait instead (and a cancelled wait queues nothing).
    with trio.move_on_after(7) as scope:
        await storage.push_task(Task("x"))
    assert scope.cancelled_caught
    assert trio.current_time() == 7.0
    with trio.move_on_after(1):
        await storage.push("y")
    assert len(storage) == 2
    assert storage.statistics().producers_waiting == 0
    assert [storage.take_nowait().args for _ in range(2)] == [1, 2]
    assert storage.statistics().maxsize == 2


async def test_push_waits_for_room(autojump_clock: trio.testing.MockClock) -> None:
    storage = MemoryStorage(maxsize=1)
    await storage.push("first")
    returned_at: list[float] = []

    async def producer() -> None:
        await storage.push("second")
        returned_at.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(producer)
        await trio.testing.wait_all_tasks_blocked()
        assert storage.statistics().producers_waiting == 1
        await trio.sleep(3)
        assert returned_at == []
        assert len(storage) == 1
        assert (await storage.take()).args == "first"
    assert returned_at == [3.0]
    assert storage.take_nowait().args == "second"
    assert storage.statistics().producers_waiting == 0


async def test_push_task_and_push_bulk_wait_for_room(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage(maxsize=2)
    done: dict[str, float] = {}

    async def bulk() -> None:
        await storage.push_bulk(["a", "b", "c", "d"])
        done["bulk"] = trio.current_time()

    async def one() -> None:
        await trio.sleep(0.5)
        await storage.push_task(Task("t"))
        done["task"] = trio.current_time()

    async def consumer() -> None:
        for _ in range(5):
            await trio.sleep(1)
            await storage.take()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(bulk)
        nursery.start_soon(one)
        nursery.start_soon(consumer)
        await trio.sleep(0.75)
        assert len(storage) == 2
        assert storage.statistics().producers_waiting == 2
    assert len(storage) == 0
    assert storage.statistics().taken_total == 5
    # Room appears one slot a second: the bulk push needed two more, the single one.
    assert sorted(done.values()) == [2.0, 3.0]


async def test_a_worker_frees_room_for_a_waiting_push(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage(maxsize=2)
    handled: list[tuple[float, int]] = []

    async def handler(item: int) -> None:
        await trio.sleep(1)
        handled.append((trio.current_time(), item))

    worker = WorkerBuilder("w").backend(storage).build(handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        for i in range(6):
            await storage.push(i)
            assert len(storage) <= 2
        while len(handled) < 6:
            await trio.sleep(1)
        worker.context.stop()
    assert [item for _, item in handled] == list(range(6))
    assert [t for t, _ in handled] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


async def test_retries_are_never_refused_when_full(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage(maxsize=1)
    await storage.push("a")
    task = await storage.take()
    await storage.push("b")
    assert storage.statistics().ready == 1
    # Going back for a retry, or handed back at shutdown: even though full.
    await storage.retry(task, 5.0, RuntimeError("again"))
    assert len(storage) == 2
    assert task.parts.status is Status.Pending
    other = await storage.take()
    assert other.args == "b"
    await storage.release(other)
    assert len(storage) == 2
    assert storage.statistics().scheduled == 1


# -- statistics -------------------------------------------------------------------------


async def test_statistics(storage: MemoryStorage, autojump_clock: trio.testing.MockClock) -> None:
    stats = storage.statistics()
    assert isinstance(stats, MemoryStorageStatistics)
    assert stats == MemoryStorageStatistics(
        ready=0,
        scheduled=0,
        maxsize=None,
        consumers_waiting=0,
        producers_waiting=0,
        pushed_total=0,
        taken_total=0,
    )
    await storage.push_bulk([1, 2, 3])
    await storage.push_task(TaskBuilder(4).run_after(60).build())
    await storage.take()
    stats = storage.statistics()
    assert (stats.ready, stats.scheduled) == (2, 1)
    assert (stats.pushed_total, stats.taken_total) == (4, 1)
    assert len(storage) == 3


# -- threads --------------------------------------------------------------------------


async def test_four_threads_push_while_a_worker_consumes_none_lost() -> None:
    # Real threads; no virtual clock (nothing here waits on time). The
    # fail_after is a safety net only.
    storage = MemoryStorage()
    threads, per_thread = 4, 10_000
    total = threads * per_thread
    handled: list[tuple[int, int]] = []
    started = threading.Barrier(threads)

    async def handler(item: tuple[int, int], ctx: WorkerContext) -> None:
        handled.append(item)
        if len(handled) == total:
            ctx.stop()

    def produce(n: int) -> None:
        started.wait()
        for i in range(per_thread):
            storage.push_nowait((n, i))
            if i % 1000 == 0:
                time.sleep(0)  # let the worker interleave with the producers

    worker = WorkerBuilder("consumer").backend(storage).build(handler)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker.run)
            await trio.testing.wait_all_tasks_blocked()
            async with trio.open_nursery() as producers:
                for n in range(threads):
                    producers.start_soon(trio.to_thread.run_sync, produce, n)
    assert len(handled) == total
    # Every pushed item handled exactly once...
    assert set(handled) == {(n, i) for n in range(threads) for i in range(per_thread)}
    # ...and each thread's items in the order it pushed them.
    for n in range(threads):
        assert [i for m, i in handled if m == n] == list(range(per_thread))
    assert len(storage) == 0
    stats = storage.statistics()
    assert stats.pushed_total == stats.taken_total == total


async def test_producer_handle_keeps_working_across_workers(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    seen: list[tuple[str, int]] = []

    def handler_for(name: str):  # type: ignore[no-untyped-def]
        async def handler(item: int, ctx: WorkerContext) -> None:
            seen.append((name, item))
            if item % 3 == 2:
                ctx.stop()

        return handler

    async def produce() -> None:
        for i in range(6):
            await trio.sleep(1)
            await storage.push(i)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(produce)
        await WorkerBuilder("one").backend(storage).build(handler_for("one")).run()
        await WorkerBuilder("two").backend(storage).build(handler_for("two")).run()
    assert seen == [("one", 0), ("one", 1), ("one", 2), ("two", 3), ("two", 4), ("two", 5)]


async def test_a_worker_runs_a_task_scheduled_from_a_foreign_thread_on_time(
    storage: MemoryStorage, wall_clock: WallClock, autojump_clock: trio.testing.MockClock
) -> None:
    seen: list[float] = []

    async def handler(item: str, ctx: WorkerContext) -> None:
        seen.append(trio.current_time())
        ctx.stop()

    worker = WorkerBuilder("w").backend(storage).concurrency(2).build(handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        task = TaskBuilder("from-thread").run_at_timestamp(wall_clock.after(30)).build()
        await trio.to_thread.run_sync(trio.run, storage.push_task, task)
    assert len(seen) == 1
    assert seen[0] - start == 30.0
    assert task.parts.status is Status.Done
