"""WorkerContext: the state machine, its errors, and its event outlet."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from conftest import EventLog

from pyapalis import (
    Event,
    EventKind,
    MemoryStorage,
    WorkerBuilder,
    WorkerContext,
    WorkerState,
    WorkerStateError,
)


def test_a_fresh_context() -> None:
    ctx = WorkerContext("fresh")
    assert ctx.name == "fresh"
    assert ctx.state is WorkerState.Pending
    assert (ctx.is_running, ctx.is_paused, ctx.is_shutting_down, ctx.is_stopped) == (
        False,
        False,
        False,
        False,
    )
    assert ctx.task_count == 0
    assert repr(ctx) == "WorkerContext(name='fresh', state=Pending)"


def test_pause_and_resume_need_a_running_worker() -> None:
    ctx = WorkerContext("w")
    with pytest.raises(WorkerStateError, match="cannot pause worker 'w': it is Pending"):
        ctx.pause()
    with pytest.raises(WorkerStateError, match="cannot resume worker 'w': it is Pending"):
        ctx.resume()
    assert ctx.state is WorkerState.Pending


def test_state_error_is_a_runtime_error() -> None:
    assert issubclass(WorkerStateError, RuntimeError)


async def test_lifecycle_flags(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    snapshots: list[tuple[str, WorkerState, bool, bool, bool, bool]] = []

    def snap(label: str, ctx: WorkerContext) -> None:
        snapshots.append(
            (label, ctx.state, ctx.is_running, ctx.is_paused, ctx.is_shutting_down, ctx.is_stopped)
        )

    async def handler(item: int, ctx: WorkerContext) -> None:
        snap("in-handler", ctx)
        ctx.stop()
        snap("after-stop", ctx)
        await trio.sleep(1)

    worker = WorkerBuilder("w").backend(storage).build(handler)
    ctx = worker.context
    snap("built", ctx)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(1)
        snap("idle", ctx)
        ctx.pause()
        snap("paused", ctx)
        ctx.resume()
        await storage.push(1)
        await trio.sleep(0.5)
        snap("draining", ctx)
    snap("done", ctx)
    S = WorkerState
    assert snapshots == [
        ("built", S.Pending, False, False, False, False),
        ("idle", S.Running, True, False, False, False),
        ("paused", S.Paused, False, True, False, False),
        ("in-handler", S.Running, True, False, False, False),
        ("after-stop", S.ShuttingDown, False, False, True, False),
        ("draining", S.ShuttingDown, False, False, True, False),
        ("done", S.Stopped, False, False, True, True),
    ]


async def test_wait_stopped(storage: MemoryStorage, autojump_clock: trio.testing.MockClock) -> None:
    async def handler(item: int) -> None:
        await trio.sleep(4)

    worker = WorkerBuilder("w").backend(storage).build(handler)
    await storage.push(1)
    stopped_at: list[float] = []

    async def watcher() -> None:
        # Waiting before the run even started works too.
        await worker.context.wait_stopped()
        stopped_at.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watcher)
        await trio.sleep(1)
        nursery.start_soon(worker.run)
        await trio.sleep(1)
        worker.context.stop()
    assert stopped_at == [5.0]
    # Once stopped, it returns at once.
    await worker.context.wait_stopped()
    assert trio.current_time() == 5.0


async def test_emit_custom_events(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    async def handler(item: int, ctx: WorkerContext) -> None:
        for step in range(3):
            await trio.sleep(1)
            ctx.emit(Event.custom((item, step)))
        ctx.stop()

    await storage.push(9)
    worker = WorkerBuilder("w").backend(storage).on_event(event_log).build(handler)
    await worker.run()
    customs = event_log.of("Custom")
    assert [e.value for e in customs] == [(9, 0), (9, 1), (9, 2)]
    assert all(e.kind is EventKind.Custom and e.task_id is None for e in customs)
    assert [t for t, e in event_log.records if e.kind is EventKind.Custom] == [1.0, 2.0, 3.0]
    assert event_log.kinds == ["Start", "Custom", "Custom", "Custom", "Success", "Stop"]


def test_emit_without_listeners_and_outside_a_run() -> None:
    ctx = WorkerContext("w")
    ctx.emit(Event.custom("nobody listens"))  # no error
    seen: list[object] = []
    ctx.add_listener(lambda c, e: seen.append((c, e.value)))
    ctx.emit(Event.custom(1))
    assert seen == [(ctx, 1)]


def test_event_strings() -> None:
    assert str(EventKind.Idle) == "Idle"
    assert str(Event(EventKind.Stop)) == "Stop"
    assert str(Event.custom([1])) == "Custom([1])"
