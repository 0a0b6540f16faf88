"""The worker runtime on MemoryStorage: order, concurrency, lifecycle, events, interruption.

Every time-dependent test runs in virtual time (``autojump_clock``) and asserts
exact instants, recorded with ``trio.current_time()``.
"""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing
from conftest import EventLog

from pyapalis import (
    Attempt,
    BuildError,
    Event,
    EventKind,
    MemoryStorage,
    Status,
    Task,
    TaskBuilder,
    TaskId,
    Worker,
    WorkerBuilder,
    WorkerContext,
    WorkerState,
    WorkerStateError,
)
from pyapalis.testing import WallClock

# -- the seed example ---------------------------------------------------------------


async def test_seed_example(
    autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = MemoryStorage()
    await storage.push(1)
    seen: list[int] = []

    async def task(item: int, worker: WorkerContext) -> None:
        seen.append(item)
        await trio.sleep(1)
        worker.stop()

    worker = (
        WorkerBuilder("rango-tango")
        .backend(storage)
        .on_event(lambda ctx, ev: print(ev, ctx.name))
        .build(task)
    )
    start = trio.current_time()
    await worker.run()  # returns once stopped and drained
    assert trio.current_time() - start == 1.0
    assert seen == [1]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Start rango-tango"
    assert lines[1].startswith("Success(") and lines[1].endswith(") rango-tango")
    assert lines[-1] == "Stop rango-tango"
    assert worker.context.is_stopped
    assert worker.name == "rango-tango"
    assert len(storage) == 0


# -- building --------------------------------------------------------------------------


async def _noop(item: object) -> None:
    pass


def test_build_without_backend() -> None:
    with pytest.raises(BuildError, match="MissingBackend") as info:
        WorkerBuilder("w").build(_noop)
    assert info.value.kind == "MissingBackend"
    assert "'w'" in str(info.value)


def test_builder_validation() -> None:
    with pytest.raises(ValueError, match="name"):
        WorkerBuilder("")
    builder = WorkerBuilder("w")
    with pytest.raises(TypeError, match="not a backend"):
        builder.backend(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="concurrency"):
        builder.concurrency(0)
    with pytest.raises(TypeError, match="concurrency"):
        builder.concurrency(2.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="concurrency"):
        builder.concurrency(True)
    with pytest.raises(ValueError, match="timeout"):
        builder.timeout(0)
    with pytest.raises(ValueError, match="timeout"):
        builder.timeout(float("nan"))
    with pytest.raises(TypeError, match="timeout"):
        builder.timeout("5")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="RetryPolicy"):
        builder.retry(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callable"):
        builder.on_event("print")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="layer"):
        builder.layer(42)  # type: ignore[arg-type]


def test_built_worker_properties() -> None:
    worker = WorkerBuilder("w").backend(MemoryStorage()).concurrency(4).build(_noop)
    assert isinstance(worker, Worker)
    assert worker.concurrency == 4
    assert worker.name == "w"
    assert worker.context.name == "w"
    assert worker.context.state is WorkerState.Pending
    assert WorkerBuilder("w").backend(MemoryStorage()).build(_noop).concurrency == 1


# -- order and concurrency ---------------------------------------------------------------


