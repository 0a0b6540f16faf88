"""AcknowledgeLayer (``ack_with``) and EventListenerLayer."""

from __future__ import annotations

from typing import Any

import outcome
import pytest
import trio
import trio.testing
from conftest import EventLog

from pyapalis import (
    AbortError,
    MemoryStorage,
    RetryPolicy,
    Status,
    Task,
    TaskBuilder,
    WorkerBuilder,
    WorkerContext,
)
from pyapalis.layers._ack import AcknowledgeLayer, EventListenerLayer


async def test_the_acknowledger_sees_each_outcome_and_the_task(
    storage: MemoryStorage, event_log: EventLog
) -> None:
    seen: list[tuple[Any, str, Any]] = []

    def acknowledge(task: Task, result: outcome.Outcome[Any]) -> None:
        value = result.value if isinstance(result, outcome.Value) else repr(result.error)
        seen.append((task.args, task.parts.status.value, value))

    async def handler(item: int, ctx: WorkerContext) -> int:
        if item == 3:
            ctx.stop()
        if item == 2:
            raise ValueError("two")
        return item * 10

    await storage.push_bulk([1, 2, 3])
    worker = WorkerBuilder("w").backend(storage).ack_with(acknowledge).on_event(event_log)
    await worker.build(handler).run()
    # The acknowledger runs before the backend records the outcome (still Running).
    assert seen == [(1, "Running", 10), (2, "Running", "ValueError('two')"), (3, "Running", 30)]
    assert event_log.kinds == ["Start", "Success", "Error", "Success", "Stop"]


