"""MemoryStorage hooks for embedding: ``push_task_nowait`` and outcome listeners."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
import trio
import trio.testing

from pyapalis import MemoryStorage, RetryPolicy, Status, Task, TaskBuilder, TaskId, WorkerBuilder

Outcome = tuple[Any, Status, Any, "BaseException | None"]


def _recorder() -> tuple[list[Outcome], Any]:
    seen: list[Outcome] = []

    def listener(task: Task, status: Status, result: Any, error: BaseException | None) -> None:
        seen.append((task.parts.task_id, status, result, error))

    return seen, listener


# -- push_task_nowait ------------------------------------------------------------


async def test_push_task_nowait_keeps_the_task(storage: MemoryStorage) -> None:
    task = TaskBuilder("x").id("task-1").attempts(3).build()
    task.parts.status = Status.Failed
    assert storage.push_task_nowait(task) == TaskId("task-1")
    assert task.parts.status is Status.Pending
    fresh = Task("y")
    fresh_id = storage.push_task_nowait(fresh)
    assert fresh_id.is_ulid
    assert fresh.parts.task_id == fresh_id
    assert await storage.take() is task
    assert await storage.take() is fresh
    with pytest.raises(TypeError, match="push_task_nowait: task must be a Task"):
        storage.push_task_nowait("not a task")  # type: ignore[arg-type]


async def test_push_task_nowait_refuses_when_full() -> None:
    storage = MemoryStorage(maxsize=1)
    storage.push_task_nowait(Task(1))
    with pytest.raises(trio.WouldBlock, match="maxsize=1"):
        storage.push_task_nowait(Task(2))
    assert len(storage) == 1


async def test_push_task_nowait_honours_run_at_from_another_thread(
    storage: MemoryStorage,
) -> None:
    storage.bind()
    task = TaskBuilder("later").run_at_timestamp(time.time() + 3600).build()
    await trio.to_thread.run_sync(storage.push_task_nowait, task)
    await trio.testing.wait_all_tasks_blocked()
    assert storage.take_nowait() is None
    assert storage.statistics().scheduled == 1


async def test_push_task_nowait_from_another_thread_wakes_a_parked_consumer(
    storage: MemoryStorage,
) -> None:
    taken: list[Task] = []

    async def consume() -> None:
        taken.append(await storage.take())

    task = Task("from a thread")
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            await trio.testing.wait_all_tasks_blocked()
            assert storage.statistics().consumers_waiting == 1
            await trio.to_thread.run_sync(storage.push_task_nowait, task)
    assert taken == [task]


async def test_pushes_from_another_thread_share_one_pending_wake(
    storage: MemoryStorage,
) -> None:
    """While a wake is pending, further pushes from other threads queue no more."""
    wakes_before = storage.handoff.wakes
    taken: list[Any] = []

    async def consume() -> None:
        taken.append((await storage.take()).args)
        taken.append((await storage.take()).args)

    def push_many() -> None:
        for i in range(500):
            storage.push_nowait(i)
            storage.push_task_nowait(Task(-i))

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            await trio.testing.wait_all_tasks_blocked()
            # The trio thread is blocked while the thread pushes: no wake can run.
            pusher = threading.Thread(target=push_many)
            pusher.start()
            pusher.join()
    assert storage.handoff.wakes - wakes_before == 1
    assert taken == [0, 0]
    assert len(storage) == 998


# -- outcome listeners -----------------------------------------------------------


async def test_listeners_see_every_final_outcome(storage: MemoryStorage) -> None:
    seen, listener = _recorder()
    storage.add_outcome_listener(listener)
    assert storage.statistics().outcome_listeners == 1
    assert storage.statistics().fast_acks  # called from the compiled recorder
    tasks = [Task(i) for i in range(4)]
    for task in tasks:
        storage.push_task_nowait(task)
    ids = [task.parts.task_id for task in tasks]
    boom = RuntimeError("boom")
    storage.ack_nowait(tasks[0], Status.Done, None, None)  # the compiled path's case
    await storage.ack(tasks[1], Status.Done, {"v": 1}, None)
    await storage.ack(tasks[2], Status.Failed, None, boom)
    await storage.ack(tasks[3], Status.Killed, None, None)
    assert seen == [
        (ids[0], Status.Done, None, None),
        (ids[1], Status.Done, {"v": 1}, None),
        (ids[2], Status.Failed, None, boom),
        (ids[3], Status.Killed, None, None),
    ]
    assert tasks[0].parts.status is Status.Done
    assert [r.status for r in await storage.check_status(ids)] == [
        Status.Done,
        Status.Done,
        Status.Failed,
        Status.Killed,
    ]


async def test_a_removed_listener_is_no_longer_called(storage: MemoryStorage) -> None:
    seen, listener = _recorder()
    other_seen, other = _recorder()
    storage.add_outcome_listener(listener)
    storage.add_outcome_listener(other)
    storage.remove_outcome_listener(listener)
    assert storage.statistics().outcome_listeners == 1
    task = Task(1)
    storage.push_task_nowait(task)
    storage.ack_nowait(task, Status.Done, None, None)
    assert (seen, len(other_seen)) == ([], 1)
    storage.remove_outcome_listener(other)
    storage.remove_outcome_listener(other)  # unknown: ignored
    assert storage.statistics().outcome_listeners == 0
    with pytest.raises(TypeError, match="listener must be callable"):
        storage.add_outcome_listener(42)  # type: ignore[arg-type]


async def test_listeners_are_called_before_and_after_result_waiters(
    storage: MemoryStorage,
) -> None:
    """A waiter sends acks down the Python path and leaving restores the compiled
    one; the listener is called on both."""
    seen, listener = _recorder()
    storage.add_outcome_listener(listener)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(storage.wait_for_single, TaskId.generate())
        await trio.testing.wait_all_tasks_blocked()
        assert not storage.statistics().fast_acks
        waited = Task(0)
        storage.push_task_nowait(waited)
        storage.ack_nowait(waited, Status.Done, None, None)
        nursery.cancel_scope.cancel()
    assert storage.statistics().fast_acks
    task = Task(1)
    storage.push_task_nowait(task)
    storage.ack_nowait(task, Status.Done, None, None)
    assert len(seen) == 2


async def test_a_failing_listener_is_logged_and_the_ack_completes(
    storage: MemoryStorage, caplog: pytest.LogCaptureFixture
) -> None:
    def bad(*_args: object) -> None:
        raise ValueError("listener bug")

    seen, listener = _recorder()
    storage.add_outcome_listener(bad)
    storage.add_outcome_listener(listener)
    task = Task(1)
    storage.push_task_nowait(task)
    with caplog.at_level(logging.ERROR, logger="pyapalis.memory"):
        await storage.ack(task, Status.Done, 7, None)
    assert "outcome listener" in caplog.text
    assert len(seen) == 1
    assert (await storage.wait_for_single(task.parts.task_id)).unwrap() == 7


async def test_a_worker_reports_finals_not_retries(storage: MemoryStorage) -> None:
    seen, listener = _recorder()
    storage.add_outcome_listener(listener)
    calls: list[int] = []

    async def handler(item: int) -> int:
        calls.append(item)
        if item == 2 and calls.count(2) < 2:
            raise ValueError("once")
        if item == 3:
            raise KeyError("always")
        return item * 10

    worker = WorkerBuilder("hooks").backend(storage).retry(RetryPolicy.retries(1)).build(handler)
    ids = [storage.push_nowait(i) for i in (1, 2, 3)]
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker.run)
            while len(seen) < 3:
                await trio.sleep(0.001)
            worker.context.stop()
    by_id = {task_id: (status, result, error) for task_id, status, result, error in seen}
    assert len(seen) == 3
    assert by_id[ids[0]] == (Status.Done, 10, None)
    assert by_id[ids[1]] == (Status.Done, 20, None)
    status, result, error = by_id[ids[2]]
    assert (status, result, type(error)) == (Status.Failed, None, KeyError)


# -- cross-thread wake-ups -------------------------------------------------------


async def _take_pushed_from_threads(storage: MemoryStorage, rounds: int) -> list[int]:
    """Park a consumer, push one task from a plain thread, take it; ``rounds`` times."""
    taken: list[int] = []
    for i in range(rounds):
        async with trio.open_nursery() as nursery:

            async def consume() -> None:
                taken.append((await storage.take()).args)

            nursery.start_soon(consume)
            await trio.testing.wait_all_tasks_blocked()
            pusher = threading.Thread(target=storage.push_nowait, args=(i,))
            pusher.start()
            await trio.to_thread.run_sync(pusher.join)
    return taken


async def test_later_cross_thread_wakes_go_through_the_waker_task(
    storage: MemoryStorage,
) -> None:
    with trio.fail_after(5):
        assert await _take_pushed_from_threads(storage, 1) == [0]
        # The first wake came through the token and started the waker task.
        await trio.testing.wait_all_tasks_blocked()
        assert storage.handoff.waker_token is trio.lowlevel.current_trio_token()
        assert storage.handoff.signal_fileno is not None
        assert await _take_pushed_from_threads(storage, 20) == list(range(20))
    assert not storage._queue.wake_pending


def test_a_storage_bound_to_a_later_run_is_still_woken_from_threads() -> None:
    storage = MemoryStorage()
    for _ in range(3):
        assert trio.run(_take_pushed_from_threads, storage, 3) == [0, 1, 2]
        assert storage.handoff.waker_token is None  # the run's waker ended with it


def test_a_wake_pending_when_its_run_ended_does_not_block_the_next_run() -> None:
    storage = MemoryStorage()

    async def end_with_a_wake_pending() -> None:
        await _take_pushed_from_threads(storage, 1)
        storage._queue.wake_pending = True  # as if a thread signalled just as the run ended

    trio.run(end_with_a_wake_pending)
    assert trio.run(_take_pushed_from_threads, storage, 2) == [0, 1]


def test_the_wake_signal_closes_with_its_storage() -> None:
    import gc
    import os

    storage = MemoryStorage()
    trio.run(_take_pushed_from_threads, storage, 1)
    fd = storage.handoff.signal_fileno
    assert fd is not None
    os.fstat(fd)
    del storage
    gc.collect()
    with pytest.raises(OSError):
        os.fstat(fd)


def test_a_storage_taken_from_two_live_runs_in_turn_is_woken_in_each() -> None:
    """Rebinding back and forth between two live runs keeps one waker per run."""
    storage = MemoryStorage()
    tokens: dict[str, trio.lowlevel.TrioToken] = {}
    results: dict[str, list[int]] = {"a": [], "b": []}
    turn = {"a": threading.Event(), "b": threading.Event()}
    finished = {"a": threading.Event(), "b": threading.Event()}

    def run(name: str) -> None:
        async def main() -> None:
            tokens[name] = trio.lowlevel.current_trio_token()
            for _ in range(3):
                await trio.to_thread.run_sync(turn[name].wait)
                turn[name].clear()
                results[name].extend(await _take_pushed_from_threads(storage, 2))
                finished[name].set()

        trio.run(main)

    threads = [threading.Thread(target=run, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for _ in range(3):
        for name in ("a", "b"):
            turn[name].set()
            assert finished[name].wait(5)
            finished[name].clear()
    for thread in threads:
        thread.join(5)
    assert results == {"a": [0, 1] * 3, "b": [0, 1] * 3}
    assert storage.handoff.waker_runs == frozenset()
