"""The Monitor: several workers, events from all, restarts with backoff, shutdown, errors.

Every test runs in virtual time (``autojump_clock``) and asserts exact instants.
Signals are tested in a subprocess: ``tests/test_monitor_signals.py``.
"""

from __future__ import annotations

import logging
import math
import pickle
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing
from conftest import EventLog

from pyapalis import (
    Attempt,
    BackoffMode,
    EventKind,
    MemoryStorage,
    PyapalisError,
    Status,
    StorageError,
    Task,
    Worker,
    WorkerBuilder,
    WorkerContext,
    WorkerStateError,
)
from pyapalis._monitor import DEFAULT_RESTART_BACKOFF, Monitor, MonitorError, MonitorStatistics
from pyapalis.backends._json._storage import JsonStorage


class BrokenBackend:
    """A backend whose connection drops ``after`` seconds into the run: taking raises.

    It never hands out a task; its error is one fresh :class:`StorageError`.
    """

    def __init__(self, after: float, message: str = "connection lost") -> None:
        self.after = after
        self.error = StorageError(message)
        self.fail_at = math.inf

    def bind(self) -> None:
        self.fail_at = trio.current_time() + self.after

    def take_nowait(self) -> Task | None:
        if trio.current_time() >= self.fail_at:
            raise self.error
        return None

    async def take(self) -> Task:
        await trio.sleep_until(self.fail_at)
        raise self.error

    async def ack(self, task: Task, status: Status, result: Any, error: Any) -> None:
        raise AssertionError("BrokenBackend hands out no task")

    async def retry(self, task: Task, delay: float, error: BaseException) -> None:
        raise AssertionError("BrokenBackend hands out no task")

    async def release(self, task: Task) -> None:
        raise AssertionError("BrokenBackend hands out no task")


async def _noop(item: object) -> None:
    pass


def broken_worker(name: str, after: float) -> Worker:
    return WorkerBuilder(name).backend(BrokenBackend(after, f"{name} lost")).build(_noop)


def stop_after(seconds: float) -> Callable[[], Any]:
    """A terminator that returns after ``seconds``."""

    async def terminator() -> None:
        await trio.sleep(seconds)

    return terminator


def drain(storage: MemoryStorage) -> list[Task]:
    tasks = []
    while (task := storage.take_nowait()) is not None:
        tasks.append(task)
    return tasks


# -- the seed example ------------------------------------------------------------------


