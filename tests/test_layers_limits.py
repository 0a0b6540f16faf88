"""ConcurrencyLimitLayer, RateLimitLayer and LoadShedLayer: backpressure, or rejection."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest
import trio
import trio.testing
from conftest import EventLog

from pyapalis import (
    BackoffMode,
    MemoryStorage,
    RetryPolicy,
    Status,
    Task,
    WorkerBuilder,
    WorkerContext,
)
from pyapalis.layers._circuit import CircuitBreakerConfig, CircuitBreakerLayer
from pyapalis.layers._limits import (
    ConcurrencyLimitLayer,
    LoadShedLayer,
    OverloadedError,
    RateLimitLayer,
)


def recording(starts: list[tuple[float, Any]], stop_after: int, duration: float = 0.0) -> Any:
    async def handler(item: Any, ctx: WorkerContext) -> None:
        starts.append((trio.current_time(), item))
        if duration:
            await trio.sleep(duration)
        if len(starts) == stop_after:
            ctx.stop()

    return handler


# -- ConcurrencyLimitLayer -----------------------------------------------------------------


async def test_concurrency_limit_bounds_running_tasks_and_pulls_no_more(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    running = peak = 0
    done: list[float] = []

    async def handler(item: int, ctx: WorkerContext) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await trio.sleep(1)
        running -= 1
        done.append(trio.current_time())
        if len(done) == 6:
            ctx.stop()

    await storage.push_bulk(range(6))
    worker = (
        WorkerBuilder("w").backend(storage).concurrency(4).layer(ConcurrencyLimitLayer(2))
    ).build(handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(0.5)
        # Backpressure: the loops without a permit did not pull.
        assert storage.statistics().taken_total == 2
    assert peak == 2
    assert done == [1.0, 1.0, 2.0, 2.0, 3.0, 3.0]


async def test_concurrency_limit_survives_idle_waits_and_pauses(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    starts: list[tuple[float, Any]] = []
    worker = (
        WorkerBuilder("w").backend(storage).concurrency(3).layer(ConcurrencyLimitLayer(1))
    ).build(recording(starts, stop_after=4, duration=2))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(1)  # a loop holds the permit while idle
        worker.context.pause()
        await trio.sleep(1)
        worker.context.resume()  # that loop asks again: it already holds the permit
        await storage.push_bulk("abcd")
    assert starts == [(2.0, "a"), (4.0, "b"), (6.0, "c"), (8.0, "d")]


async def test_concurrency_limit_is_per_worker(autojump_clock: trio.testing.MockClock) -> None:
    layer = ConcurrencyLimitLayer(1)
    starts: list[tuple[float, Any]] = []
    storages = [MemoryStorage(), MemoryStorage()]
    workers = [
        WorkerBuilder(name).backend(storage).layer(layer).build(recording(starts, 99, 5))
        for name, storage in zip("ab", storages, strict=True)
    ]
    async with trio.open_nursery() as nursery:
        for worker in workers:
            nursery.start_soon(worker.run)
        await storages[0].push("a")
        await storages[1].push("b")
        await trio.sleep(1)
        for worker in workers:
            worker.context.stop()
    assert sorted(starts) == [(0.0, "a"), (0.0, "b")]  # each worker has its own permit


async def test_concurrency_limit_called_without_ready_waits_in_the_call(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ends: list[tuple[float, str]] = []

    async def inner(task: Task) -> None:
        await trio.sleep(3)
        ends.append((trio.current_time(), task.args))

    service: Any = ConcurrencyLimitLayer(1).layer(inner)
    async with trio.open_nursery() as nursery:
        for name in "xyz":
            nursery.start_soon(service, Task(name))
    # trio starts the three in any order; they run one at a time.
    assert [t for t, _ in ends] == [3.0, 6.0, 9.0]
    assert sorted(name for _, name in ends) == ["x", "y", "z"]


@pytest.mark.parametrize(
    ("limit", "error", "message"),
    [
        (0, ValueError, "limit must be >= 1, got 0"),
        (-3, ValueError, "limit must be >= 1, got -3"),
        (2.0, TypeError, "limit must be an int, got float 2.0"),
        (None, TypeError, "limit must be an int, got NoneType None"),
    ],
)
def test_concurrency_limit_bad_input(limit: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as info:
        ConcurrencyLimitLayer(limit)
    assert str(info.value) == f"ConcurrencyLimitLayer: {message}"


# -- RateLimitLayer -------------------------------------------------------------------------


async def test_rate_limit_bursts_then_one_start_per_returning_token(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    starts: list[tuple[float, Any]] = []
    await storage.push_bulk(range(5))
    worker = WorkerBuilder("w").backend(storage).rate_limit(2, 10).build(recording(starts, 5))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(5)
        assert storage.statistics().taken_total == 2  # not ready: nothing more pulled
    assert starts == [(0.0, 0), (0.0, 1), (10.0, 2), (10.0, 3), (20.0, 4)]


async def test_rate_limit_is_a_sliding_window(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    starts: list[tuple[float, Any]] = []
    worker = (WorkerBuilder("w").backend(storage).concurrency(3).rate_limit(2, 10)).build(
        recording(starts, 5)
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        for at, item in ((0, "a"), (6, "b"), (8, "c"), (12, "d"), (13, "e")):
            await trio.sleep_until(at)
            await storage.push(item)
    # c waits for a's token (t=10), d for b's (16), e for c's (20).
    assert starts == [(0.0, "a"), (6.0, "b"), (10.0, "c"), (16.0, "d"), (20.0, "e")]
    times = [t for t, _ in starts]
    assert all(sum(1 for t in times if s <= t < s + 10) <= 2 for s in times)


async def test_a_token_reserved_by_an_idle_loop_is_spent_when_the_task_starts(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    starts: list[tuple[float, Any]] = []
    worker = WorkerBuilder("w").backend(storage).rate_limit(1, 10).build(recording(starts, 2))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(9)
        await storage.push("late")  # the token reserved at t=0 is spent now
        await trio.sleep(1)
        await storage.push("next")  # so the next start waits until t=19
    assert starts == [(9.0, "late"), (19.0, "next")]


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        ((0, 1), ValueError, "n must be >= 1, got 0"),
        ((1.5, 1), TypeError, "n must be an int, got float 1.5"),
        ((1, 0), ValueError, "per_seconds must be a finite number of seconds > 0, got 0"),
        ((1, -2), ValueError, "per_seconds must be a finite number of seconds > 0, got -2"),
        ((1, math.inf), ValueError, "per_seconds must be a finite number of seconds > 0, got inf"),
        (
            (1, "1s"),
            TypeError,
            "per_seconds must be seconds (int, float or timedelta), got str '1s'",
        ),
    ],
)
def test_rate_limit_bad_input(args: tuple[Any, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error) as info:
        RateLimitLayer(*args)
    assert str(info.value) == f"RateLimitLayer: {message}"
    assert RateLimitLayer(3, timedelta(minutes=1)).per_seconds == 60.0


# -- LoadShedLayer --------------------------------------------------------------------------


async def test_load_shed_rejects_what_the_limit_cannot_take(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    starts: list[tuple[float, Any]] = []
    tasks = [Task(name) for name in "abc"]
    for task in tasks:
        await storage.push_task(task)
    worker = (
        WorkerBuilder("w")
        .backend(storage)
        .concurrency(3)
        .layer(LoadShedLayer())
        .layer(ConcurrencyLimitLayer(1))
        .on_event(event_log)
    ).build(recording(starts, 1, duration=5))
    assert worker.dispatch.readiness == []  # nothing below LoadShed is awaited
    await worker.run()
    assert starts == [(0.0, "a")]
    # b and c were shed at once: a failed attempt each (no retry budget: Failed).
    assert [t.parts.status for t in tasks] == [Status.Done, Status.Failed, Status.Failed]
    errors = event_log.of("Error")
    assert [type(e.error) for e in errors] == [OverloadedError, OverloadedError]
    assert [t for t, e in event_log.records if e.kind.value == "Error"] == [0.0, 0.0]


async def test_shed_tasks_come_back_with_the_workers_backoff(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    starts: list[tuple[float, Any]] = []
    await storage.push_bulk("ab")
    worker = (
        WorkerBuilder("w")
        .backend(storage)
        .concurrency(2)
        .retry(RetryPolicy.retries(1, BackoffMode.constant(10)))
        .layer(LoadShedLayer())
        .layer(ConcurrencyLimitLayer(1))
    ).build(recording(starts, 2, duration=5))
    await worker.run()
    assert starts == [(0.0, "a"), (10.0, "b")]


async def test_load_shed_sheds_while_the_circuit_is_open_or_the_bucket_empty(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    breaker = CircuitBreakerLayer(CircuitBreakerConfig(failure_threshold=1, recovery_timeout=10))
    handled: list[tuple[float, Any]] = []

    async def handler(item: str, ctx: WorkerContext) -> None:
        handled.append((trio.current_time(), item))
        if item == "fail":
            raise RuntimeError("down")
        if item == "last":
            ctx.stop()

    worker = (
        WorkerBuilder("w")
        .backend(storage)
        .layer(LoadShedLayer())
        .layer(breaker)
        .rate_limit(2, 100)
        .on_event(event_log)
    ).build(handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await storage.push("fail")  # opens the circuit
        await trio.sleep(1)
        await storage.push("shed-open")  # shed by the open circuit, no waiting
        await trio.sleep(10)
        await storage.push("trial")  # half open: runs, closes; the bucket is now empty
        await trio.sleep(1)
        await storage.push("shed-empty")
        await trio.sleep(100)
        await storage.push("last")
    assert handled == [(0.0, "fail"), (11.0, "trial"), (112.0, "last")]
    shed = [(t, type(e.error)) for t, e in event_log.records if e.kind.value == "Error"]
    assert shed == [(0.0, RuntimeError), (1.0, OverloadedError), (12.0, OverloadedError)]


async def test_load_shed_without_anything_to_ask_passes_everything(
    storage: MemoryStorage,
) -> None:
    starts: list[tuple[float, Any]] = []
    await storage.push_bulk("ab")
    worker = WorkerBuilder("w").backend(storage).layer(LoadShedLayer()).build(recording(starts, 2))
    await worker.run()
    assert [item for _, item in starts] == ["a", "b"]
    assert str(OverloadedError()) == "overloaded: the task was shed by LoadShedLayer"
