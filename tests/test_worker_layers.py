"""User layers around the handler: order, readiness (backpressure), failures, forms.

The stack is ``user layers (first added = outermost) -> ack -> attempt/handler``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing
from conftest import EventLog

from pyapalis import (
    Attempt,
    MemoryStorage,
    RetryPolicy,
    Status,
    Task,
    TaskBuilder,
    WorkerBuilder,
    WorkerContext,
)
from pyapalis.layers import Layer, Service


class Recording:
    """A layer that records when the task passes in and out of it."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    def layer(self, inner: Service) -> Service:
        name, log = self.name, self.log

        async def service(task: Task) -> Any:
            log.append(f"{name}-in")
            try:
                result = await inner(task)
            except Exception as exc:
                log.append(f"{name}-error:{exc}")
                raise
            log.append(f"{name}-out:{result!r}")
            return result

        return service


# -- order ------------------------------------------------------------------------


async def test_first_added_layer_is_outermost(storage: MemoryStorage) -> None:
    log: list[str] = []

    async def handler(item: str, ctx: WorkerContext) -> str:
        log.append(f"handler:{item}")
        ctx.stop()
        return item.upper()

    await storage.push("x")
    worker = (
        WorkerBuilder("w")
        .backend(storage)
        .layer(Recording("A", log))
        .layer(Recording("B", log))
        .layer(Recording("C", log))
        .build(handler)
    )
    await worker.run()
    assert log == ["A-in", "B-in", "C-in", "handler:x", "C-out:'X'", "B-out:'X'", "A-out:'X'"]


async def test_layers_see_the_handlers_exception_and_the_task_is_settled(
    storage: MemoryStorage, event_log: EventLog
) -> None:
    log: list[str] = []
    task = Task("x")
    await storage.push_task(task)

    async def handler(item: str, ctx: WorkerContext) -> None:
        ctx.stop()
        raise ValueError("bad")

    worker = (
        WorkerBuilder("w").backend(storage).layer(Recording("A", log)).on_event(event_log)
    ).build(handler)
    await worker.run()  # the exception a layer re-raises does not stop the worker
    assert log == ["A-in", "A-error:bad"]
    assert task.parts.status is Status.Failed
    assert event_log.kinds == ["Start", "Error", "Stop"]
    assert str(event_log.of("Error")[0].error) == "bad"


async def test_a_plain_function_layer(storage: MemoryStorage) -> None:
    calls: list[tuple[str, Any]] = []

    def double_result(inner: Service) -> Service:
        async def service(task: Task) -> Any:
            calls.append(("before", task.args))
            result = await inner(task)
            calls.append(("after", result))
            return result * 2

        return service

    async def handler(item: int, ctx: WorkerContext) -> int:
        ctx.stop()
        return item + 1

    await storage.push(20)
    events: list[Any] = []
    worker = (
        WorkerBuilder("w")
        .backend(storage)
        .layer(double_result)
        .on_event(lambda ctx, ev: events.append(ev))
        .build(handler)
    )
    await worker.run()
    assert calls == [("before", 20), ("after", 21)]
    # The handler's own result is what was acknowledged.
    assert [ev.result for ev in events if ev.kind.value == "Success"] == [21]


async def test_seed_logging_layer_pattern(
    storage: MemoryStorage, capsys: pytest.CaptureFixture[str]
) -> None:
    # The seed's LogLayer / LogService (a tower Layer and Service), in Python.
    class LogService:
        def __init__(self, target: str, service: Service) -> None:
            self.target = target
            self.service = service

        async def ready(self) -> None:
            await self.service.ready()  # type: ignore[attr-defined]

        async def __call__(self, request: Task) -> Any:
            print(f"request = {request.args!r}, target = {self.target!r}")
            return await self.service(request)

    class LogLayer:
        def __init__(self, target: str) -> None:
            self.target = target

        def layer(self, service: Service) -> Service:
            return LogService(self.target, service)

    assert isinstance(LogLayer("t"), Layer)

    async def handler(item: int, ctx: WorkerContext) -> None:
        if item == 2:
            ctx.stop()

    await storage.push_bulk([1, 2])
    worker = WorkerBuilder("w").backend(storage).layer(LogLayer("some-target")).build(handler)
    await worker.run()
    assert capsys.readouterr().out.splitlines() == [
        "request = 1, target = 'some-target'",
        "request = 2, target = 'some-target'",
    ]


