"""LongRunningLayer and the Runner handlers use for tracked sub-work."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest
import trio
import trio.testing
from conftest import EventLog

from pyapalis import (
    MemoryStorage,
    MissingDataError,
    Status,
    Task,
    TaskBuilder,
    WorkerBuilder,
    WorkerContext,
)
from pyapalis.layers._long_running import (
    LongRunningConfig,
    LongRunningLayer,
    OperationTimeoutError,
    Runner,
)


async def after(seconds: float, value: Any) -> Any:
    await trio.sleep(seconds)
    return value


async def fail_after(seconds: float, message: str) -> None:
    await trio.sleep(seconds)
    raise ValueError(message)


async def test_a_handler_runs_tracked_work_and_collects_it(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    async def handler(item: int, runner: Runner, ctx: WorkerContext) -> int:
        runner.execute(after, 1, item * 2)
        runner.execute(after, 2, item * 5)
        assert runner.pending == 2
        values = await runner.wait()
        assert runner.pending == 0
        ctx.stop()
        return sum(values)

    await storage.push(3)
    worker = WorkerBuilder("w").backend(storage).long_running().on_event(event_log)
    await worker.build(handler).run()
    assert [(t, e.result) for t, e in event_log.records if e.kind.value == "Success"] == [(2.0, 21)]


async def test_the_task_is_acknowledged_once_its_tracked_work_is_done(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    finished: list[float] = []

    async def background(seconds: float) -> None:
        await trio.sleep(seconds)
        finished.append(trio.current_time())

    async def handler(item: str, runner: Runner) -> str:
        runner.execute(background, 3)
        return "handler returned at once"

    task = Task("x")
    await storage.push_task(task)
    worker = WorkerBuilder("w").backend(storage).long_running().on_event(event_log).build(handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(1)
        assert task.parts.status is Status.Running
        assert worker.context.task_count == 1
        # Graceful stop waits for the tracked work, not only for the handler.
        worker.context.stop()
        await worker.context.wait_stopped()
        assert trio.current_time() == 3.0
    assert finished == [3.0]
    assert task.parts.status is Status.Done
    assert Runner not in task.parts.data  # the runner does not outlive the execution
    assert [(t, e.kind.value) for t, e in event_log.records] == [
        (0.0, "Start"),
        (3.0, "Success"),
        (3.0, "Stop"),
    ]


async def test_max_duration_limits_each_operation(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    seen: list[Any] = []

    async def handler(item: str, runner: Runner, ctx: WorkerContext) -> None:
        quick = runner.execute(after, 1, "quick")
        slow = runner.execute(after, 10, "slow")
        seen.append(await quick.wait())
        with pytest.raises(OperationTimeoutError) as info:
            await slow.wait()
        seen.append((trio.current_time(), str(info.value)))
        ctx.stop()

    await storage.push("x")
    config = LongRunningConfig(max_duration=timedelta(seconds=2))
    await WorkerBuilder("w").backend(storage).long_running(config).build(handler).run()
    assert seen == ["quick", (2.0, "tracked operation exceeded its maximum duration of 2s")]


async def test_wait_raises_the_first_failure_after_every_operation_finished(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    seen: list[Any] = []

    async def handler(item: str, runner: Runner, ctx: WorkerContext) -> None:
        ops = [
            runner.execute(after, 5, "five"),
            runner.execute(fail_after, 1, "first"),
            runner.execute(fail_after, 2, "second"),
        ]
        with pytest.raises(ValueError, match=r"^first$"):
            await runner.wait()
        seen.append(trio.current_time())
        seen.append([op.done for op in ops])
        seen.append(await ops[0].wait())
        seen.append(repr(ops[1]))
        ctx.stop()

    await storage.push("x")
    await WorkerBuilder("w").backend(storage).long_running().build(handler).run()
    assert seen == [5.0, [True, True, True], "five", "<Operation fail_after failed>"]


async def test_a_failure_nobody_waited_for_fails_the_task(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    async def handler(item: str, runner: Runner, ctx: WorkerContext) -> str:
        runner.execute(fail_after, 4, "lost work")
        ctx.stop()
        return "looked fine"

    task = Task("x")
    await storage.push_task(task)
    worker = WorkerBuilder("w").backend(storage).long_running().on_event(event_log)
    await worker.build(handler).run()
    assert task.parts.status is Status.Failed
    [(when, event)] = [(t, e) for t, e in event_log.records if e.kind.value == "Error"]
    assert when == 4.0
    assert str(event.error) == "lost work"
    assert event.error.__notes__ == [
        "tracked operation fail_after failed and the handler did not wait for it"
    ]


async def test_a_failing_handler_cancels_its_unfinished_operations(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    finished: list[str] = []

    async def tracked() -> None:
        await trio.sleep(10)
        finished.append("tracked")

    async def handler(item: str, runner: Runner, ctx: WorkerContext) -> None:
        runner.execute(tracked)
        await trio.sleep(1)
        ctx.stop()
        raise RuntimeError("handler failed")

    await storage.push("x")
    worker = WorkerBuilder("w").backend(storage).long_running().on_event(event_log)
    await worker.build(handler).run()
    assert finished == []
    assert [(t, str(e.error)) for t, e in event_log.records if e.kind.value == "Error"] == [
        (1.0, "handler failed")
    ]


async def test_cancelling_the_worker_cancels_tracked_work_and_hands_the_task_back(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    async def handler(item: str, runner: Runner) -> None:
        runner.execute(after, 100, None)

    task = TaskBuilder("x").build()
    await storage.push_task(task)
    worker = WorkerBuilder("w").backend(storage).long_running().build(handler)
    with trio.move_on_after(5):
        await worker.run()
    assert trio.current_time() == 5.0
    assert task.parts.status is Status.Pending
    assert task.parts.attempt.current() == 0
    assert len(storage) == 1


async def test_operations_started_while_waiting_are_waited_for(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    seen: list[Any] = []

    async def handler(item: str, runner: Runner, ctx: WorkerContext) -> None:
        async def chain() -> str:
            await trio.sleep(1)
            runner.execute(after, 2, "started by an operation")
            return "chain"

        runner.execute(chain)
        seen.append(await runner.wait())
        seen.append(trio.current_time())
        seen.append([op.name for op in runner.operations])
        ctx.stop()

    await storage.push("x")
    await WorkerBuilder("w").backend(storage).long_running().build(handler).run()
    assert seen[:2] == [["chain", "started by an operation"], 3.0]
    assert seen[2][1] == "after"


async def test_runner_is_unusable_once_the_task_finished(storage: MemoryStorage) -> None:
    kept: list[Runner] = []

    async def handler(item: str, runner: Runner, ctx: WorkerContext) -> None:
        kept.append(runner)
        ctx.stop()

    await storage.push("x")
    await WorkerBuilder("w").backend(storage).long_running().build(handler).run()
    with pytest.raises(RuntimeError, match=r"^Runner.execute: the task this runner belongs to"):
        kept[0].execute(after, 1, None)


def test_runner_from_request_without_the_layer() -> None:
    with pytest.raises(
        MissingDataError, match=r"the type for key `Runner` is not available"
    ) as info:
        Runner.from_request(Task("x"))
    assert "long_running()" in info.value.__notes__[0]


async def test_runner_execute_bad_input(storage: MemoryStorage) -> None:
    errors: list[str] = []

    async def handler(item: str, runner: Runner, ctx: WorkerContext) -> None:
        try:
            runner.execute(42)  # type: ignore[arg-type]
        except TypeError as error:
            errors.append(str(error))
        ctx.stop()

    await storage.push("x")
    await WorkerBuilder("w").backend(storage).long_running().build(handler).run()
    assert errors == ["Runner.execute: async_fn must be callable, got int 42"]


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (0, ValueError, "max_duration must be a finite number of seconds > 0, got 0"),
        (-1, ValueError, "max_duration must be a finite number of seconds > 0, got -1"),
        (math.nan, ValueError, "max_duration must be a finite number of seconds > 0, got nan"),
        ("1", TypeError, "max_duration must be seconds (int, float or timedelta), got str '1'"),
    ],
)
def test_long_running_config_bad_input(value: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as info:
        LongRunningConfig(max_duration=value)
    assert str(info.value) == f"LongRunningConfig: {message}"


def test_long_running_config_and_layer() -> None:
    assert LongRunningConfig().max_duration is None
    assert LongRunningConfig(max_duration=3).max_duration == 3.0
    assert LongRunningLayer().config == LongRunningConfig()
    with pytest.raises(TypeError, match=r"^LongRunningLayer: config must be a LongRunningConfig"):
        LongRunningLayer({"max_duration": 3})  # type: ignore[arg-type]


async def test_outside_a_worker_the_call_holds_its_own_nursery(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def inner(task: Task) -> str:
        runner = Runner.from_request(task)
        runner.execute(after, 2, None)
        failing = runner.execute(fail_after, 1, "seen")
        with pytest.raises(ValueError, match=r"^seen$"):
            await failing.wait()
        return "done"

    service: Any = LongRunningLayer().layer(inner)
    task = Task("x")
    assert await service(task) == "done"
    assert trio.current_time() == 2.0  # waited for the operation the handler left running
    assert Runner not in task.parts.data

    async def broken(task: Task) -> None:
        Runner.from_request(task).execute(fail_after, 3, "unobserved")

    with pytest.raises(ValueError, match=r"^unobserved\ntracked operation fail_after failed"):
        await LongRunningLayer().layer(broken)(Task("y"))

    async def failing_handler(task: Task) -> None:
        Runner.from_request(task).execute(after, 100, None)
        raise KeyError("handler")

    start = trio.current_time()
    with pytest.raises(KeyError):
        await LongRunningLayer().layer(failing_handler)(Task("z"))
    assert trio.current_time() == start  # its operation was cancelled, not awaited
