"""The backend kit's result store: waiters (with polling), the bounded record, listeners."""

from __future__ import annotations

import threading

import pytest
import trio
import trio.testing

from pyapalis import Status, Task, TaskId
from pyapalis.backends import TaskResult
from pyapalis.backends._kit._results import FinishedTasks, ResultStore, ResultWaiters

A, B, C = (TaskId.generate() for _ in range(3))


def _nothing(keys: set[TaskId]) -> dict[TaskId, str]:
    return {}


async def test_known_outcomes_come_first_then_deliveries_each_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    changes: list[bool] = []
    waiters: ResultWaiters[str] = ResultWaiters(lambda: changes.append(bool(waiters)))
    got: list[tuple[TaskId, str]] = []

    async def collect() -> None:
        async for item in waiters.wait([B, A, B, C], lambda keys: {A: "known"}):
            got.append(item)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect)
        await trio.testing.wait_all_tasks_blocked()
        assert got == [(A, "known")]
        assert len(waiters) == 3  # A stays registered until the wait ends
        assert waiters.deliver(C, "c") is True
        assert waiters.deliver(A, "again") is True  # already reported: not yielded twice
        assert waiters.deliver(B, "b") is True
    assert got == [(A, "known"), (C, "c"), (B, "b")]
    assert not waiters and changes[-1] is False
    assert waiters.deliver(A, "late") is False


async def test_an_outcome_delivered_before_the_lookup_is_not_missed() -> None:
    waiters: ResultWaiters[str] = ResultWaiters()

    def lookup(keys: set[TaskId]) -> dict[TaskId, str]:
        waiters.deliver(A, "raced")  # as an ack on another thread would, mid-lookup
        return {}

    assert await waiters.wait_single(A, lookup) == "raced"
    assert not waiters


async def test_poll_finds_outcomes_recorded_elsewhere(
    autojump_clock: trio.testing.MockClock,
) -> None:
    waiters: ResultWaiters[str] = ResultWaiters()
    polls: list[float] = []

    async def poll(keys: set[TaskId]) -> dict[TaskId, str]:
        polls.append(trio.current_time())
        return {A: "from the database"} if len(polls) == 3 else {}

    start = trio.current_time()
    assert await waiters.wait_single(A, _nothing, poll=poll, every=2.0) == "from the database"
    assert [at - start for at in polls] == [2.0, 4.0, 6.0]


async def test_check_runs_after_every_wake(autojump_clock: trio.testing.MockClock) -> None:
    waiters: ResultWaiters[str] = ResultWaiters()

    def closed() -> None:
        raise RuntimeError("the backend is closed")

    async with trio.open_nursery() as nursery:

        async def wake() -> None:
            await trio.testing.wait_all_tasks_blocked()
            waiters.wake_all()

        nursery.start_soon(wake)
        with pytest.raises(RuntimeError, match="closed"):
            await waiters.wait_single(A, _nothing, check=closed)
    assert not waiters


async def test_a_delivery_from_another_thread_wakes_the_waiter() -> None:
    waiters: ResultWaiters[str] = ResultWaiters()

    async def deliver_later() -> None:
        await trio.testing.wait_all_tasks_blocked()
        thread = threading.Thread(target=waiters.deliver, args=(A, "threaded"))
        thread.start()
        await trio.to_thread.run_sync(thread.join)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(deliver_later)
        assert await waiters.wait_single(A, _nothing) == "threaded"


def test_finished_tasks_keep_the_newest_and_prune_details() -> None:
    finished = FinishedTasks(2)
    tasks = [Task(n) for n in range(3)]
    for n, task in enumerate(tasks):
        task.parts.task_id = TaskId.generate()
        finished.record(task, Status.Done if n else Status.Failed, n or None, ValueError("x"))
    assert len(finished) == 2
    assert [task for _, task in finished.newest_first()] == [tasks[2], tasks[1]]
    ids = {task.parts.task_id for task in tasks if task.parts.task_id is not None}
    found = finished.results(ids)
    assert sorted(found) == sorted(t.parts.task_id for t in tasks[1:])  # type: ignore[type-var]
    assert found[tasks[2].parts.task_id].unwrap() == 2  # type: ignore[index]
    assert finished.clear() == 2
    assert finished.results(ids) == {}


def test_store_listeners_are_called_without_attention() -> None:
    store = ResultStore(10, "Test")
    assert not store.attention
    seen: list[tuple[Status, object]] = []

    def listener(task: Task, status: Status, result: object, error: object) -> None:
        seen.append((status, result))

    store.add_listener(listener)
    assert store.listeners == (listener,)
    assert not store.attention  # listeners are called from the compiled recorder
    killed = Task(1)
    killed.parts.task_id = A
    store.ack_nowait(killed, Status.Killed, None, None)  # the Python path
    done = Task(2)
    done.parts.task_id = B
    store.ack_nowait(done, Status.Done, "fine", None)  # the recorder's own path
    assert seen == [(Status.Killed, None), (Status.Done, "fine")]
    found = store.finished.results({A, B})
    assert repr(found[A]) == repr(TaskResult.failed(A, Status.Killed, "Killed"))
    assert found[B].unwrap() == "fine"
    store.remove_listener(listener)
    assert store.listeners == ()
    store.ack_nowait(Task(3), Status.Done, None, None)
    assert len(seen) == 2
    with pytest.raises(TypeError, match="listener must be callable"):
        store.add_listener(42)  # type: ignore[arg-type]
