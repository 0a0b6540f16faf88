"""pyapalis.testing.WallClock: a wall clock that moves only with trio's clock."""

from __future__ import annotations

import time

import trio
import trio.testing

from pyapalis import JsonStorage, MemoryStorage, Status, TaskBuilder
from pyapalis.backends import dequeue_backend
from pyapalis.testing import WallClock


def test_it_reads_start_plus_the_clock_it_follows() -> None:
    mock = trio.testing.MockClock()
    clock = WallClock(1_000.0, clock=mock)
    assert clock() == clock.now() == 1_000.0
    mock.jump(2.5)
    assert clock.now() == 1_002.5
    assert clock.after(30) == 1_032.5
    assert clock.clock is mock


def test_by_default_it_starts_ahead_of_the_system_clock() -> None:
    before = time.time()
    clock = WallClock()
    # Whatever the system clock stamps during a test is already past.
    assert clock.start >= before + WallClock.AHEAD
    assert clock.now() == clock.start  # no trio run has read it yet


def test_without_a_clock_it_follows_the_first_trio_run_that_reads_it() -> None:
    mock = trio.testing.MockClock(autojump_threshold=0)
    clock = WallClock(0.0)

    async def main() -> float:
        assert clock.now() == 0.0
        await trio.sleep(7)
        return clock.now()

    assert trio.run(main, clock=mock) == 7.0
    assert clock.clock is mock
    assert clock.now() == 7.0  # after the run, from outside it


def test_installed_replaces_time_time_inside_the_block_only() -> None:
    system = time.time
    with WallClock(5.0).installed() as clock:
        assert time.time is clock
        assert time.time() == 5.0
    assert time.time is system


async def test_a_scheduled_task_is_due_exactly_on_time_on_every_backend(
    wall_clock: WallClock, autojump_clock: trio.testing.MockClock
) -> None:
    assert time.time() == wall_clock.now()
    with JsonStorage.new_temp() as json_storage:
        for backend in (MemoryStorage(), json_storage, dequeue_backend(1)):
            start = trio.current_time()
            due = wall_clock.after(30)
            await backend.push_task(TaskBuilder("later").run_at_timestamp(due).build())
            task = await backend.take()
            assert trio.current_time() == start + 30, type(backend).__name__
            await backend.ack(task, Status.Done, None, None)


async def test_a_foreign_trio_run_reads_the_same_wall_clock(
    wall_clock: WallClock, autojump_clock: trio.testing.MockClock
) -> None:
    # A producer thread with its own trio run (on a real clock) pushes a task
    # due in 10 s; the consumer on this run takes it exactly 10 s later.
    storage = MemoryStorage()
    got: list[float] = []

    async def consumer() -> None:
        await storage.take()
        got.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consumer)
        await trio.testing.wait_all_tasks_blocked()
        task = TaskBuilder("from-thread").run_at_timestamp(wall_clock.after(10)).build()
        await trio.to_thread.run_sync(trio.run, storage.push_task, task)
    assert got == [10.0]
