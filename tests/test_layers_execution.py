"""Execution layers that shape the outcome: RetryLayer, TimeoutLayer, CatchPanicLayer."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import outcome
import pytest
import trio
import trio.testing
from conftest import EventLog

from pyapalis import (
    AbortError,
    BackoffMode,
    DeferredError,
    MemoryStorage,
    RetryAfterError,
    RetryPolicy,
    Status,
    Task,
    TaskBuilder,
    TaskTimeoutError,
    WorkerBuilder,
    WorkerContext,
)
from pyapalis.layers._execution import CatchPanicLayer, RetryLayer, TimeoutLayer
from pyapalis.testing import TestWorker


def failing_times(
    n: int, runs: list[tuple[float, int]], error: Any = None, *, stop: bool = True
) -> Any:
    """A handler failing its first ``n`` executions, recording (time, attempt) of each."""

    async def handler(item: Any, task: Task, ctx: WorkerContext) -> str:
        runs.append((trio.current_time(), task.parts.attempt.current()))
        if len(runs) <= n:
            raise error if error is not None else RuntimeError(f"run {len(runs)}")
        if stop:
            ctx.stop()
        return "ok"

    return handler


# -- RetryLayer --------------------------------------------------------------------------


async def test_retry_layer_retries_in_place_with_the_backoff(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    runs: list[tuple[float, int]] = []
    task = Task("x")
    await storage.push_task(task)
    layer = RetryLayer(RetryPolicy.retries(3, BackoffMode.constant(2)))
    worker = WorkerBuilder("w").backend(storage).layer(layer).on_event(event_log)
    await worker.build(failing_times(2, runs)).run()
    assert runs == [(0.0, 1), (2.0, 2), (4.0, 3)]
    assert task.parts.status is Status.Done
    # In place: the task left the storage once; each failed execution is an event.
    assert storage.statistics().taken_total == 1
    assert [(t, e.kind.value) for t, e in event_log.records] == [
        (0.0, "Start"),
        (0.0, "Error"),
        (2.0, "Error"),
        (4.0, "Success"),
        (4.0, "Stop"),
    ]


async def test_retry_layer_exponential_backoff_delays(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    runs: list[tuple[float, int]] = []
    await storage.push("x")
    layer = RetryLayer(RetryPolicy.retries(3, BackoffMode.exponential(1)))
    await WorkerBuilder("w").backend(storage).layer(layer).build(failing_times(3, runs)).run()
    assert [t for t, _ in runs] == [0.0, 1.0, 3.0, 7.0]


async def test_retry_layer_gives_up_and_the_ack_records_the_last_failure(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    runs: list[tuple[float, int]] = []
    task = Task("x")
    await storage.push_task(task)
    layer = RetryLayer(RetryPolicy.retries(1))
    worker = WorkerBuilder("w").backend(storage).layer(layer).on_event(event_log)
    with trio.move_on_after(5):
        await worker.build(failing_times(10, runs)).run()
    assert runs == [(0.0, 1), (0.0, 2)]
    assert task.parts.status is Status.Failed
    assert [str(e.error) for e in event_log.of("Error")] == ["run 1", "run 2"]


async def test_retry_layer_then_backend_retries_while_the_budget_lasts(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    # 2 executions in place per pull; the worker's policy allows 4 in all and
    # retries through the backend 10 s later.
    runs: list[tuple[float, int]] = []
    task = Task("x")
    await storage.push_task(task)
    worker = (
        WorkerBuilder("w")
        .backend(storage)
        .retry(RetryPolicy.retries(3, BackoffMode.constant(10)))
        .layer(RetryLayer(RetryPolicy.retries(1, BackoffMode.constant(1))))
    )
    await worker.build(failing_times(3, runs)).run()
    assert runs == [(0.0, 1), (1.0, 2), (11.0, 3), (12.0, 4)]
    assert task.parts.status is Status.Done
    assert storage.statistics().taken_total == 2


async def test_retry_layer_respects_the_tasks_max_attempts(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    runs: list[tuple[float, int]] = []
    task = TaskBuilder("x").attempts(2).build()
    await storage.push_task(task)
    layer = RetryLayer(RetryPolicy.retries(5))
    with trio.move_on_after(5):
        await WorkerBuilder("w").backend(storage).layer(layer).build(failing_times(10, runs)).run()
    assert runs == [(0.0, 1), (0.0, 2)]
    assert task.parts.status is Status.Failed


async def test_retry_layer_never_retries_abort_and_honours_retry_after(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    runs: list[tuple[float, int]] = []
    aborted = Task("abort")
    await storage.push_task(aborted)
    layer = RetryLayer(RetryPolicy.retries(5, BackoffMode.constant(100)))
    handler = failing_times(1, runs, AbortError("bad input"), stop=False)
    with trio.move_on_after(1):
        await WorkerBuilder("w").backend(storage).layer(layer).build(handler).run()
    assert runs == [(0.0, 1)]
    assert aborted.parts.status is Status.Killed

    for error, expected in ((RetryAfterError("busy", 7), 7.0), (DeferredError(), 0.0)):
        runs = []
        storage = MemoryStorage()
        await storage.push("x")
        start = trio.current_time()
        await (
            WorkerBuilder("w")
            .backend(storage)
            .layer(layer)
            .build(failing_times(1, runs, error))
            .run()
        )
        assert [t - start for t, _ in runs] == [0.0, expected]


async def test_test_worker_sees_each_execution_retried_in_place(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    runs: list[tuple[float, int]] = []
    builder = WorkerBuilder("w").layer(RetryLayer(RetryPolicy.retries(2)))
    task_id = await storage.push("x")
    async with TestWorker(storage, failing_times(2, runs, stop=False), builder=builder) as tw:
        results = [await tw.execute_next() for _ in range(3)]
    assert [r[0] for r in results] == [task_id] * 3
    assert [type(r[1]) for r in results] == [outcome.Error, outcome.Error, outcome.Value]
    assert results[2][1].unwrap() == "ok"


def test_retry_layer_bad_input() -> None:
    with pytest.raises(TypeError, match=r"^RetryLayer: policy must be a RetryPolicy, got int 3$"):
        RetryLayer(3)  # type: ignore[arg-type]


# -- TimeoutLayer ------------------------------------------------------------------------


async def test_timeout_layer_fails_a_slow_execution_as_retryable(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    runs: list[float] = []
    task = TaskBuilder("x").attempts(2).build()
    await storage.push_task(task)

    async def handler(item: str, ctx: WorkerContext) -> None:
        runs.append(trio.current_time())
        if len(runs) == 1:
            await trio.sleep(10)
        ctx.stop()

    worker = WorkerBuilder("w").backend(storage).layer(TimeoutLayer(3)).on_event(event_log)
    await worker.build(handler).run()
    assert runs == [0.0, 3.0]
    [error] = [e.error for e in event_log.of("Error")]
    assert isinstance(error, TaskTimeoutError)
    assert str(error) == "task timed out after 3s"
    assert task.parts.status is Status.Done


async def test_timeout_layer_outside_a_retry_layer_bounds_every_retry(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    runs: list[tuple[float, int]] = []
    task = Task("x")
    await storage.push_task(task)
    worker = (
        WorkerBuilder("w")
        .backend(storage)
        .layer(TimeoutLayer(timedelta(seconds=5)))
        .layer(RetryLayer(RetryPolicy.retries(10, BackoffMode.constant(2))))
        .on_event(event_log)
    )
    with trio.move_on_after(20):
        await worker.build(failing_times(100, runs)).run()
    assert runs == [(0.0, 1), (2.0, 2), (4.0, 3)]
    assert task.parts.status is Status.Failed
    last = event_log.of("Error")[-1]
    assert isinstance(last.error, TaskTimeoutError)
    error_times = [t for t, e in event_log.records if e.kind.value == "Error"]
    assert error_times == [0.0, 2.0, 4.0, 5.0]  # three failed in place, then the timeout


@pytest.mark.parametrize(
    ("seconds", "error", "message"),
    [
        (0, ValueError, "seconds must be a finite number of seconds > 0, got 0"),
        (-1.5, ValueError, "seconds must be a finite number of seconds > 0, got -1.5"),
        (math.nan, ValueError, "seconds must be a finite number of seconds > 0, got nan"),
        (
            timedelta(0),
            ValueError,
            "seconds must be a finite number of seconds > 0, got datetime.timedelta(0)",
        ),
        ("3", TypeError, "seconds must be seconds (int, float or timedelta), got str '3'"),
        (None, TypeError, "seconds must be seconds (int, float or timedelta), got NoneType None"),
    ],
)
def test_timeout_layer_bad_input(seconds: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as info:
        TimeoutLayer(seconds)
    assert str(info.value) == f"TimeoutLayer: {message}"


# -- CatchPanicLayer ---------------------------------------------------------------------


async def test_catch_panic_turns_a_bug_into_abort_with_the_cause(
    storage: MemoryStorage, event_log: EventLog
) -> None:
    task = TaskBuilder({}).attempts(5).build()
    await storage.push_task(task)

    async def handler(item: dict[str, int], ctx: WorkerContext) -> int:
        ctx.stop()
        return item["missing"]

    worker = WorkerBuilder("w").backend(storage).layer(CatchPanicLayer()).on_event(event_log)
    await worker.build(handler).run()
    assert task.parts.status is Status.Killed
    assert task.parts.attempt.current() == 1
    [error] = [e.error for e in event_log.of("Error")]
    assert isinstance(error, AbortError)
    assert str(error) == "KeyError: 'missing'"
    assert isinstance(error.error, KeyError)
    assert error.__cause__ is error.error


async def test_catch_panic_lets_steering_errors_and_retryable_types_through(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    errors = [RetryAfterError("later", 5), ConnectionError("reset"), TaskTimeoutError(1)]
    runs: list[float] = []

    async def handler(item: str, ctx: WorkerContext) -> None:
        runs.append(trio.current_time())
        if len(runs) <= len(errors):
            raise errors[len(runs) - 1]
        ctx.stop()

    task = TaskBuilder("x").attempts(4).build()
    await storage.push_task(task)
    layer = CatchPanicLayer(retryable=(ConnectionError,))
    worker = WorkerBuilder("w").backend(storage).layer(layer).on_event(event_log)
    await worker.build(handler).run()
    assert runs == [0.0, 5.0, 5.0, 5.0]
    assert [e.error for e in event_log.of("Error")] == errors
    assert task.parts.status is Status.Done


async def test_catch_panic_never_catches_keyboard_interrupt() -> None:
    async def inner(task: Task) -> None:
        raise KeyboardInterrupt

    service: Any = CatchPanicLayer().layer(inner)
    with pytest.raises(KeyboardInterrupt):
        await service(Task("x"))


def test_catch_panic_bad_input() -> None:
    message = "^CatchPanicLayer: retryable must be a tuple of exception types, got"
    with pytest.raises(TypeError, match=message):
        CatchPanicLayer(retryable=[ValueError])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=message):
        CatchPanicLayer(retryable=(ValueError, "x"))  # type: ignore[arg-type]