async def test_fifo_order_single_loop(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    await storage.push_bulk(range(200))
    seen: list[int] = []

    async def handler(item: int, ctx: WorkerContext) -> None:
        seen.append(item)
        if item % 7 == 0:
            await trio.sleep(0.5)
        if len(seen) == 300:
            ctx.stop()

    worker = WorkerBuilder("fifo").backend(storage).build(handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(1)
        for i in range(200, 300):
            storage.push_nowait(i)
    assert seen == list(range(300))


@pytest.mark.parametrize("n", [1, 3, 8])
async def test_exact_concurrency_bound(
    n: int, storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    await storage.push_bulk(range(3 * n))
    running = 0
    max_running = 0
    max_task_count = 0
    finished: list[float] = []
    start = trio.current_time()

    async def handler(item: int, ctx: WorkerContext) -> None:
        nonlocal running, max_running, max_task_count
        running += 1
        max_running = max(max_running, running)
        max_task_count = max(max_task_count, ctx.task_count)
        await trio.sleep(1)
        running -= 1
        finished.append(trio.current_time() - start)
        if len(finished) == 3 * n:
            ctx.stop()

    worker = WorkerBuilder("pool").backend(storage).concurrency(n).build(handler)
    await worker.run()
    assert max_running == n
    assert max_task_count == n
    # n at a time, one second each: three waves.
    assert finished == [1.0] * n + [2.0] * n + [3.0] * n
    assert trio.current_time() - start == 3.0
    assert worker.context.task_count == 0


async def test_concurrent_loops_share_a_trickle_of_tasks(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    # Idle loops wait on the storage; each push wakes exactly one of them.
    starts: list[tuple[float, int]] = []

    async def handler(item: int, ctx: WorkerContext) -> None:
        starts.append((trio.current_time(), item))
        await trio.sleep(10)

    worker = WorkerBuilder("pool").backend(storage).concurrency(3).build(handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        for i in range(4):
            await trio.sleep(1)
            await storage.push(i)
        await trio.sleep(8)
        worker.context.stop()
    assert trio.current_time() == 21.0
    # Three loops: the fourth task waits for the first loop to be free at t=11.
    assert starts == [(1.0, 0), (2.0, 1), (3.0, 2), (11.0, 3)]


# -- a failing handler ----------------------------------------------------------------------


async def test_a_failing_handler_never_stops_the_worker(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    tasks = [Task(i) for i in range(10)]
    for task in tasks:
        await storage.push_task(task)
    seen: list[int] = []

    async def handler(item: int, ctx: WorkerContext) -> int:
        seen.append(item)
        if len(seen) == 10:
            ctx.stop()
        if item % 2:
            raise ValueError(f"odd {item}")
        return item * 10

    worker = WorkerBuilder("w").backend(storage).on_event(event_log).build(handler)
    await worker.run()  # does not raise
    assert seen == list(range(10))
    assert [t.parts.status for t in tasks] == [
        Status.Done if i % 2 == 0 else Status.Failed for i in range(10)
    ]
    errors = event_log.of("Error")
    assert [str(e.error) for e in errors] == [f"odd {i}" for i in range(1, 10, 2)]
    assert all(type(e.error) is ValueError for e in errors)
    assert [e.result for e in event_log.of("Success")] == [i * 10 for i in range(0, 10, 2)]


async def test_a_backend_failure_stops_the_worker_and_is_raised(
    autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    class Broken(MemoryStorage):
        def ack_nowait(self, task, status, result, error):  # type: ignore[no-untyped-def]
            if task.args == 2:
                raise ConnectionError("backend gone")
            super().ack_nowait(task, status, result, error)

    storage = Broken()
    await storage.push_bulk(range(5))
    seen: list[tuple[float, int]] = []

    async def handler(item: int) -> None:
        await trio.sleep(3 if item == 3 else 1)
        seen.append((trio.current_time(), item))

    worker = WorkerBuilder("w").backend(storage).concurrency(2).on_event(event_log).build(handler)
    with pytest.raises(ConnectionError, match="backend gone"):
        await worker.run()
    # The ack of 2 failed at t=2: the task in flight in the other loop (3)
    # finished at t=4, and nothing was pulled after the failure.
    assert sorted(seen) == [(1.0, 0), (1.0, 1), (2.0, 2), (4.0, 3)]
    assert trio.current_time() == 4.0
    assert len(storage) == 1
    assert worker.context.is_stopped
    assert event_log.kinds[-1] == "Stop"


# -- lifecycle ---------------------------------------------------------------------------


async def test_stop_lets_in_flight_work_finish_and_pulls_nothing_more(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    await storage.push_bulk(range(10))
    seen: list[int] = []
    flags: list[tuple[bool, bool, bool]] = []
    start = trio.current_time()

    async def handler(item: int, ctx: WorkerContext) -> None:
        seen.append(item)
        if item == 1:
            ctx.stop()
            flags.append((ctx.is_running, ctx.is_shutting_down, ctx.is_stopped))
            await trio.sleep(5)
            flags.append((ctx.is_running, ctx.is_shutting_down, ctx.is_stopped))

    worker = WorkerBuilder("w").backend(storage).concurrency(2).on_event(event_log).build(handler)
    await worker.run()
    assert trio.current_time() - start == 5.0
    # One loop ran 0 (instant) then 1, which stopped the worker: nothing after it.
    assert seen == [0, 1]
    assert flags == [(False, True, False), (False, True, False)]
    ctx = worker.context
    assert (ctx.is_running, ctx.is_shutting_down, ctx.is_stopped) == (False, True, True)
    assert len(storage) == 8
    # Stop comes last, after the in-flight task's Success.
    assert event_log.kinds == ["Start", "Success", "Success", "Stop"]
    assert event_log.records[-1][0] == start + 5.0


async def test_stop_from_outside_while_idle(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    worker = WorkerBuilder("w").backend(storage).concurrency(4).build(_noop)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(3)
        assert worker.context.is_running
        assert storage.statistics().consumers_waiting == 4
        worker.context.stop()
        assert worker.context.is_shutting_down
        assert not worker.context.is_stopped
        await worker.context.wait_stopped()
        assert trio.current_time() == 3.0
    assert worker.context.is_stopped
    assert storage.statistics().consumers_waiting == 0
    # Pushed after the stop: stays in the storage.
    await storage.push("late")
    assert len(storage) == 1


async def test_stop_before_run(storage: MemoryStorage, event_log: EventLog) -> None:
    await storage.push(1)
    worker = WorkerBuilder("w").backend(storage).on_event(event_log).build(_noop)
    worker.context.stop()
    assert worker.context.is_shutting_down
    await worker.run()
    assert event_log.kinds == ["Start", "Stop"]
    assert len(storage) == 1


async def test_a_worker_runs_once(storage: MemoryStorage) -> None:
    async def handler(item: int, ctx: WorkerContext) -> None:
        ctx.stop()

    await storage.push(1)
    worker = WorkerBuilder("w").backend(storage).build(handler)
    await worker.run()
    with pytest.raises(WorkerStateError, match="already run"):
        await worker.run()


async def test_run_while_running_is_refused(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    worker = WorkerBuilder("w").backend(storage).build(_noop)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(1)
        with pytest.raises(WorkerStateError, match="already running"):
            await worker.run()
        worker.context.pause()
        with pytest.raises(WorkerStateError, match="already running"):
            await worker.run()
        worker.context.stop()


async def test_pause_pulls_nothing_until_resume(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    seen: list[tuple[float, int]] = []

    async def handler(item: int) -> None:
        seen.append((trio.current_time(), item))
        await trio.sleep(1)

    worker = WorkerBuilder("w").backend(storage).concurrency(2).build(handler)
    ctx = worker.context
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await storage.push_bulk([0, 1, 2])
        await trio.sleep(0.5)  # 0 and 1 are in flight
        ctx.pause()
        assert ctx.is_paused and not ctx.is_running
        await storage.push_bulk([3, 4])
        await trio.sleep(10)
        # In-flight tasks finished; nothing new was pulled while paused.
        assert seen == [(0.0, 0), (0.0, 1)]
        assert len(storage) == 3
        assert storage.statistics().taken_total == 2
        assert ctx.task_count == 0
        ctx.resume()
        assert ctx.is_running
        await trio.sleep(5)
        ctx.stop()
    assert seen == [(0.0, 0), (0.0, 1), (10.5, 2), (10.5, 3), (11.5, 4)]


async def test_pause_while_idle_and_push(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    seen: list[tuple[float, int]] = []

    async def handler(item: int) -> None:
        seen.append((trio.current_time(), item))

    worker = WorkerBuilder("w").backend(storage).build(handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(1)
        worker.context.pause()
        storage.push_nowait("while-paused")
        await storage.push("also")
        await trio.sleep(4)
        assert seen == []
        assert len(storage) == 2
        worker.context.resume()
        await trio.sleep(1)
        worker.context.stop()
    assert seen == [(5.0, "while-paused"), (5.0, "also")]


async def test_stop_while_paused(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    worker = WorkerBuilder("w").backend(storage).on_event(event_log).build(_noop)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(1)
        worker.context.pause()
        await storage.push(1)
        await trio.sleep(1)
        worker.context.stop()
        await worker.context.wait_stopped()
        assert trio.current_time() == 2.0
    assert len(storage) == 1
    assert event_log.kinds[0] == "Start" and event_log.kinds[-1] == "Stop"
    assert "Success" not in event_log.kinds


async def test_state_errors_while_running(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    worker = WorkerBuilder("w").backend(storage).build(_noop)
    ctx = worker.context
    with pytest.raises(WorkerStateError, match="Pending"):
        ctx.pause()
    with pytest.raises(WorkerStateError, match="Pending"):
        ctx.resume()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(1)
        with pytest.raises(WorkerStateError, match="not Paused"):
            ctx.resume()
        ctx.pause()
        with pytest.raises(WorkerStateError, match="Paused, not Running"):
            ctx.pause()
        ctx.resume()
        ctx.stop()
        ctx.stop()  # again while shutting down: nothing happens
        with pytest.raises(WorkerStateError, match="ShuttingDown"):
            ctx.pause()
        with pytest.raises(WorkerStateError, match="ShuttingDown"):
            ctx.resume()
    assert ctx.is_stopped
    with pytest.raises(WorkerStateError, match="already stopped"):
        ctx.stop()
    with pytest.raises(WorkerStateError, match="Stopped"):
        ctx.pause()


async def test_run_until(storage: MemoryStorage, autojump_clock: trio.testing.MockClock) -> None:
    seen: list[tuple[float, int]] = []

    async def handler(item: int) -> None:
        await trio.sleep(2)
        seen.append((trio.current_time(), item))

    signal = trio.Event()

    async def trip() -> None:
        await trio.sleep(3)
        signal.set()

    await storage.push_bulk(range(5))
    worker = WorkerBuilder("w").backend(storage).build(handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trip)
        await worker.run_until(signal.wait)
        # The task in flight at t=3 (item 1) was let finish at t=4.
        assert trio.current_time() == 4.0
    assert seen == [(2.0, 0), (4.0, 1)]
    assert worker.context.is_stopped
    assert len(storage) == 3


async def test_run_until_stopped_by_a_handler_first(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    async def handler(item: int, ctx: WorkerContext) -> None:
        ctx.stop()

    await storage.push(1)
    worker = WorkerBuilder("w").backend(storage).build(handler)
    await worker.run_until(trio.sleep_forever)  # the signal is cancelled once the run ends
    assert worker.context.is_stopped


async def test_a_scheduled_task_pushed_to_an_idle_worker_runs_on_time(
    storage: MemoryStorage, wall_clock: WallClock, autojump_clock: trio.testing.MockClock
) -> None:
    seen: list[tuple[float, str]] = []

    async def handler(item: str, ctx: WorkerContext) -> None:
        seen.append((trio.current_time(), item))
        if len(seen) == 2:
            ctx.stop()

    worker = WorkerBuilder("w").backend(storage).concurrency(2).build(handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(1)  # both loops are idle, waiting with no deadline
        await storage.push_task(TaskBuilder("in-5").run_at_timestamp(wall_clock.after(5)).build())
        await storage.push_task(TaskBuilder("in-2").run_at_timestamp(wall_clock.after(2)).build())
    assert [item for _, item in seen] == ["in-2", "in-5"]
    # On time, exactly: the wall clock moves only with trio's.
    assert [t for t, _ in seen] == [3.0, 6.0]


async def test_a_retry_with_backoff_wakes_an_idle_loop(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    # Loop A fails a task that is retried in 2 s, then picks up a long task;
    # the idle loop B must run the retry on time.
    from pyapalis import BackoffMode, RetryPolicy

    seen: list[tuple[float, str, int]] = []

    async def handler(item: str, attempt: Attempt, ctx: WorkerContext) -> None:
        seen.append((trio.current_time(), item, attempt.current()))
        if item == "flaky" and attempt.current() == 1:
            raise RuntimeError("first time fails")
        if item == "long":
            await trio.sleep(100)
        if item == "flaky":
            ctx.stop()

    worker = (
        WorkerBuilder("w")
        .backend(storage)
        .concurrency(2)
        .retry(RetryPolicy.retries(1, BackoffMode.constant(2)))
        .build(handler)
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(1)
        await storage.push("flaky")
        await trio.sleep(0.5)
        await storage.push("long")
    assert seen[:2] == [(1.0, "flaky", 1), (1.5, "long", 1)]
    assert seen[2] == (3.0, "flaky", 2)


# -- events ----------------------------------------------------------------------------------


async def test_event_sequence(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    boom = RuntimeError("boom")

    async def handler(item: str, ctx: WorkerContext) -> str:
        await trio.sleep(1)
        if item == "bad":
            raise boom
        if item == "custom":
            ctx.emit(Event.custom({"progress": 50}))
        if item == "last":
            ctx.stop()
        return item.upper()

    ok_id = await storage.push("ok")
    bad_id = await storage.push("bad")
    worker = WorkerBuilder("w").backend(storage).on_event(event_log).build(handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(5)
        custom_id = await storage.push("custom")
        await trio.sleep(5)
        last_id = await storage.push("last")
    assert event_log.kinds == [
        "Start",
        "Success",
        "Error",
        "Idle",
        "Custom",
        "Success",
        "Idle",
        "Success",
        "Stop",
    ]
    events = event_log.events
    assert events[0].kind is EventKind.Start
    assert (events[1].task_id, events[1].result) == (ok_id, "OK")
    assert events[2].task_id == bad_id
    assert events[2].error is boom  # the exception itself, not a wrapper
    assert events[4].value == {"progress": 50}
    assert events[5].task_id == custom_id
    assert events[7].task_id == last_id
    assert [t for t, _ in event_log.records] == [0.0, 1.0, 2.0, 2.0, 6.0, 6.0, 6.0, 11.0, 11.0]
    with_id = ("Success", "Error")
    assert all(isinstance(e.task_id, TaskId) for e in events if e.kind.value in with_id)
    assert all(e.task_id is None for e in events if e.kind.value not in with_id)
    assert str(events[0]) == "Start"
    assert str(events[2]) == f"Error({bad_id}: {boom!r})"
    assert str(events[4]) == "Custom({'progress': 50})"


async def test_stop_is_emitted_after_in_flight_work_drained(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    async def handler(item: int) -> None:
        await trio.sleep(item)

    await storage.push_bulk([3, 7, 5])
    worker = WorkerBuilder("w").backend(storage).concurrency(3).on_event(event_log).build(handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(1)
        worker.context.stop()
    assert event_log.kinds == ["Start", "Success", "Success", "Success", "Stop"]
    assert [t for t, _ in event_log.records] == [0.0, 3.0, 5.0, 7.0, 7.0]


async def test_on_event_callbacks_chain_and_a_failing_one_is_logged(
    storage: MemoryStorage, caplog: pytest.LogCaptureFixture
) -> None:
    first: list[str] = []
    second: list[str] = []

    def broken(ctx: WorkerContext, ev: Event) -> None:
        raise RuntimeError("listener bug")

    async def handler(item: int, ctx: WorkerContext) -> None:
        ctx.stop()

    await storage.push(1)
    worker = (
        WorkerBuilder("w")
        .backend(storage)
        .on_event(lambda ctx, ev: first.append(ev.kind.value))
        .on_event(broken)
        .on_event(lambda ctx, ev: second.append(ev.kind.value))
        .build(handler)
    )
    with caplog.at_level(logging.ERROR, logger="pyapalis.worker"):
        await worker.run()
    assert first == second == ["Start", "Success", "Stop"]
    assert len([r for r in caplog.records if "listener" in r.getMessage()]) == 3


async def test_idle_is_emitted_once_per_idle_period(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    worker = WorkerBuilder("w").backend(storage).concurrency(3).on_event(event_log).build(_noop)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(1)
        worker.context.stop()
    assert event_log.kinds == ["Start", "Idle", "Stop"]


# -- stream ---------------------------------------------------------------------------------


async def test_stream_as_context_manager(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    async def handler(item: int) -> int:
        await trio.sleep(1)
        return item + 1

    await storage.push_bulk([1, 2, 3])
    worker = WorkerBuilder("w").backend(storage).build(handler)
    results: list[tuple[float, int]] = []
    async with worker.stream() as events:
        async for ev in events:
            if ev.kind is EventKind.Success:
                results.append((trio.current_time(), ev.result))
                if len(results) == 2:
                    break
    # Leaving the block stopped the worker gracefully: the loop had pulled the
    # third task right after the second finished, and that one was let finish.
    assert results == [(1.0, 2), (2.0, 3)]
    assert worker.context.is_stopped
    assert trio.current_time() == 3.0
    assert storage.statistics().taken_total == 3
    assert len(storage) == 0


async def test_stream_as_plain_async_for_runs_to_stop(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    async def handler(item: int, ctx: WorkerContext) -> None:
        await trio.sleep(1)
        if item == 2:
            ctx.stop()

    await storage.push_bulk([1, 2, 3])
    worker = WorkerBuilder("w").backend(storage).build(handler)
    kinds = []
    async for ev in worker.stream():
        kinds.append((trio.current_time(), ev.kind))
    assert kinds == [
        (0.0, EventKind.Start),
        (1.0, EventKind.Success),
        (2.0, EventKind.Success),
        (2.0, EventKind.Stop),
    ]
    assert len(storage) == 1


# -- interruption -------------------------------------------------------------------------


async def test_keyboard_interrupt_in_a_handler_hands_the_task_back(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    tasks = [Task(i) for i in range(4)]
    for task in tasks:
        await storage.push_task(task)

    async def handler(item: int) -> None:
        await trio.sleep(1)
        if item == 1:
            raise KeyboardInterrupt

    worker = WorkerBuilder("w").backend(storage).on_event(event_log).build(handler)
    with pytest.raises(KeyboardInterrupt):
        await worker.run()
    assert trio.current_time() == 2.0
    assert tasks[0].parts.status is Status.Done
    interrupted = tasks[1]
    assert interrupted.parts.status is Status.Pending
    assert interrupted.parts.attempt.current() == 0  # the interrupted run is not counted
    assert len(storage) == 3
    assert storage.take_nowait() is interrupted  # handed back at the front
    assert worker.context.is_stopped
    assert event_log.kinds == ["Start", "Success", "Stop"]


async def test_keyboard_interrupt_hands_back_every_task_in_flight(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    tasks = [Task(i) for i in range(5)]
    for task in tasks:
        await storage.push_task(task)

    async def handler(item: int) -> None:
        await trio.sleep(1 if item == 0 else 10)
        if item == 0:
            raise KeyboardInterrupt

    worker = WorkerBuilder("w").backend(storage).concurrency(3).build(handler)
    with pytest.raises(KeyboardInterrupt):
        await worker.run()
    assert trio.current_time() == 1.0
    assert len(storage) == 5
    assert all(t.parts.status is Status.Pending for t in tasks)
    assert all(t.parts.attempt.current() == 0 for t in tasks)


async def test_sync_handler_keyboard_interrupt(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    task = Task("x")
    await storage.push_task(task)

    def handler(item: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await WorkerBuilder("w").backend(storage).build(handler).run()
    assert task.parts.status is Status.Pending
    assert task.parts.attempt.current() == 0
    assert len(storage) == 1


async def test_cancelled_from_outside_hands_the_task_back(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    first = TaskBuilder("long").attempts(3).build()
    await storage.push_task(first)
    await storage.push("next")
    attempts: list[int] = []

    async def handler(item: str, attempt: Attempt) -> None:
        attempts.append(attempt.current())
        await trio.sleep(10)

    worker = WorkerBuilder("w").backend(storage).on_event(event_log).build(handler)
    with trio.move_on_after(3) as scope:
        await worker.run()
    assert scope.cancelled_caught
    assert trio.current_time() == 3.0
    assert first.parts.status is Status.Pending
    assert first.parts.attempt.current() == 0
    assert len(storage) == 2
    assert worker.context.is_stopped
    assert event_log.kinds == ["Start", "Stop"]

    # A later worker resumes it: its first execution is still attempt 1.
    async def quick(item: str, attempt: Attempt, ctx: WorkerContext) -> None:
        attempts.append(attempt.current())
        if item == "next":
            ctx.stop()

    await WorkerBuilder("again").backend(storage).build(quick).run()
    assert attempts == [1, 1, 1]
    assert first.parts.status is Status.Done
    assert len(storage) == 0


async def test_cancelled_from_outside_while_idle(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    worker = WorkerBuilder("w").backend(storage).concurrency(2).build(_noop)
    with trio.move_on_after(2):
        await worker.run()
    assert trio.current_time() == 2.0
    assert worker.context.is_stopped
    assert storage.statistics().consumers_waiting == 0
    # The storage still works for a later worker.
    await storage.push(1)
    seen = []

    async def handler(item: int, ctx: WorkerContext) -> None:
        seen.append(item)
        ctx.stop()

    await WorkerBuilder("w2").backend(storage).build(handler).run()
    assert seen == [1]


async def test_pause_right_after_a_task_is_scheduled_pulls_nothing(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    # Scheduling a task makes an idle loop re-arm its wait; a pause in the
    # same scheduler turn must still keep that loop from pulling.
    seen: list[float] = []

    async def handler(item: str) -> None:
        seen.append(trio.current_time())

    worker = WorkerBuilder("w").backend(storage).build(handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(1)
        storage.reschedule_nowait(Task("due-at-6"), 5.0)
        worker.context.pause()
        await trio.sleep(9)
        assert seen == []
        assert len(storage) == 1
        worker.context.resume()
        await trio.sleep(1)
        worker.context.stop()
    assert seen == [10.0]


async def test_tasks_due_together_run_in_parallel_on_idle_loops(
    storage: MemoryStorage, wall_clock: WallClock, autojump_clock: trio.testing.MockClock
) -> None:
    starts: list[tuple[float, str]] = []
    ends: list[float] = []

    async def handler(item: str, ctx: WorkerContext) -> None:
        starts.append((trio.current_time(), item))
        await trio.sleep(1)
        ends.append(trio.current_time())
        if len(ends) == 3:
            ctx.stop()

    worker = WorkerBuilder("w").backend(storage).concurrency(3).build(handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(1)
        run_at = wall_clock.after(4)
        for name in ("a", "b", "c"):
            await storage.push_task(TaskBuilder(name).run_at_timestamp(run_at).build())
    # (The same wall-clock run_at becomes a deadline at each push, with the wall
    # clock a few microseconds on: the later pushes are due microseconds earlier.)
    assert sorted(item for _, item in starts) == ["a", "b", "c"]
    due = starts[-1][0]
    assert due == 5.0
    # All three loops started at their deadline, not one after another.
    assert all(t == due for t, _ in starts)
    assert len(ends) == 3 and all(t <= due + 1 for t in ends)
    assert trio.current_time() == ends[-1]


async def test_two_workers_share_a_storage_and_pausing_one_spares_the_other(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    seen: list[tuple[str, float, int]] = []

    def make(name: str):  # type: ignore[no-untyped-def]
        async def handler(item: int) -> None:
            seen.append((name, trio.current_time(), item))
            await trio.sleep(1)

        return handler

    one = WorkerBuilder("one").backend(storage).build(make("one"))
    two = WorkerBuilder("two").backend(storage).build(make("two"))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(one.run)
        nursery.start_soon(two.run)
        await trio.sleep(1)
        one.context.pause()
        for i in range(3):
            await storage.push(i)
        await trio.sleep(10)
        assert [name for name, _, _ in seen] == ["two", "two", "two"]
        assert [(t, item) for _, t, item in seen] == [(1.0, 0), (2.0, 1), (3.0, 2)]
        one.context.resume()
        two.context.stop()
        await storage.push(3)
        await trio.sleep(1)
        one.context.stop()
    assert seen[-1] == ("one", 11.0, 3)


async def test_tasks_with_one_deadline_run_in_order_and_in_parallel(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    # Three tasks due at the very same trio deadline (as retries with one
    # backoff are): the loop woken by the deadline hands the others out too.
    starts: list[tuple[float, str]] = []

    async def handler(item: str, ctx: WorkerContext) -> None:
        starts.append((trio.current_time(), item))
        await trio.sleep(1)
        if len(starts) == 3:
            ctx.stop()

    worker = WorkerBuilder("w").backend(storage).concurrency(3).build(handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(1)
        for name in ("a", "b", "c"):
            storage.reschedule_nowait(Task(name), 4.0)
    assert starts == [(5.0, "a"), (5.0, "b"), (5.0, "c")]
    assert trio.current_time() == 6.0