async def test_a_layer_may_answer_without_calling_the_handler(
    storage: MemoryStorage, event_log: EventLog
) -> None:
    handled: list[str] = []
    cache = {"cached": "from-cache"}
    tasks = [Task("cached"), Task("fresh")]
    for task in tasks:
        await storage.push_task(task)

    def caching(inner: Service) -> Service:
        async def service(task: Task) -> Any:
            if task.args in cache:
                return cache[task.args]
            return await inner(task)

        return service

    async def handler(item: str, ctx: WorkerContext) -> str:
        handled.append(item)
        ctx.stop()
        return "computed"

    worker = WorkerBuilder("w").backend(storage).layer(caching).on_event(event_log).build(handler)
    await worker.run()
    assert handled == ["fresh"]
    assert [t.parts.status for t in tasks] == [Status.Done, Status.Done]
    assert [e.result for e in event_log.of("Success")] == ["from-cache", "computed"]
    assert [e.task_id for e in event_log.of("Success")] == [t.parts.task_id for t in tasks]


# -- a layer that fails before the handler ------------------------------------------------


async def test_a_layer_failing_before_the_handler_is_a_failed_attempt(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    refusals: list[tuple[float, int]] = []
    handled: list[tuple[float, int]] = []
    task = Task("x")
    await storage.push_task(task)

    def refuse_twice(inner: Service) -> Service:
        async def service(task: Task) -> Any:
            if len(refusals) < 2:
                refusals.append((trio.current_time(), task.parts.attempt.current()))
                raise PermissionError("not yet")
            return await inner(task)

        return service

    async def handler(item: str, attempt: Attempt, ctx: WorkerContext) -> None:
        handled.append((trio.current_time(), attempt.current()))
        ctx.stop()

    from pyapalis import BackoffMode

    worker = (
        WorkerBuilder("w")
        .backend(storage)
        .layer(refuse_twice)
        .retry(RetryPolicy.retries(2, BackoffMode.constant(5)))
        .on_event(event_log)
        .build(handler)
    )
    await worker.run()
    # Each refusal counted as an attempt and was retried with the policy's backoff.
    assert refusals == [(0.0, 0), (5.0, 1)]
    assert handled == [(10.0, 3)]
    assert task.parts.status is Status.Done
    assert event_log.kinds == ["Start", "Error", "Idle", "Error", "Idle", "Success", "Stop"]
    assert all(type(e.error) is PermissionError for e in event_log.of("Error"))


async def test_a_layer_that_always_fails_cannot_bounce_a_task_forever(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    task = TaskBuilder("x").attempts(3).build()
    await storage.push_task(task)
    calls = 0

    def broken(inner: Service) -> Service:
        async def service(task: Task) -> Any:
            nonlocal calls
            calls += 1
            raise RuntimeError("layer bug")

        return service

    async def handler(item: str) -> None:
        raise AssertionError("never reached")

    worker = WorkerBuilder("w").backend(storage).layer(broken).on_event(event_log).build(handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(10)
        worker.context.stop()
    assert calls == 3
    assert task.parts.attempt.current() == 3
    assert task.parts.status is Status.Failed  # settled, never lost
    assert len(event_log.of("Error")) == 3
    assert len(storage) == 0


# -- readiness (backpressure) ------------------------------------------------------------


class Gate:
    """A layer whose service is ready only while the gate is open."""

    def __init__(self) -> None:
        self.open = trio.Event()
        self.ready_calls = 0

    def layer(self, inner: Service) -> Service:
        gate = self

        class GateService:
            async def ready(self) -> None:
                gate.ready_calls += 1
                await gate.open.wait()

            async def __call__(self, task: Task) -> Any:
                return await inner(task)

        return GateService()


async def test_a_layer_that_is_not_ready_stops_pulling(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    gate = Gate()
    seen: list[tuple[float, int]] = []

    async def handler(item: int) -> None:
        seen.append((trio.current_time(), item))

    worker = WorkerBuilder("w").backend(storage).layer(gate).build(handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await storage.push_bulk([1, 2, 3])
        await trio.sleep(5)
        # Not ready: nothing was taken from the storage.
        assert seen == []
        assert len(storage) == 3
        assert storage.statistics().taken_total == 0
        assert gate.ready_calls == 1
        gate.open.set()
        await trio.sleep(1)
        worker.context.stop()
    assert seen == [(5.0, 1), (5.0, 2), (5.0, 3)]
    assert gate.ready_calls >= 4  # asked before every pull


async def test_stop_while_a_layer_is_not_ready(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    gate = Gate()
    await storage.push(1)
    worker = (
        WorkerBuilder("w").backend(storage).layer(gate).concurrency(2).on_event(event_log)
    ).build(lambda item: None)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(3)
        worker.context.stop()
        with trio.fail_after(1):
            await worker.context.wait_stopped()
        assert trio.current_time() == 3.0
    assert len(storage) == 1  # nothing was pulled
    assert event_log.kinds == ["Start", "Stop"]


async def test_pause_while_a_layer_is_not_ready(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    gate = Gate()
    seen: list[float] = []

    async def handler(item: int) -> None:
        seen.append(trio.current_time())

    await storage.push(1)
    worker = WorkerBuilder("w").backend(storage).layer(gate).build(handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(1)
        worker.context.pause()
        await trio.sleep(1)
        gate.open.set()  # ready again, but paused: still nothing is pulled
        await trio.sleep(3)
        assert seen == []
        worker.context.resume()
        await trio.sleep(1)
        worker.context.stop()
    assert seen == [5.0]


async def test_ready_that_forwards_to_the_inner_service_limits_concurrency(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    # A tower-style concurrency limit: ready() waits for a permit, the call
    # releases it. With 4 loops and 2 permits, 2 run at a time.
    class LimitLayer:
        def __init__(self, n: int) -> None:
            self.limiter = trio.CapacityLimiter(n)

        def layer(self, inner: Service) -> Service:
            limiter = self.limiter

            class LimitService:
                async def ready(self) -> None:
                    await limiter.acquire_on_behalf_of(trio.lowlevel.current_task())

                async def __call__(self, task: Task) -> Any:
                    try:
                        return await inner(task)
                    finally:
                        limiter.release_on_behalf_of(trio.lowlevel.current_task())

            return LimitService()

    running = 0
    peak = 0
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
    worker = WorkerBuilder("w").backend(storage).concurrency(4).layer(LimitLayer(2)).build(handler)
    await worker.run()
    assert peak == 2
    assert done == [1.0, 1.0, 2.0, 2.0, 3.0, 3.0]


# -- interruption with layers --------------------------------------------------------------


async def test_cancelled_from_outside_with_layers_hands_the_task_back(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    log: list[str] = []
    task = Task("x")
    await storage.push_task(task)

    async def handler(item: str) -> None:
        await trio.sleep(10)

    worker = WorkerBuilder("w").backend(storage).layer(Recording("A", log)).build(handler)
    with trio.move_on_after(2):
        await worker.run()
    assert log == ["A-in"]
    assert task.parts.status is Status.Pending
    assert task.parts.attempt.current() == 0
    assert len(storage) == 1


async def test_keyboard_interrupt_in_a_layer_hands_the_task_back(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    task = Task("x")
    await storage.push_task(task)

    def interrupting(inner: Service) -> Service:
        async def service(task: Task) -> Any:
            await trio.sleep(1)
            raise KeyboardInterrupt

        return service

    worker = WorkerBuilder("w").backend(storage).layer(interrupting).build(lambda item: None)
    with pytest.raises(KeyboardInterrupt):
        await worker.run()
    assert task.parts.status is Status.Pending
    assert task.parts.attempt.current() == 0
    assert len(storage) == 1


def _typed_layer(inner: Callable[[Task], Awaitable[Any]]) -> Callable[[Task], Awaitable[Any]]:
    return inner


def test_layer_returning_a_non_service_fails_at_build() -> None:
    def bad(inner: Service) -> Any:
        return 42

    builder = WorkerBuilder("w").backend(MemoryStorage()).layer(bad)
    with pytest.raises(TypeError, match="not a service"):
        builder.build(lambda item: None)
    # A pass-through layer is fine.
    WorkerBuilder("w").backend(MemoryStorage()).layer(_typed_layer).build(lambda item: None)


async def test_a_layer_raising_after_success_is_logged_and_the_task_stays_done(
    storage: MemoryStorage, caplog: pytest.LogCaptureFixture
) -> None:
    def explode_after(inner: Service) -> Service:
        async def service(task: Task) -> Any:
            await inner(task)
            raise RuntimeError("layer broke after the handler")

        return service

    async def handler(item: int, ctx: WorkerContext) -> int:
        ctx.stop()
        return item

    task = TaskBuilder(7).build()
    await storage.push_task(task)
    worker = WorkerBuilder("w").backend(storage).layer(explode_after).build(handler)
    with caplog.at_level("ERROR", logger="pyapalis.worker"):
        await worker.run()
    assert task.parts.status is Status.Done
    assert len(storage) == 0
    [record] = caplog.records
    assert "raised after task" in record.getMessage()
    assert str(task.parts.task_id) in record.getMessage()
    assert isinstance(record.exc_info and record.exc_info[1], RuntimeError)
