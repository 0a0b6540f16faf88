"""TestWorker: one outcome per execution (retries included), in completion order."""

from __future__ import annotations

import outcome
import pytest
import trio
import trio.testing

from pyapalis import (
    AbortError,
    Attempt,
    BackoffMode,
    MemoryStorage,
    RetryPolicy,
    Status,
    Task,
    TaskId,
    Worker,
    WorkerBuilder,
)
from pyapalis.testing import TestWorker


async def test_execute_next_gives_values_and_errors(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    async def handler(item: int) -> int:
        await trio.sleep(1)
        if item < 0:
            raise ValueError(f"negative {item}")
        return item * 2

    ids = await storage.push_bulk([1, -1, 3])
    async with TestWorker(storage, handler) as tw:
        assert isinstance(tw.worker, Worker)
        results = [await tw.execute_next() for _ in range(3)]
        assert trio.current_time() == 3.0
    assert [task_id for task_id, _ in results] == ids
    assert all(isinstance(task_id, TaskId) for task_id, _ in results)
    first, second, third = (result for _, result in results)
    assert first == outcome.Value(2)
    assert isinstance(second, outcome.Error)
    assert type(second.error) is ValueError
    assert str(second.error) == "negative -1"
    with pytest.raises(ValueError, match="negative"):
        second.unwrap()
    assert third == outcome.Value(6)
    assert tw.worker.context.is_stopped  # leaving the block stopped the worker


async def test_each_retry_is_its_own_result(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    async def handler(item: str, attempt: Attempt) -> str:
        if attempt.current() < 3:
            raise ConnectionError(f"try {attempt.current()}")
        return f"ok on {attempt.current()}"

    task_id = await storage.push("flaky")
    builder = WorkerBuilder("tw").retry(RetryPolicy.retries(3, BackoffMode.constant(10)))
    async with TestWorker(storage, handler, builder=builder) as tw:
        got = []
        for _ in range(3):
            got.append((*await tw.execute_next(), trio.current_time()))
    assert [(tid, t) for tid, _, t in got] == [(task_id, 0.0), (task_id, 10.0), (task_id, 20.0)]
    outcomes = [result for _, result, _ in got]
    assert [type(r) for r in outcomes] == [outcome.Error, outcome.Error, outcome.Value]
    assert [str(r.error) for r in outcomes[:2]] == ["try 1", "try 2"]
    assert outcomes[2] == outcome.Value("ok on 3")


async def test_results_come_in_completion_order(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    async def handler(item: int) -> int:
        await trio.sleep(item)
        return item

    ids = await storage.push_bulk([5, 1, 3])
    async with TestWorker(storage, handler, builder=WorkerBuilder("tw").concurrency(3)) as tw:
        results = [await tw.execute_next() for _ in range(3)]
    assert [r.unwrap() for _, r in results] == [1, 3, 5]
    assert [tid for tid, _ in results] == [ids[1], ids[2], ids[0]]


async def test_abort_and_false_results(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    killed, falsy = Task("abort"), Task("false")
    await storage.push_task(killed)
    await storage.push_task(falsy)

    async def handler(item: str) -> bool:
        if item == "abort":
            raise AbortError("no")
        return False

    builder = WorkerBuilder("tw").retry(RetryPolicy.retries(1))
    async with TestWorker(storage, handler, builder=builder) as tw:
        got = [await tw.execute_next() for _ in range(3)]
    assert [type(r.error).__name__ for _, r in got] == [
        "AbortError",
        "TaskFailedError",
        "TaskFailedError",
    ]
    assert killed.parts.status is Status.Killed
    assert falsy.parts.status is Status.Failed


async def test_execute_next_waits_for_a_push(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    async def handler(item: str) -> str:
        return item.upper()

    async with TestWorker(storage, handler) as tw:

        async def later() -> None:
            await trio.sleep(4)
            await storage.push("late")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(later)
            _, result = await tw.execute_next()
        assert result == outcome.Value("LATE")
        assert trio.current_time() == 4.0


async def test_one_builder_for_two_test_workers_keeps_their_results_apart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    first, second = MemoryStorage(), MemoryStorage()
    builder = WorkerBuilder("shared").retry(RetryPolicy.retries(1))

    async def handler(item: str) -> str:
        return item

    async with (
        TestWorker(first, handler, builder=builder) as tw1,
        TestWorker(second, handler, builder=builder) as tw2,
    ):
        await second.push("for-two")
        assert (await tw2.execute_next())[1] == outcome.Value("for-two")
        await first.push("for-one")
        assert (await tw1.execute_next())[1] == outcome.Value("for-one")
        with trio.move_on_after(5) as scope:
            await tw1.execute_next()
        assert scope.cancelled_caught  # nothing of the second worker's
    # The builder was left as it was given (its backend aside).
    worker = builder.build(handler)
    assert worker.context.listeners == ()


def test_a_bad_backend_is_refused() -> None:
    with pytest.raises(TypeError, match="not a backend"):
        TestWorker(object(), lambda item: None)  # type: ignore[arg-type]