async def test_an_async_acknowledger_is_awaited_and_graceful_stop_waits_for_it(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    acked: list[float] = []
    counts: list[int] = []

    async def acknowledge(task: Task, result: outcome.Outcome[Any]) -> None:
        counts.append(worker.context.task_count)
        await trio.sleep(5)
        acked.append(trio.current_time())

    task = Task("x")
    await storage.push_task(task)
    worker = (WorkerBuilder("w").backend(storage).ack_with(acknowledge).on_event(event_log)).build(
        lambda item: item
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(1)
        assert task.parts.status is Status.Running  # not recorded while the ack runs
        worker.context.stop()
        await worker.context.wait_stopped()
        assert trio.current_time() == 5.0  # stop waited for the ack
    assert acked == [5.0]
    assert counts == [1]  # the task was counted in flight during its ack
    assert task.parts.status is Status.Done
    assert [(t, e.kind.value) for t, e in event_log.records] == [
        (0.0, "Start"),
        (5.0, "Success"),
        (5.0, "Stop"),
    ]


async def test_a_failing_ack_replaces_a_success(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    calls: list[int] = []

    async def flaky_ack(task: Task, result: outcome.Outcome[Any]) -> None:
        calls.append(task.parts.attempt.current())
        if len(calls) == 1:
            raise ConnectionError("ack lost")

    task = TaskBuilder("x").attempts(2).build()
    await storage.push_task(task)

    async def handler(item: str, ctx: WorkerContext) -> str:
        if len(calls) == 1:
            ctx.stop()
        return "ok"

    worker = WorkerBuilder("w").backend(storage).ack_with(flaky_ack).on_event(event_log)
    await worker.build(handler).run()
    # The failed ack made the first execution a failure: retried, then acknowledged.
    assert calls == [1, 2]
    assert task.parts.status is Status.Done
    assert event_log.kinds == ["Start", "Error", "Success", "Stop"]
    [error_event] = event_log.of("Error")
    assert isinstance(error_event.error, ConnectionError)
    assert error_event.error.__context__ is None
    assert [e.result for e in event_log.of("Success")] == ["ok"]


async def test_a_failing_ack_replaces_a_failure(
    storage: MemoryStorage, event_log: EventLog
) -> None:
    def strict_ack(task: Task, result: outcome.Outcome[Any]) -> None:
        if isinstance(result, outcome.Error):
            raise AbortError("failures are not acceptable")

    task = TaskBuilder("x").attempts(5).build()
    await storage.push_task(task)

    async def handler(item: str, ctx: WorkerContext) -> None:
        ctx.stop()
        raise ValueError("boom")

    worker = WorkerBuilder("w").backend(storage).ack_with(strict_ack).on_event(event_log)
    await worker.build(handler).run()
    # AbortError from the ack: Killed at once, the handler's error as context.
    assert task.parts.status is Status.Killed
    assert task.parts.attempt.current() == 1
    [event] = event_log.of("Error")
    assert isinstance(event.error, AbortError)
    assert isinstance(event.error.__context__, ValueError)


async def test_an_object_with_an_ack_method(storage: MemoryStorage) -> None:
    class Acknowledger:
        def __init__(self) -> None:
            self.results: list[Any] = []

        async def ack(self, task: Task, result: outcome.Outcome[Any]) -> None:
            self.results.append(result.unwrap())

    acknowledger = Acknowledger()

    async def handler(item: int, ctx: WorkerContext) -> int:
        ctx.stop()
        return item + 1

    await storage.push(41)
    await WorkerBuilder("w").backend(storage).ack_with(acknowledger).build(handler).run()
    assert acknowledger.results == [42]


async def test_ack_sees_what_execution_layers_inside_it_produce(
    storage: MemoryStorage,
) -> None:
    # ack_with() after catch_panic(): the ack is outside it and sees the AbortError.
    seen: list[str] = []

    def acknowledge(task: Task, result: outcome.Outcome[Any]) -> None:
        assert isinstance(result, outcome.Error)
        seen.append(type(result.error).__name__)

    async def handler(item: int, ctx: WorkerContext) -> None:
        ctx.stop()
        raise KeyError(item)

    await storage.push(1)
    worker = WorkerBuilder("w").backend(storage).ack_with(acknowledge).catch_panic()
    await worker.build(handler).run()
    assert seen == ["AbortError"]


async def test_the_ack_runs_once_per_execution_with_retries(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    seen: list[tuple[float, str]] = []

    def acknowledge(task: Task, result: outcome.Outcome[Any]) -> None:
        seen.append((trio.current_time(), "ok" if isinstance(result, outcome.Value) else "err"))

    async def handler(item: int, ctx: WorkerContext) -> None:
        if len(seen) < 2:
            raise RuntimeError("again")
        ctx.stop()

    from pyapalis import BackoffMode

    await storage.push(1)
    worker = (
        WorkerBuilder("w")
        .backend(storage)
        .retry(RetryPolicy.retries(2, BackoffMode.constant(3)))
        .ack_with(acknowledge)
    )
    await worker.build(handler).run()
    assert seen == [(0.0, "err"), (3.0, "err"), (6.0, "ok")]


def test_acknowledge_layer_bad_input() -> None:
    with pytest.raises(
        TypeError, match=r"^AcknowledgeLayer: acknowledger must be callable, got int 3$"
    ):
        AcknowledgeLayer(3)


# -- EventListenerLayer -------------------------------------------------------------------


async def test_event_listener_layer_receives_the_workers_events(storage: MemoryStorage) -> None:
    seen: list[tuple[str, str]] = []

    async def handler(item: int, ctx: WorkerContext) -> None:
        ctx.stop()

    await storage.push(1)
    layer = EventListenerLayer(lambda ctx, ev: seen.append((ctx.name, ev.kind.value)))
    worker = WorkerBuilder("listened").backend(storage).layer(layer).build(handler)
    assert worker.dispatch.layered is None  # no service added: nothing to pay per task
    await worker.run()
    assert seen == [("listened", "Start"), ("listened", "Success"), ("listened", "Stop")]


async def test_event_listener_layer_serves_each_worker_built_with_it() -> None:
    seen: list[str] = []
    layer = EventListenerLayer(lambda ctx, ev: seen.append(f"{ctx.name}:{ev.kind.value}"))
    for name in ("a", "b"):
        storage = MemoryStorage()
        worker = WorkerBuilder(name).backend(storage).layer(layer).build(lambda item: None)
        worker.context.stop()  # stopped before it ran: Start, then Stop at once
        await worker.run()
    assert seen == ["a:Start", "a:Stop", "b:Start", "b:Stop"]


def test_event_listener_layer_outside_a_worker_adds_nothing() -> None:
    async def inner(task: Task) -> None:
        return None

    assert EventListenerLayer(lambda ctx, ev: None).layer(inner) is inner


def test_event_listener_layer_bad_input() -> None:
    with pytest.raises(
        TypeError, match=r"^EventListenerLayer: callback must be callable, got str 'x'$"
    ):
        EventListenerLayer("x")  # type: ignore[arg-type]
