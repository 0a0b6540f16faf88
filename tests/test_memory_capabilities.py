"""MemoryStorage's capabilities: fetch_by_id, results (wait_for, check_status),
list_tasks, vacuum, reschedule, and the bound on kept results.

Everything runs in virtual time (``autojump_clock``): a worker's handler that
sleeps ``n`` seconds finishes at exactly ``start + n``.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing

from pyapalis import AbortError, Status, Task, TaskBuilder, TaskId, WorkerBuilder, WorkerContext
from pyapalis._errors import TaskError
from pyapalis.backends._capabilities import TaskResult
from pyapalis.backends._memory._storage import MemoryStorage


async def _until(predicate: Callable[[], bool]) -> None:
    while not predicate():
        await trio.sleep(0.5)


async def _run(
    storage: MemoryStorage,
    handler: Callable[..., Awaitable[Any]],
    until: Callable[[], Awaitable[None]],
    *,
    concurrency: int = 1,
) -> None:
    """Run a worker on ``storage`` until ``until()`` returns."""
    worker = WorkerBuilder("w").backend(storage).concurrency(concurrency).build(handler)
    with trio.fail_after(3600):
        await worker.run_until(until)


async def _sleep_and_double(item: int) -> int:
    await trio.sleep(item)
    return item * 2


async def _finish_all(storage: MemoryStorage, count: int) -> None:
    """Run a worker (handler: ``_outcome``) until ``count`` tasks have finished."""
    await _run(
        storage, _outcome, lambda: _until(lambda: storage.statistics().results_kept >= count)
    )


async def _outcome(item: Any) -> Any:
    """Succeed with ``item``, fail on "fail", abort on "abort", succeed with None on None."""
    if item == "fail":
        raise ValueError("boom")
    if item == "abort":
        raise AbortError("bad input")
    return item


# -- construction -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "error", "shown"),
    [
        (-1, ValueError, "int -1"),
        (1.5, TypeError, "float 1.5"),
        ("10", TypeError, "str '10'"),
        (True, TypeError, "bool True"),
        (None, TypeError, "NoneType None"),
    ],
)
def test_bad_results_bound(bad: object, error: type[Exception], shown: str) -> None:
    message = f"MemoryStorage: results must be an int >= 0, got {shown}"
    with pytest.raises(error) as raised:
        MemoryStorage(results=bad)  # type: ignore[arg-type]
    assert (type(raised.value), str(raised.value)) == (error, message)


def test_results_bound_in_statistics_and_repr() -> None:
    storage = MemoryStorage(results=5)
    stats = storage.statistics()
    assert (stats.results_kept, stats.results_limit) == (0, 5)
    assert repr(storage) == "MemoryStorage(len=0, maxsize=None, results=5)"
    assert MemoryStorage().statistics().results_limit == 10_000


# -- fetch_by_id --------------------------------------------------------------------------


async def test_fetch_by_id_pending_scheduled_finished_unknown(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage()
    later = TaskBuilder("later").run_after(60).build()
    later_id = await storage.push_task(later)
    pending_id = await storage.push("now")

    pending = await storage.fetch_by_id(pending_id)
    assert pending is not None
    assert (pending.args, pending.parts.status) == ("now", Status.Pending)
    assert await storage.fetch_by_id(later_id) is later
    assert await storage.fetch_by_id(str(later_id)) is later  # a str id works too
    assert await storage.fetch_by_id(TaskId.generate()) is None

    await _run(storage, _outcome, lambda: _until(lambda: len(storage) == 1))
    finished = await storage.fetch_by_id(pending_id)
    assert finished is not None
    assert (finished.args, finished.parts.status) == ("now", Status.Done)
    assert await storage.fetch_by_id(later_id) is later  # still scheduled


async def test_fetch_by_id_does_not_see_a_task_in_flight(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage()
    task_id = await storage.push("held")
    task = await storage.take()
    assert await storage.fetch_by_id(task_id) is None  # in flight: not tracked
    await storage.ack(task, Status.Done, None, None)
    assert await storage.fetch_by_id(task_id) is task


# -- check_status ------------------------------------------------------------------------


async def test_check_status_pending_running_and_finished(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage()
    done_id, failed_id, killed_id, none_id, waiting_id = await storage.push_bulk(
        [7, "fail", "abort", None, "waiting"]
    )
    [pending] = await storage.check_status([done_id])
    assert pending == TaskResult(done_id, Status.Pending)
    assert not pending.is_final
    with pytest.raises(ValueError, match="is not finished"):
        pending.unwrap()

    await _finish_all(storage, 5)
    results = await storage.check_status([done_id, failed_id, killed_id, none_id, waiting_id])
    assert [result.task_id for result in results] == [
        done_id,
        failed_id,
        killed_id,
        none_id,
        waiting_id,
    ]
    assert [result.status for result in results] == [
        Status.Done,
        Status.Failed,
        Status.Killed,
        Status.Done,
        Status.Done,
    ]
    assert results[0].unwrap() == 7
    assert results[3].unwrap() is None
    assert results[4].unwrap() == "waiting"
    with pytest.raises(TaskError, match=r"^ValueError: boom$"):
        results[1].unwrap()
    with pytest.raises(TaskError, match=r"^AbortError: bad input$"):
        results[2].unwrap()


async def test_check_status_reports_an_untracked_id_as_running(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage()
    task_id = await storage.push("held")
    task = await storage.take()
    unknown = TaskId.generate()
    assert await storage.check_status([task_id, unknown]) == [
        TaskResult(task_id, Status.Running),
        TaskResult(unknown, Status.Running),
    ]
    await storage.ack(task, Status.Failed, None, None)  # no error: the status is the message
    [result] = await storage.check_status([str(task_id)])
    assert result.status is Status.Failed
    with pytest.raises(TaskError, match=r"^Failed$"):
        result.unwrap()


async def test_check_status_of_nothing_is_empty() -> None:
    assert await MemoryStorage().check_status([]) == []


# -- wait_for_single -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "status", "value", "message"),
    [
        (21, Status.Done, 21, None),
        (None, Status.Done, None, None),
        ("fail", Status.Failed, None, "ValueError: boom"),
        ("abort", Status.Killed, None, "AbortError: bad input"),
    ],
)
async def test_wait_for_single_while_a_worker_runs(
    item: Any,
    status: Status,
    value: Any,
    message: str | None,
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage()
    task_id = await storage.push(item)
    got: list[tuple[float, TaskResult]] = []

    async def handler(item: Any) -> Any:
        await trio.sleep(5)
        return await _outcome(item)

    async def waiter() -> None:
        result = await storage.wait_for_single(task_id)
        got.append((trio.current_time(), result))

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await _run(storage, handler, lambda: _until(lambda: bool(got)))
    [(at, result)] = got
    assert at == start + 5
    assert (result.task_id, result.status) == (task_id, status)
    if message is None:
        assert result.unwrap() == value
    else:
        with pytest.raises(TaskError, match=f"^{message}$"):
            result.unwrap()
    assert storage.statistics().results_waited_for == 0
    assert storage.statistics().fast_acks is True


async def test_wait_for_single_answers_a_kept_result_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage()
    task_id = await storage.push(4)
    await _finish_all(storage, 1)
    start = trio.current_time()
    result = await storage.wait_for_single(str(task_id))
    assert trio.current_time() == start
    assert result == TaskResult.done(task_id, 4)


async def test_wait_for_single_cancelled_leaves_no_waiter(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage()
    task_id = await storage.push(1)
    with trio.move_on_after(10):
        await storage.wait_for_single(task_id)
    assert storage.statistics().results_waited_for == 0
    assert storage.statistics().fast_acks is True


async def test_wait_for_single_while_the_worker_runs_on_another_thread() -> None:
    # Real threads, real time: the worker has its own trio run, as under a
    # BackgroundRuntime. The fail_after is a safety net only.
    storage = MemoryStorage()
    task_id = storage.push_nowait(5)
    release = threading.Event()

    async def handler(item: int, ctx: WorkerContext) -> int:
        release.wait(10)  # blocks the worker's own thread until we wait
        ctx.stop()
        return item * 2

    async def run_worker() -> None:
        await WorkerBuilder("elsewhere").backend(storage).build(handler).run()

    thread = threading.Thread(target=trio.run, args=(run_worker,))
    thread.start()
    got: list[TaskResult] = []

    async def wait() -> None:
        got.append(await storage.wait_for_single(task_id))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait)
            await trio.testing.wait_all_tasks_blocked()
            release.set()
        await trio.to_thread.run_sync(thread.join)
    assert got == [TaskResult.done(task_id, 10)]
    assert storage.statistics().results_waited_for == 0


# -- wait_for -------------------------------------------------------------------------------


async def test_wait_for_yields_in_completion_order_while_a_worker_runs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage()
    slow, fast, middle = await storage.push_bulk([3, 1, 2])
    start = trio.current_time()
    got: list[tuple[float, TaskId, int]] = []

    async def collect() -> None:
        async for result in storage.wait_for([slow, fast, middle, fast]):
            got.append((trio.current_time() - start, result.task_id, result.unwrap()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect)
        await _run(storage, _sleep_and_double, lambda: _until(lambda: len(got) == 3), concurrency=3)
    assert got == [(1.0, fast, 2), (2.0, middle, 4), (3.0, slow, 6)]
    assert storage.statistics().results_waited_for == 0


async def test_wait_for_yields_kept_results_first_in_the_order_asked(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage()
    first, second = await storage.push_bulk([1, 2])
    await _finish_all(storage, 2)
    third = await storage.push(3)
    got: list[tuple[float, TaskId]] = []
    start = trio.current_time()

    async def collect() -> None:
        async for result in storage.wait_for([third, second, first]):
            got.append((trio.current_time() - start, result.task_id))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect)
        await _run(storage, _sleep_and_double, lambda: _until(lambda: len(got) == 3))
    assert got == [(0.0, second), (0.0, first), (3.0, third)]


async def test_wait_for_keeps_results_that_arrive_while_the_caller_is_busy(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage()
    ids = await storage.push_bulk([1, 1, 1])
    got: list[tuple[float, TaskId]] = []
    start = trio.current_time()

    async def collect() -> None:
        async for result in storage.wait_for(ids):
            got.append((trio.current_time() - start, result.task_id))
            await trio.sleep(10)  # busy: the other two finish meanwhile

    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect)
        await _run(storage, _sleep_and_double, lambda: _until(lambda: len(got) == 3))
    assert got == [(1.0, ids[0]), (11.0, ids[1]), (21.0, ids[2])]


async def test_wait_for_abandoned_midway_unregisters(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage()
    ids = await storage.push_bulk([1, 2])
    with trio.move_on_after(1.5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                _run, storage, _sleep_and_double, trio.sleep_forever
            )  # cancelled with the scope
            results = storage.wait_for(ids)
            first = await results.__anext__()
            assert first.task_id == ids[0]
            await results.aclose()
            assert storage.statistics().results_waited_for == 0
            assert storage.statistics().fast_acks is True
            await trio.sleep_forever()


# -- the bound on kept results -----------------------------------------------------------------


async def test_the_bound_forgets_the_oldest_results(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage(results=2)
    ids = await storage.push_bulk([1, 2, 3])
    await _run(storage, _outcome, lambda: _until(lambda: len(storage) == 0))
    await trio.sleep(1)  # the last ack has happened
    assert storage.statistics().results_kept == 2
    assert await storage.fetch_by_id(ids[0]) is None
    assert await storage.check_status(ids) == [
        TaskResult(ids[0], Status.Running),  # forgotten: indistinguishable from in flight
        TaskResult.done(ids[1], 2),
        TaskResult.done(ids[2], 3),
    ]


async def test_waiters_get_their_result_even_when_none_are_kept(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage(results=0)
    ids = await storage.push_bulk([2, "fail", 1])
    got: list[TaskResult] = []
    single: list[TaskResult] = []

    async def collect() -> None:
        async for result in storage.wait_for(ids):
            got.append(result)

    async def one() -> None:
        single.append(await storage.wait_for_single(ids[0]))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect)
        nursery.start_soon(one)
        await trio.testing.wait_all_tasks_blocked()  # both wait before anything finishes
        assert storage.statistics().fast_acks is False
        await _run(storage, _outcome, lambda: _until(lambda: len(got) == 3 and bool(single)))
    assert [(result.task_id, result.status) for result in got] == [
        (ids[0], Status.Done),
        (ids[1], Status.Failed),
        (ids[2], Status.Done),
    ]
    assert single == [TaskResult.done(ids[0], 2)]
    assert storage.statistics().results_kept == 0
    assert storage.statistics().results_detailed == 0
    assert await storage.check_status(ids[:1]) == [TaskResult(ids[0], Status.Running)]


async def test_details_of_forgotten_tasks_are_pruned(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage(results=1)
    ids = await storage.push_bulk(range(1, 201))  # every one has a result to keep
    await _run(storage, _outcome, lambda: _until(lambda: len(storage) == 0))
    await trio.sleep(1)
    assert storage.statistics().results_detailed <= 2 * 1 + 64
    assert await storage.check_status([ids[-1]]) == [TaskResult.done(ids[-1], 200)]


# -- vacuum ------------------------------------------------------------------------------------


async def test_vacuum_forgets_finished_tasks_and_counts_them(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage()
    ids = await storage.push_bulk([1, "fail", "abort"])
    await _finish_all(storage, 3)
    queued = await storage.push("queued")
    assert await storage.vacuum() == 3
    assert await storage.vacuum() == 0
    assert storage.statistics().results_kept == 0
    assert await storage.fetch_by_id(ids[0]) is None
    assert [result.status for result in await storage.check_status([*ids, queued])] == [
        Status.Running,
        Status.Running,
        Status.Running,
        Status.Pending,
    ]
    assert len(storage) == 1  # queued tasks are not touched


# -- list_tasks -------------------------------------------------------------------------------


async def test_list_tasks_pages_and_filters(autojump_clock: trio.testing.MockClock) -> None:
    storage = MemoryStorage()
    await storage.push_bulk(["a", "fail", "b"])
    await _finish_all(storage, 3)
    await storage.push_task(TaskBuilder("later").run_after(60).build())
    await storage.push_bulk(["q1", "q2"])

    async def args(**kwargs: Any) -> list[Any]:
        return [task.args for task in await storage.list_tasks(**kwargs)]

    # Queued first (ready, then scheduled), then finished, oldest first.
    assert await args() == ["q1", "q2", "later", "a", "fail", "b"]
    assert await args(page=1, page_size=4) == ["q1", "q2", "later", "a"]
    assert await args(page=2, page_size=4) == ["fail", "b"]
    assert await args(page=3, page_size=4) == []
    assert await args(status=Status.Pending) == ["q1", "q2", "later"]
    assert await args(status=Status.Done) == ["a", "b"]
    assert await args(status="Done") == ["a", "b"]
    assert await args(status=Status.Failed, page_size=1) == ["fail"]
    assert await args(status=Status.Running) == []  # in flight: not tracked
    assert await args(status=Status.Killed) == []
    assert await args(status=Status.Done, page=2, page_size=1) == ["b"]


# -- reschedule and pushing a task again ----------------------------------------------------------


async def test_reschedule_moves_a_queued_task_without_duplicating_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage()
    first = Task("first")
    await storage.push_task(first)
    await storage.push("second")
    start = trio.current_time()
    await storage.reschedule(first, 30)
    assert len(storage) == 2
    ran: list[tuple[str, float]] = []

    async def handler(item: str) -> None:
        ran.append((item, trio.current_time() - start))

    await _run(storage, handler, lambda: _until(lambda: len(ran) == 2))
    assert ran == [("second", 0.0), ("first", 30.0)]
    assert len(storage) == 0


async def test_a_finished_task_runs_again_with_a_fresh_result(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage()
    task_id = await storage.push("flaky")
    runs: list[str] = []

    async def fails_once(item: str) -> str:
        runs.append(item)
        if len(runs) == 1:
            raise ValueError("first run")
        return f"{item} fixed"

    await _run(storage, fails_once, lambda: _until(lambda: len(runs) == 1))
    [failed] = await storage.check_status([task_id])
    assert failed.status is Status.Failed
    task = await storage.fetch_by_id(task_id)
    assert task is not None
    await storage.push_task(task)
    [pending] = await storage.check_status([task_id])
    assert pending == TaskResult(task_id, Status.Pending)  # the old failure is out of date
    assert await storage.fetch_by_id(task_id) is task
    await _run(storage, fails_once, lambda: _until(lambda: len(runs) == 2))
    assert await storage.wait_for_single(task_id) == TaskResult.done(task_id, "flaky fixed")
    assert [t.args for t in await storage.list_tasks()] == ["flaky"]  # listed once
    assert storage.statistics().results_kept == 2  # the object twice, reported once


async def test_reschedule_reruns_a_finished_task(autojump_clock: trio.testing.MockClock) -> None:
    storage = MemoryStorage()
    task_id = await storage.push(5)
    await _finish_all(storage, 1)
    task = await storage.fetch_by_id(task_id)
    assert task is not None
    await storage.reschedule(task, 0)
    assert await storage.check_status([task_id]) == [TaskResult(task_id, Status.Pending)]
    assert len(storage) == 1


# Bad input to fetch_by_id, list_tasks, check_status, wait_for and reschedule is
# checked on every backend by the conformance suite (tests/test_conformance.py).