async def test_seed_example(autojump_clock: trio.testing.MockClock) -> None:
    storage = MemoryStorage()
    await storage.push_bulk(range(10))
    handled: list[tuple[int, float]] = []
    results: list[int] = []

    async def task(item: int, worker: WorkerContext) -> int:
        await trio.sleep(1)
        handled.append((item, trio.current_time()))
        return item * 2

    monitor = Monitor()
    for name in ("rango", "tango", "cash"):
        monitor.register(
            lambda restarts, name=name: WorkerBuilder(name).backend(storage).build(task)
        )

    def on_event(ctx: WorkerContext, event: Any) -> None:
        if event.kind is EventKind.Success:
            results.append(event.result)
            if len(results) == 10:
                monitor.shutdown()  # from an event callback: plain sync code

    monitor.on_event(on_event).shutdown_timeout(5)
    start = trio.current_time()
    await monitor.run()
    # Three workers, ten one-second tasks: four rounds, FIFO.
    assert trio.current_time() - start == 4.0
    assert sorted(handled) == [(item, start + item // 3 + 1) for item in range(10)]
    assert sorted(results) == [item * 2 for item in range(10)]
    assert len(storage) == 0
    assert [worker.name for worker in monitor.workers] == ["rango", "tango", "cash"]
    assert all(worker.context.is_stopped for worker in monitor.workers)
    assert monitor.statistics() == MonitorStatistics(
        workers_registered=3,
        workers_running=0,
        workers_restarting=0,
        workers_stopped=3,
        workers_failed=0,
        restarts=0,
        tasks_in_flight=0,
        running=False,
        shutting_down=True,
        shutdown_forced=False,
    )


async def test_seed_example_with_json_storage(autojump_clock: trio.testing.MockClock) -> None:
    storage = JsonStorage.new_temp()
    try:
        task_id = await storage.push(1)
        printed: list[str] = []

        async def task(item: int, worker: WorkerContext) -> int:
            await trio.sleep(1)
            return item + 1

        monitor = Monitor()

        def on_event(ctx: WorkerContext, event: Any) -> None:
            if event.kind is EventKind.HeartBeat:
                return  # a worker registered with JsonStorage heartbeats while it runs
            printed.append(f"{event.kind} {ctx.name}")
            if event.kind is EventKind.Success:
                monitor.shutdown()

        monitor.register(
            lambda restarts: WorkerBuilder("rango-tango").backend(storage).build(task)
        ).on_event(on_event)
        await monitor.run()
        assert printed == ["Start rango-tango", "Success rango-tango", "Stop rango-tango"]
        [result] = await storage.check_status([task_id])
        assert result.status is Status.Done
        assert result.unwrap() == 2
    finally:
        storage.close()


# -- graceful shutdown and its timeout -------------------------------------------------


async def test_graceful_shutdown_lets_in_flight_tasks_finish(
    autojump_clock: trio.testing.MockClock, storage: MemoryStorage
) -> None:
    await storage.push_bulk(["long", "queued"])
    finished: list[tuple[str, float]] = []

    async def task(item: str) -> None:
        await trio.sleep(10)
        finished.append((item, trio.current_time()))

    monitor = Monitor().register(WorkerBuilder("w").backend(storage).build(task))
    start = trio.current_time()
    await monitor.run_until(stop_after(1))
    assert trio.current_time() - start == 10.0  # no timeout: as long as the task takes
    assert finished == [("long", start + 10)]
    assert [t.args for t in drain(storage)] == ["queued"]  # never pulled
    assert not monitor.statistics().shutdown_forced


async def test_shutdown_timeout_cancels_in_flight_tasks_and_hands_them_back(
    autojump_clock: trio.testing.MockClock, storage: MemoryStorage, event_log: EventLog
) -> None:
    await storage.push_bulk(["quick", "slow", "slower", "queued"])
    durations = {"quick": 1, "slow": 100, "slower": 100, "queued": 1}

    async def task(item: str) -> None:
        await trio.sleep(durations[item])

    monitor = (
        Monitor()
        .register(WorkerBuilder("w").backend(storage).concurrency(3).build(task))
        .on_event(event_log)
        .shutdown_timeout(5)
    )
    start = trio.current_time()
    await monitor.run_until(stop_after(1.5))
    # quick ends at 1, queued (pulled at 1) finishes gracefully at 2; the shutdown
    # began at 1.5, so slow and slower are cancelled at 6.5.
    assert trio.current_time() - start == 6.5
    assert [(t - start, e.kind.value) for t, e in event_log.records if e.kind.value != "Idle"] == [
        (0.0, "Start"),
        (1.0, "Success"),
        (2.0, "Success"),
        (6.5, "Stop"),
    ]
    assert monitor.statistics().shutdown_forced
    handed_back = drain(storage)
    assert sorted(t.args for t in handed_back) == ["slow", "slower"]
    assert [t.parts.attempt.current() for t in handed_back] == [0, 0]  # not counted
    assert [t.parts.status for t in handed_back] == [Status.Pending, Status.Pending]

    # Run again: their first counted execution is attempt 1.
    for handed in handed_back:
        await storage.push_task(handed)
    seen: list[tuple[str, int]] = []

    async def record(item: str, attempt: Attempt) -> None:
        seen.append((item, attempt.current()))

    again = Monitor().register(WorkerBuilder("again").backend(storage).build(record))
    await again.run_until(stop_after(1))
    assert sorted(seen) == [("slow", 1), ("slower", 1)]


async def test_shutdown_timeout_zero_cancels_at_once(
    autojump_clock: trio.testing.MockClock, storage: MemoryStorage
) -> None:
    await storage.push("long")

    async def task(item: str) -> None:
        await trio.sleep(10)

    monitor = (
        Monitor().register(WorkerBuilder("w").backend(storage).build(task)).shutdown_timeout(0)
    )
    start = trio.current_time()
    await monitor.run_until(stop_after(2))
    assert trio.current_time() - start == 2.0
    [task_back] = drain(storage)
    assert task_back.parts.attempt.current() == 0


async def test_cancelling_the_run_hands_tasks_back(
    autojump_clock: trio.testing.MockClock, storage: MemoryStorage
) -> None:
    await storage.push_bulk([1, 2])

    async def task(item: int) -> None:
        await trio.sleep(10)

    monitor = Monitor().register(WorkerBuilder("w").backend(storage).concurrency(2).build(task))
    start = trio.current_time()
    with trio.move_on_after(3):
        await monitor.run()
    assert trio.current_time() - start == 3.0
    handed_back = drain(storage)
    assert sorted(t.args for t in handed_back) == [1, 2]
    assert [t.parts.attempt.current() for t in handed_back] == [0, 0]
    assert monitor.workers[0].context.is_stopped
    assert monitor.statistics().workers_stopped == 1


# -- shutdown() ------------------------------------------------------------------------


async def test_shutdown_from_a_handler_and_again_is_idempotent(
    autojump_clock: trio.testing.MockClock, storage: MemoryStorage
) -> None:
    await storage.push_bulk([1, 2])
    calls: list[float] = []
    monitor = Monitor()

    async def task(item: int) -> None:
        await trio.sleep(1)
        calls.append(trio.current_time())
        monitor.shutdown()
        monitor.shutdown()

    monitor.register(WorkerBuilder("w").backend(storage).build(task))
    start = trio.current_time()
    await monitor.run()
    assert calls == [start + 1]
    assert [t.args for t in drain(storage)] == [2]
    monitor.shutdown()  # after the run: still nothing happens
    assert monitor.is_shutting_down


async def test_shutdown_before_run_stops_the_workers_as_they_start(
    autojump_clock: trio.testing.MockClock, storage: MemoryStorage, event_log: EventLog
) -> None:
    await storage.push(1)
    monitor = (
        Monitor().register(WorkerBuilder("w").backend(storage).build(_noop)).on_event(event_log)
    )
    monitor.shutdown()
    start = trio.current_time()
    await monitor.run()
    assert trio.current_time() == start
    assert event_log.kinds == ["Start", "Stop"]
    assert len(storage) == 1
    assert monitor.workers[0].context.is_stopped


async def test_shutdown_from_another_thread_is_forwarded_to_the_trio_thread(
    autojump_clock: trio.testing.MockClock, storage: MemoryStorage
) -> None:
    monitor = Monitor().register(WorkerBuilder("w").backend(storage).build(_noop))
    finished: list[float] = []

    async def run() -> None:
        await monitor.run()
        finished.append(trio.current_time())

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await trio.sleep(1)
        await trio.to_thread.run_sync(monitor.shutdown)
    assert finished == [start + 1]
    assert monitor.workers[0].context.is_stopped


async def test_a_monitor_runs_once(
    autojump_clock: trio.testing.MockClock, storage: MemoryStorage
) -> None:
    monitor = Monitor().register(WorkerBuilder("w").backend(storage).build(_noop))
    monitor.shutdown()
    await monitor.run()
    with pytest.raises(WorkerStateError, match=r"^the monitor is finished: a Monitor runs once$"):
        await monitor.run()
    with pytest.raises(
        WorkerStateError, match=r"^register: the monitor is shutting down or has stopped$"
    ):
        monitor.register(WorkerBuilder("late").backend(storage).build(_noop))


async def test_run_while_running_is_refused(
    autojump_clock: trio.testing.MockClock, storage: MemoryStorage
) -> None:
    monitor = Monitor().register(WorkerBuilder("w").backend(storage).build(_noop))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(monitor.run)
        await trio.sleep(1)
        with pytest.raises(
            WorkerStateError, match=r"^the monitor is running: a Monitor runs once$"
        ):
            await monitor.run()
        monitor.shutdown()


async def test_register_while_running_starts_the_worker(
    autojump_clock: trio.testing.MockClock, storage: MemoryStorage
) -> None:
    await storage.push("x")
    handled: list[tuple[str, float]] = []

    async def task(item: str, worker: WorkerContext) -> None:
        handled.append((worker.name, trio.current_time()))

    idle = MemoryStorage()
    monitor = Monitor().register(WorkerBuilder("first").backend(idle).build(_noop))
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(monitor.run)
        await trio.sleep(1)
        monitor.register(WorkerBuilder("late").backend(storage).build(task))
        await trio.sleep(1)
        assert monitor.statistics().workers_running == 2
        monitor.shutdown()
    assert handled == [("late", start + 1)]
    assert all(worker.context.is_stopped for worker in monitor.workers)


# -- run_until: shut down when a function returns -------------------------------------


async def test_run_until_starts_the_shutdown_when_its_function_returns(
    autojump_clock: trio.testing.MockClock, storage: MemoryStorage
) -> None:
    await storage.push_bulk([1, 2, 3])
    handled: list[tuple[int, float]] = []

    async def task(item: int) -> None:
        await trio.sleep(1)
        handled.append((item, trio.current_time()))

    monitor = Monitor().register(WorkerBuilder("w").backend(storage).build(task))
    start = trio.current_time()
    await monitor.run_until(stop_after(2.5))
    # Shutdown at 2.5; task 3 (started at 2) finishes at 3.
    assert trio.current_time() - start == 3.0
    assert handled == [(1, start + 1), (2, start + 2), (3, start + 3)]
    assert not monitor.statistics().shutdown_forced


async def test_run_until_is_cancelled_when_every_worker_stopped_first(
    autojump_clock: trio.testing.MockClock, storage: MemoryStorage
) -> None:
    await storage.push(1)
    signal_ended: list[tuple[str, float]] = []

    async def task(item: int, worker: WorkerContext) -> None:
        await trio.sleep(1)
        worker.stop()  # the only worker stops itself

    async def signal() -> None:
        try:
            await trio.sleep_forever()
        finally:
            signal_ended.append(("cancelled", trio.current_time()))

    monitor = Monitor().register(WorkerBuilder("w").backend(storage).build(task))
    start = trio.current_time()
    await monitor.run_until(signal)
    assert trio.current_time() - start == 1.0
    assert signal_ended == [("cancelled", start + 1)]
    assert not monitor.is_shutting_down  # the workers stopped by themselves


async def test_a_failing_run_until_function_shuts_down_gracefully_then_raises(
    autojump_clock: trio.testing.MockClock, storage: MemoryStorage
) -> None:
    await storage.push(1)
    finished: list[float] = []

    async def task(item: int) -> None:
        await trio.sleep(5)
        finished.append(trio.current_time())

    async def signal() -> None:
        await trio.sleep(1)
        raise ValueError("lost the control channel")

    monitor = Monitor().register(WorkerBuilder("w").backend(storage).build(task))
    start = trio.current_time()
    with pytest.raises(ValueError, match=r"^lost the control channel$"):
        await monitor.run_until(signal)
    assert trio.current_time() - start == 5.0
    assert finished == [start + 5]


async def test_a_failing_run_until_function_and_a_failing_worker(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def signal() -> None:
        await trio.sleep(3)
        raise ValueError("signal broke")

    worker = broken_worker("b", after=1)
    monitor = Monitor().register(worker)
    with pytest.raises(MonitorError) as info:
        await monitor.run_until(signal)
    # The worker failed at 1 and shut everything down: the function was cancelled.
    assert info.value.errors == [("b", worker.source.backend.error)]  # type: ignore[attr-defined]
    assert info.value.__cause__ is None

    async def failing_soon() -> None:
        await trio.sleep(1)
        raise ValueError("signal broke")

    class AckFails(MemoryStorage):
        def ack_nowait(self, task: Task, status: Status, result: Any, error: Any) -> None:
            raise StorageError("ack lost")

    slow = AckFails()
    await slow.push(1)

    async def task(item: int) -> None:
        await trio.sleep(2)

    monitor = Monitor().register(WorkerBuilder("slow").backend(slow).build(task))
    start = trio.current_time()
    with pytest.raises(MonitorError) as info:
        await monitor.run_until(failing_soon)
    # The function failed at 1 (graceful shutdown); the draining task's ack failed at 2.
    assert trio.current_time() - start == 2.0
    assert [(name, str(error)) for name, error in info.value.errors] == [("slow", "ack lost")]
    assert isinstance(info.value.__cause__, ValueError)
    assert str(info.value.__cause__) == "signal broke"


# -- the terminator: a time limit on shutdown (apalis) ----------------------------------


def recording_terminator(seconds: float, calls: list[tuple[str, float]]) -> Callable[[], Any]:
    """A terminator that returns ``seconds`` after it starts, recording when it
    started and how it ended (returned or cancelled)."""

    async def terminator() -> None:
        calls.append(("started", trio.current_time()))
        try:
            await trio.sleep(seconds)
        except trio.Cancelled:
            calls.append(("cancelled", trio.current_time()))
            raise
        calls.append(("returned", trio.current_time()))

    return terminator


async def test_the_terminator_starts_with_the_shutdown_and_then_stops_in_flight_tasks(
    autojump_clock: trio.testing.MockClock, storage: MemoryStorage, event_log: EventLog
) -> None:
    """apalis's terminator limits the shutdown: started when it begins (not with the
    run), and when it returns the tasks still running are cancelled and handed back."""
    await storage.push_bulk(["slow", "slower", "queued"])
    finished: list[str] = []

    async def task(item: str) -> None:
        await trio.sleep(10)
        finished.append(item)

    calls: list[tuple[str, float]] = []
    monitor = (
        Monitor()
        .register(WorkerBuilder("w").backend(storage).concurrency(2).build(task))
        .on_event(event_log)
        .with_terminator(recording_terminator(3, calls))
    )
    start = trio.current_time()
    await monitor.run_until(stop_after(2))
    # Shutdown at 2, the terminator returns at 5: both tasks are cancelled then.
    assert calls == [("started", start + 2), ("returned", start + 5)]
    assert trio.current_time() - start == 5.0
    assert finished == []
    assert [(t - start, e.kind.value) for t, e in event_log.records] == [
        (0.0, "Start"),
        (5.0, "Stop"),
    ]
    assert monitor.statistics().shutdown_forced
    handed_back = drain(storage)
    # Handed back first in line (the two loops in either order), before "queued".
    assert sorted(t.args for t in handed_back[:2]) == ["slow", "slower"]
    assert handed_back[2].args == "queued"
    assert [t.parts.attempt.current() for t in handed_back] == [0, 0, 0]  # not counted
    assert [t.parts.status for t in handed_back] == [Status.Pending] * 3


async def test_the_terminator_never_starts_without_a_shutdown(
    autojump_clock: trio.testing.MockClock, storage: MemoryStorage
) -> None:
    await storage.push_bulk([1, 2, 3])
    handled: list[float] = []

    async def task(item: int, worker: WorkerContext) -> None:
        await trio.sleep(1)
        handled.append(trio.current_time())
        if item == 3:
            worker.stop()  # the only worker stops itself: no shutdown

    calls: list[tuple[str, float]] = []
    monitor = (
        Monitor()
        .register(WorkerBuilder("w").backend(storage).build(task))
        .with_terminator(recording_terminator(0.5, calls))
    )
    start = trio.current_time()
    await monitor.run()
    assert handled == [start + 1, start + 2, start + 3]  # not stopped at 0.5
    assert calls == []
    assert not monitor.is_shutting_down
    assert not monitor.statistics().shutdown_forced


async def test_the_terminator_is_cancelled_when_the_shutdown_finishes_first(
    autojump_clock: trio.testing.MockClock, storage: MemoryStorage
) -> None:
    await storage.push("short")
    finished: list[float] = []

    async def task(item: str) -> None:
        await trio.sleep(3)
        finished.append(trio.current_time())

    calls: list[tuple[str, float]] = []
    monitor = (
        Monitor()
        .register(WorkerBuilder("w").backend(storage).build(task))
        .with_terminator(recording_terminator(60, calls))
    )
    start = trio.current_time()
    await monitor.run_until(stop_after(1))
    assert finished == [start + 3]  # drained gracefully
    assert calls == [("started", start + 1), ("cancelled", start + 3)]
    assert trio.current_time() - start == 3.0
    assert not monitor.statistics().shutdown_forced
    assert len(storage) == 0


@pytest.mark.parametrize(
    ("timeout", "terminator", "stopped_at"),
    [(5.0, 3.0, 4.0), (2.0, 3.0, 3.0), (None, 3.0, 4.0), (2.0, 60.0, 3.0)],
    ids=["terminator-first", "timeout-first", "terminator-alone", "timeout-alone"],
)
async def test_the_terminator_and_the_shutdown_timeout_whichever_comes_first(
    timeout: float | None,
    terminator: float,
    stopped_at: float,
    autojump_clock: trio.testing.MockClock,
    storage: MemoryStorage,
) -> None:
    await storage.push("long")

    async def task(item: str) -> None:
        await trio.sleep(100)

    calls: list[tuple[str, float]] = []
    monitor = (
        Monitor()
        .register(WorkerBuilder("w").backend(storage).build(task))
        .shutdown_timeout(timeout)
        .with_terminator(recording_terminator(terminator, calls))
    )
    start = trio.current_time()
    await monitor.run_until(stop_after(1))  # the shutdown begins at 1
    assert trio.current_time() - start == stopped_at
    assert calls[0] == ("started", start + 1)
    assert monitor.statistics().shutdown_forced
    [task_back] = drain(storage)
    assert task_back.parts.attempt.current() == 0


async def test_the_terminator_starts_with_any_shutdown(
    autojump_clock: trio.testing.MockClock, storage: MemoryStorage
) -> None:
    """A shutdown called before run(), and one started by a failed worker, start it too."""
    await storage.push("long")

    async def task(item: str) -> None:
        await trio.sleep(100)

    calls: list[tuple[str, float]] = []
    early = (
        Monitor()
        .register(WorkerBuilder("w").backend(storage).build(task))
        .with_terminator(recording_terminator(2, calls))
    )
    early.shutdown()
    start = trio.current_time()
    await early.run()
    # Started at once; cancelled at once too, as the worker stopped before pulling.
    assert calls == [("started", start), ("cancelled", start)]
    assert trio.current_time() - start == 0.0
    assert len(storage) == 1

    calls.clear()
    broken = broken_worker("b", after=1)
    failing = (
        Monitor()
        .register(broken)
        .register(WorkerBuilder("w2").backend(storage).build(task))
        .with_terminator(recording_terminator(2, calls))
    )
    start = trio.current_time()
    with pytest.raises(MonitorError) as info:
        await failing.run()
    # b failed at 1, which began the shutdown; the terminator stopped "long" at 3.
    assert info.value.errors == [("b", broken.source.backend.error)]  # type: ignore[attr-defined]
    assert calls == [("started", start + 1), ("returned", start + 3)]
    assert trio.current_time() - start == 3.0
    assert failing.statistics().shutdown_forced
    [task_back] = drain(storage)
    assert task_back.parts.attempt.current() == 0


async def test_a_failing_terminator_stops_in_flight_tasks_then_raises(
    autojump_clock: trio.testing.MockClock,
    storage: MemoryStorage,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await storage.push("long")

    async def task(item: str) -> None:
        await trio.sleep(100)

    async def terminator() -> None:
        await trio.sleep(2)
        raise ValueError("deadline service down")

    monitor = (
        Monitor()
        .register(WorkerBuilder("w").backend(storage).build(task))
        .with_terminator(terminator)
    )
    start = trio.current_time()
    with (
        caplog.at_level(logging.ERROR, logger="pyapalis.monitor"),
        pytest.raises(ValueError, match=r"^deadline service down$"),
    ):
        await monitor.run_until(stop_after(1))
    # Shutdown at 1; the terminator broke at 3: the stop was forced then.
    assert trio.current_time() - start == 3.0
    assert monitor.statistics().shutdown_forced
    [task_back] = drain(storage)
    assert task_back.parts.attempt.current() == 0
    assert "the monitor's terminator raised ValueError('deadline service down')" in caplog.text

    # With a failed worker too, the terminator's error is the MonitorError's cause.
    await storage.push("long")
    broken = broken_worker("b", after=1)
    monitor = (
        Monitor()
        .register(broken)
        .register(WorkerBuilder("w").backend(storage).build(task))
        .with_terminator(terminator)
    )
    start = trio.current_time()
    with pytest.raises(MonitorError) as info:
        await monitor.run()
    assert trio.current_time() - start == 3.0
    assert info.value.errors == [("b", broken.source.backend.error)]  # type: ignore[attr-defined]
    assert isinstance(info.value.__cause__, ValueError)
    assert str(info.value.__cause__) == "deadline service down"
    assert len(drain(storage)) == 1


# -- restarts --------------------------------------------------------------------------


async def test_should_restart_restarts_with_exponential_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    start = trio.current_time()
    built: list[tuple[int, float]] = []
    asked: list[tuple[str, str, int, float]] = []

    def factory(restarts: int) -> Worker:
        built.append((restarts, trio.current_time() - start))
        return broken_worker(f"flaky-{restarts}", after=1)

    def policy(ctx: WorkerContext, error: Exception, attempt: int) -> bool:
        asked.append((ctx.name, str(error), attempt, trio.current_time() - start))
        return attempt <= 3

    monitor = Monitor().register(factory).should_restart(policy)
    with pytest.raises(MonitorError) as info:
        await monitor.run()
    # Each run fails after 1 s; the backoff before restart k is 2^(k-1) s.
    assert built == [(0, 0.0), (1, 2.0), (2, 5.0), (3, 10.0)]
    assert asked == [
        ("flaky-0", "flaky-0 lost", 1, 1.0),
        ("flaky-1", "flaky-1 lost", 2, 3.0),
        ("flaky-2", "flaky-2 lost", 3, 6.0),
        ("flaky-3", "flaky-3 lost", 4, 11.0),
    ]
    assert trio.current_time() - start == 11.0
    assert [(name, str(error)) for name, error in info.value.errors] == [
        ("flaky-3", "flaky-3 lost")
    ]
    stats = monitor.statistics()
    assert (stats.restarts, stats.workers_failed, stats.workers_stopped) == (3, 1, 1)
    assert [DEFAULT_RESTART_BACKOFF.delay(k) for k in (1, 2, 3, 7, 8)] == [1, 2, 4, 60, 60]


async def test_restart_backoff_is_configurable_and_statistics_show_restarting(
    autojump_clock: trio.testing.MockClock,
) -> None:
    start = trio.current_time()
    built: list[float] = []

    def factory(restarts: int) -> Worker:
        built.append(trio.current_time() - start)
        return broken_worker("flaky", after=1)

    monitor = (
        Monitor()
        .register(factory)
        .should_restart(lambda ctx, error, attempt: attempt <= 2)
        .restart_backoff(BackoffMode.constant(5))
    )
    snapshots: list[MonitorStatistics] = []

    async def watch() -> None:
        await trio.sleep(0.5)
        snapshots.append(monitor.statistics())  # running
        await trio.sleep(1)
        snapshots.append(monitor.statistics())  # 1.5: waiting out the backoff

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        with pytest.raises(MonitorError):
            await monitor.run()
    assert built == [0.0, 6.0, 12.0]
    assert trio.current_time() - start == 13.0
    assert [(s.workers_running, s.workers_restarting, s.restarts) for s in snapshots] == [
        (1, 0, 0),
        (0, 1, 0),
    ]


async def test_no_restart_without_a_predicate(autojump_clock: trio.testing.MockClock) -> None:
    calls: list[int] = []

    def factory(restarts: int) -> Worker:
        calls.append(restarts)
        return broken_worker("once", after=1)

    monitor = Monitor().register(factory)
    start = trio.current_time()
    with pytest.raises(MonitorError):
        await monitor.run()
    assert calls == [0]
    assert trio.current_time() - start == 1.0


async def test_a_worker_instance_is_never_restarted(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    asked: list[int] = []
    worker = broken_worker("instance", after=1)
    monitor = (
        Monitor()
        .register(worker)
        .should_restart(lambda ctx, e, attempt: asked.append(attempt) or True)
    )
    with caplog.at_level(logging.WARNING, logger="pyapalis.monitor"), pytest.raises(MonitorError):
        await monitor.run()
    assert asked == []
    assert "worker 'instance' cannot be restarted: it was registered as a Worker instance" in (
        caplog.text
    )
    assert monitor.statistics().restarts == 0


async def test_a_predicate_that_raises_means_no_restart(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    def policy(ctx: WorkerContext, error: Exception, attempt: int) -> bool:
        raise RuntimeError("policy bug")

    monitor = Monitor().register(lambda n: broken_worker("w", after=1)).should_restart(policy)
    with (
        caplog.at_level(logging.ERROR, logger="pyapalis.monitor"),
        pytest.raises(MonitorError) as info,
    ):
        await monitor.run()
    assert [str(error) for _, error in info.value.errors] == ["w lost"]
    assert "should_restart predicate failed for worker 'w'" in caplog.text


async def test_shutdown_during_the_backoff_cancels_the_restart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    built: list[int] = []

    def factory(restarts: int) -> Worker:
        built.append(restarts)
        return broken_worker("flaky", after=1)

    monitor = (
        Monitor()
        .register(factory)
        .should_restart(lambda ctx, error, attempt: True)
        .restart_backoff(BackoffMode.constant(10))
    )
    start = trio.current_time()
    await monitor.run_until(stop_after(4))  # the accepted error is not raised
    assert trio.current_time() - start == 4.0
    assert built == [0]
    stats = monitor.statistics()
    assert (stats.restarts, stats.workers_stopped, stats.workers_failed) == (0, 1, 0)


async def test_a_factory_failing_on_restart_is_that_workers_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fresh = broken_worker("w", after=1)
    builds = iter([fresh, fresh])  # the second build returns a worker that has run

    monitor = (
        Monitor()
        .register(lambda n: next(builds))
        .should_restart(lambda ctx, error, attempt: True)
        .restart_backoff(BackoffMode.NoBackoff)
    )
    with pytest.raises(MonitorError) as info:
        await monitor.run()
    [(name, error)] = info.value.errors
    assert name == "w"
    assert isinstance(error, ValueError)
    assert str(error) == (
        "factory(1): worker 'w' is Stopped, not Pending; "
        "a Worker runs once, so register one that has not run"
    )

    def exploding(restarts: int) -> Worker:
        if restarts:
            raise OSError("no config")
        return broken_worker("x", after=1)

    monitor = Monitor().register(exploding).should_restart(lambda *_: True)
    with pytest.raises(MonitorError) as info:
        await monitor.run()
    assert [(name, str(error)) for name, error in info.value.errors] == [("x", "no config")]


# -- errors ----------------------------------------------------------------------------


async def test_monitor_error_lists_each_failed_worker(
    autojump_clock: trio.testing.MockClock,
) -> None:
    first, second = broken_worker("a", after=1), broken_worker("b", after=1)
    monitor = Monitor().register(first).register(second)
    start = trio.current_time()
    with pytest.raises(MonitorError) as info:
        await monitor.run()
    assert trio.current_time() - start == 1.0
    error = info.value
    by_name = dict(error.errors)
    assert by_name == {
        "a": first.source.backend.error,  # type: ignore[attr-defined]
        "b": second.source.backend.error,  # type: ignore[attr-defined]
    }
    assert len(error.errors) == 2
    assert list(error.exceptions) == [e for _, e in error.errors]  # the exceptions themselves
    (n1, e1), (n2, e2) = error.errors
    assert str(error) == f"2 workers failed: {n1!r}: {e1!r}; {n2!r}: {e2!r} (2 sub-exceptions)"
    assert isinstance(error, ExceptionGroup)
    assert isinstance(error, PyapalisError)
    stats = monitor.statistics()
    assert (stats.workers_failed, stats.workers_stopped, stats.shutting_down) == (2, 2, True)


def test_monitor_error_splits_by_kind_and_keeps_names() -> None:
    lost, bad = StorageError("lost"), ValueError("bad")
    error = MonitorError([("a", lost), ("b", bad)])
    assert error.errors == [("a", lost), ("b", bad)]
    matched, rest = error.split(StorageError)
    assert isinstance(matched, MonitorError) and matched.errors == [("a", lost)]
    assert isinstance(rest, MonitorError) and rest.errors == [("b", bad)]
    caught: list[BaseExceptionGroup[Any]] = []
    try:
        raise error
    except* StorageError as group:
        caught.append(group)
    except* ValueError as group:
        caught.append(group)
    assert [g.errors for g in caught] == [[("a", lost)], [("b", bad)]]  # type: ignore[attr-defined]
    copy = pickle.loads(pickle.dumps(error))
    assert [(name, str(e)) for name, e in copy.errors] == [("a", "lost"), ("b", "bad")]
    assert (
        str(MonitorError([("a", lost)]))
        == "1 worker failed: 'a': StorageError('lost') (1 sub-exception)"
    )


async def test_a_failed_worker_shuts_the_others_down_gracefully(
    autojump_clock: trio.testing.MockClock, storage: MemoryStorage
) -> None:
    await storage.push_bulk(["long", "queued"])
    finished: list[tuple[str, float]] = []

    async def task(item: str) -> None:
        await trio.sleep(3)
        finished.append((item, trio.current_time()))

    broken = broken_worker("broken", after=1)
    monitor = (
        Monitor().register(WorkerBuilder("healthy").backend(storage).build(task)).register(broken)
    )
    start = trio.current_time()
    with pytest.raises(MonitorError) as info:
        await monitor.run()
    assert trio.current_time() - start == 3.0
    assert finished == [("long", start + 3)]
    assert [t.args for t in drain(storage)] == ["queued"]
    assert info.value.errors == [("broken", broken.source.backend.error)]  # type: ignore[attr-defined]


# -- events ----------------------------------------------------------------------------


async def test_on_event_receives_every_workers_events_and_chains(
    autojump_clock: trio.testing.MockClock,
) -> None:
    letters, numbers = MemoryStorage(), MemoryStorage()
    await letters.push("a")
    await numbers.push(3)
    calls: list[tuple[str, str, str, Any]] = []
    own: list[str] = []

    def listener(tag: str) -> Callable[[WorkerContext, Any], None]:
        def record(ctx: WorkerContext, event: Any) -> None:
            calls.append((tag, ctx.name, event.kind.value, event.result))

        return record

    async def upper(item: str) -> str:
        await trio.sleep(1)
        return item.upper()

    async def negate(item: int) -> int:
        await trio.sleep(2)
        return -item

    monitor = (
        Monitor()
        .register(WorkerBuilder("letters").backend(letters).build(upper))
        .register(
            WorkerBuilder("numbers")
            .backend(numbers)
            .on_event(lambda ctx, ev: own.append(ev.kind.value))
            .build(negate)
        )
        .on_event(listener("first"))
        .on_event(listener("second"))
    )
    await monitor.run_until(stop_after(3))
    firsts = [call[1:] for call in calls if call[0] == "first"]
    seconds = [call[1:] for call in calls if call[0] == "second"]
    assert firsts == seconds
    assert [call[0] for call in calls] == ["first", "second"] * len(firsts)  # in order
    for name, result in (("letters", "A"), ("numbers", -3)):
        assert [(kind, value) for n, kind, value in firsts if n == name] == [
            ("Start", None),
            ("Success", result),
            ("Idle", None),
            ("Stop", None),
        ]
    assert own == ["Start", "Success", "Idle", "Stop"]  # the worker's own listener still works
    # The monitor's dispatcher leaves each worker once its run is over.
    assert all(len(w.context.listeners) == (w.name == "numbers") for w in monitor.workers)


async def test_without_callbacks_the_workers_emit_nothing(
    autojump_clock: trio.testing.MockClock, storage: MemoryStorage
) -> None:
    await storage.push(1)
    listener_counts: list[int] = []

    async def task(item: int, worker: WorkerContext) -> None:
        listener_counts.append(len(worker.listeners))
        worker.stop()

    await Monitor().register(WorkerBuilder("w").backend(storage).build(task)).run()
    assert listener_counts == [0]


async def test_a_failing_callback_is_logged_and_the_others_still_run(
    autojump_clock: trio.testing.MockClock,
    storage: MemoryStorage,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await storage.push(1)
    seen: list[str] = []

    def broken(ctx: WorkerContext, event: Any) -> None:
        raise RuntimeError("callback bug")

    monitor = (
        Monitor()
        .register(WorkerBuilder("w").backend(storage).build(_noop))
        .on_event(broken)
        .on_event(lambda ctx, ev: seen.append(ev.kind.value))
    )
    with caplog.at_level(logging.ERROR, logger="pyapalis.monitor"):
        await monitor.run_until(stop_after(1))
    assert seen == ["Start", "Success", "Idle", "Stop"]
    failures = [r for r in caplog.records if r.getMessage().startswith("monitor event callback")]
    assert len(failures) == 4


async def test_on_event_while_running_joins_the_running_workers(
    autojump_clock: trio.testing.MockClock, storage: MemoryStorage
) -> None:
    seen: list[tuple[str, float]] = []
    monitor = Monitor().register(WorkerBuilder("w").backend(storage).build(_noop))
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(monitor.run)
        await trio.sleep(1)
        monitor.on_event(lambda ctx, ev: seen.append((ev.kind.value, trio.current_time() - start)))
        await storage.push(1)
        await trio.sleep(1)
        monitor.shutdown()
    assert seen == [("Success", 1.0), ("Idle", 1.0), ("Stop", 2.0)]


# -- statistics ------------------------------------------------------------------------


async def test_statistics_through_a_run(
    autojump_clock: trio.testing.MockClock, storage: MemoryStorage
) -> None:
    await storage.push_bulk([1, 2, 3])
    monitor = Monitor()
    during: list[MonitorStatistics] = []

    async def task(item: int) -> None:
        await trio.sleep(1)
        during.append(monitor.statistics())

    monitor.register(WorkerBuilder("a").backend(storage).concurrency(2).build(task))
    monitor.register(WorkerBuilder("b").backend(MemoryStorage()).build(_noop))
    assert monitor.statistics() == MonitorStatistics(
        workers_registered=2,
        workers_running=0,
        workers_restarting=0,
        workers_stopped=0,
        workers_failed=0,
        restarts=0,
        tasks_in_flight=0,
        running=False,
        shutting_down=False,
        shutdown_forced=False,
    )
    await monitor.run_until(stop_after(0.5))
    # Shutdown at 0.5: tasks 1 and 2 were in flight; b had already stopped.
    assert during[0] == MonitorStatistics(
        workers_registered=2,
        workers_running=1,
        workers_restarting=0,
        workers_stopped=1,
        workers_failed=0,
        restarts=0,
        tasks_in_flight=2,
        running=True,
        shutting_down=True,
        shutdown_forced=False,
    )
    assert len(during) == 2
    assert monitor.statistics().workers_stopped == 2
    assert repr(monitor) == "<Monitor workers=2 shutting down>"
    assert repr(Monitor()) == "<Monitor workers=0 New>"


async def test_an_empty_monitor_returns_at_once(autojump_clock: trio.testing.MockClock) -> None:
    start = trio.current_time()
    await Monitor().run()
    assert trio.current_time() == start


# -- on a thread of its own -------------------------------------------------------


def test_a_monitor_in_a_background_runtime() -> None:
    from pyapalis.embed._runtime import start_in_thread

    letters, numbers = MemoryStorage(), MemoryStorage()
    release = threading.Event()

    async def slow(item: int) -> int:
        await trio.to_thread.run_sync(release.wait)
        return item

    monitor = (
        Monitor()
        .register(WorkerBuilder("letters").backend(letters).build(str.upper))
        .register(WorkerBuilder("numbers").backend(numbers).concurrency(2).build(slow))
    )
    runtime = start_in_thread(monitor, name="monitor", stop_timeout=30)
    try:
        upper = [runtime.submit(letters, c) for c in "abc"]
        assert [f.result(30) for f in upper] == ["A", "B", "C"]
        pending = [runtime.submit(numbers, n) for n in (1, 2)]
        while monitor.statistics().tasks_in_flight < 2:
            time.sleep(0.001)
        runtime.stop(wait=False)  # monitor.shutdown() on its trio thread
        while not monitor.is_shutting_down:
            time.sleep(0.001)
        release.set()  # the in-flight tasks finish during the graceful shutdown
    finally:
        release.set()
        runtime.stop()
    assert [f.result(30) for f in pending] == [1, 2]
    assert all(worker.context.is_stopped for worker in monitor.workers)
    assert monitor.statistics().shutdown_forced is False


# -- bad input -------------------------------------------------------------------------


def _worker(name: str = "w") -> Worker:
    return WorkerBuilder(name).backend(MemoryStorage()).build(_noop)


def _coroutine_terminator() -> Monitor:
    async def wait() -> None:
        pass

    return Monitor().with_terminator(wait())  # type: ignore[arg-type]


BAD_INPUT: list[tuple[str, Callable[[], object], type[Exception], str]] = [
    (
        "register-int",
        lambda: Monitor().register(42),  # type: ignore[arg-type]
        TypeError,
        "register: expected a Worker or a factory(restart_count) -> Worker, got int 42",
    ),
    (
        "factory-returns-int",
        lambda: Monitor().register(lambda n: 7),  # type: ignore[arg-type,return-value]
        TypeError,
        "register: factory(0) returned int 7, expected a Worker",
    ),
    (
        "duplicate-name",
        lambda: Monitor().register(_worker("w")).register(_worker("w")),
        ValueError,
        "register: a worker named 'w' is already registered; give each worker its own name",
    ),
    (
        "same-worker-twice",
        lambda: (lambda w: Monitor().register(w).register(w))(_worker()),
        ValueError,
        "register: worker 'w' is already registered",
    ),
    (
        "used-worker",
        lambda: (lambda w: (w.context.stop(), Monitor().register(w)))(_worker()),
        ValueError,
        "register: worker 'w' is ShuttingDown, not Pending; "
        "a Worker runs once, so register one that has not run",
    ),
    (
        "on-event",
        lambda: Monitor().on_event("print"),  # type: ignore[arg-type]
        TypeError,
        "on_event: expected a callable, got 'print'",
    ),
    (
        "should-restart",
        lambda: Monitor().should_restart(True),  # type: ignore[arg-type]
        TypeError,
        "should_restart: expected a callable, got True",
    ),
    (
        "restart-backoff",
        lambda: Monitor().restart_backoff(2.0),  # type: ignore[arg-type]
        TypeError,
        "restart_backoff: expected a BackoffMode, got float",
    ),
    (
        "timeout-str",
        lambda: Monitor().shutdown_timeout("5"),  # type: ignore[arg-type]
        TypeError,
        "shutdown_timeout: expected seconds as int or float (or None), got str '5'",
    ),
    (
        "timeout-bool",
        lambda: Monitor().shutdown_timeout(True),
        TypeError,
        "shutdown_timeout: expected seconds as int or float (or None), got bool True",
    ),
    (
        "timeout-negative",
        lambda: Monitor().shutdown_timeout(-1),
        ValueError,
        "shutdown_timeout: must be >= 0 seconds, got -1",
    ),
    (
        "timeout-nan",
        lambda: Monitor().shutdown_timeout(math.nan),
        ValueError,
        "shutdown_timeout: must be >= 0 seconds, got nan",
    ),
    (
        "terminator-coroutine",
        _coroutine_terminator,
        TypeError,
        "with_terminator: expected an async function, got a coroutine object; "
        "pass the function (with_terminator(fn)), not its call (fn())",
    ),
    (
        "terminator-none",
        lambda: Monitor().with_terminator(None),  # type: ignore[arg-type]
        TypeError,
        "with_terminator: expected an async function, got None",
    ),
    (
        "monitor-error-empty",
        lambda: MonitorError([]),
        ValueError,
        "MonitorError: errors must list at least one (name, exception) pair",
    ),
    (
        "monitor-error-pair",
        lambda: MonitorError([("a", "boom")]),  # type: ignore[list-item]
        TypeError,
        "MonitorError: errors must be (worker name, Exception) pairs, got ('a', 'boom')",
    ),
]


@pytest.mark.parametrize(
    ("call", "error", "message"), [pytest.param(*case[1:], id=case[0]) for case in BAD_INPUT]
)
def test_bad_input(call: Callable[[], object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match="^" + re.escape(message) + "$"):
        call()


@pytest.mark.parametrize(
    ("signals", "error", "message"),
    [
        ([], ValueError, "run_with_signal: signals must name at least one signal"),
        (15, TypeError, "run_with_signal: signals must be an iterable of signal numbers, got 15"),
        (
            ["TERM"],
            TypeError,
            "run_with_signal: expected signal numbers (signal.SIGTERM ...), got str 'TERM'",
        ),
        ([9999], ValueError, "run_with_signal: 9999 is not a signal number"),
    ],
)
async def test_run_with_signal_bad_input(
    signals: Any, error: type[Exception], message: str
) -> None:
    monitor = Monitor().register(_worker())
    with pytest.raises(error, match="^" + re.escape(message) + "$"):
        await monitor.run_with_signal(signals)
    assert monitor.statistics().running is False  # nothing started


async def test_run_until_bad_input() -> None:
    async def wait() -> None:
        await trio.sleep(0)

    coroutine = wait()
    with pytest.raises(
        TypeError,
        match="^"
        + re.escape(
            "run_until: expected an async function, got a coroutine object; "
            "pass the function (run_until(fn)), not its call (fn())"
        )
        + "$",
    ):
        await Monitor().run_until(coroutine)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^run_until: expected an async function, got 5$"):
        await Monitor().run_until(5)  # type: ignore[arg-type]


def test_shutdown_timeout_accepts_none_and_infinity() -> None:
    monitor = Monitor().shutdown_timeout(3)
    assert monitor._shutdown_timeout == 3.0
    monitor.shutdown_timeout(math.inf)
    assert monitor._shutdown_timeout is None
    monitor.shutdown_timeout(2).shutdown_timeout(None)
    assert monitor._shutdown_timeout is None
