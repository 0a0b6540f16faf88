"""Workers register with a backend that can hold workers and heartbeat while they run.

A worker whose backend has ``register_worker`` (``RegisterWorker``) registers
when it starts and again every ``WorkerBuilder.heartbeat()`` seconds (10 by
default), emitting ``HeartBeat`` after each registration, so
``list_workers()`` shows it with its last heartbeat. A failed registration is
logged and tried again at the next interval; the worker's tasks never notice.
A backend without the capability (``MemoryStorage``) runs no heartbeat at all.
All in virtual time.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from conftest import EventLog

from pyapalis import (
    EventKind,
    JsonStorage,
    MemoryStorage,
    Status,
    Task,
    WorkerBuilder,
    WorkerContext,
)
from pyapalis._worker._worker import DEFAULT_HEARTBEAT
from pyapalis.backends import RegisterWorker
from pyapalis.backends._pipe import Pipe


class Registry(MemoryStorage):
    """A MemoryStorage that can hold workers: it records each registration's time."""

    def __init__(self, failing: set[int] | None = None) -> None:
        super().__init__()
        self.calls: list[tuple[str, float]] = []
        self.failing = failing or set()  # which calls (0-based) raise

    async def register_worker(self, name: str) -> None:
        call = len(self.calls)
        self.calls.append((name, trio.current_time()))
        await trio.lowlevel.checkpoint()
        if call in self.failing:
            raise OSError(f"registry unreachable (call {call})")


def heartbeat_times(events: EventLog) -> list[float]:
    return [at for at, event in events.records if event.kind is EventKind.HeartBeat]  # type: ignore[attr-defined]


async def _noop(item: Any) -> None:
    pass


async def test_a_worker_registers_at_start_and_every_interval(
    autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    registry = Registry()
    assert isinstance(registry, RegisterWorker)
    worker = WorkerBuilder("alpha").backend(registry).on_event(event_log).build(_noop)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(35)
        worker.context.stop()
    assert DEFAULT_HEARTBEAT == 10.0
    assert registry.calls == [("alpha", 0.0), ("alpha", 10.0), ("alpha", 20.0), ("alpha", 30.0)]
    assert heartbeat_times(event_log) == [0.0, 10.0, 20.0, 30.0]
    kinds = [kind for kind in event_log.kinds if kind != "Idle"]
    assert kinds == ["Start", "HeartBeat", "HeartBeat", "HeartBeat", "HeartBeat", "Stop"]
    # Stopped: no more registrations.
    await trio.sleep(100)
    assert len(registry.calls) == 4


async def test_the_interval_is_configurable(
    autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    registry = Registry()
    worker = WorkerBuilder("beta").backend(registry).heartbeat(2.5).on_event(event_log).build(_noop)
    await worker.run_until(lambda: trio.sleep(8))
    assert heartbeat_times(event_log) == [0.0, 2.5, 5.0, 7.5]
    assert [at for _, at in registry.calls] == [0.0, 2.5, 5.0, 7.5]


async def test_an_infinite_interval_registers_once(autojump_clock: trio.testing.MockClock) -> None:
    registry = Registry()
    worker = WorkerBuilder("once").backend(registry).heartbeat(math.inf).build(_noop)
    await worker.run_until(lambda: trio.sleep(1000))
    assert registry.calls == [("once", 0.0)]


async def test_a_failed_heartbeat_is_logged_and_retried_and_tasks_never_notice(
    autojump_clock: trio.testing.MockClock,
    event_log: EventLog,
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = Registry(failing={1, 2})
    task = Task("long")
    await registry.push_task(task)
    finished: list[float] = []

    async def handler(item: str) -> None:
        await trio.sleep(25)  # runs across the two failed beats
        finished.append(trio.current_time())

    worker = WorkerBuilder("gamma").backend(registry).on_event(event_log).build(handler)
    with caplog.at_level(logging.WARNING, logger="pyapalis.worker"):
        await worker.run_until(lambda: trio.sleep(35))
    # Tried at 0, 10 (failed), 20 (failed), 30: each interval, whatever happened.
    assert [at for _, at in registry.calls] == [0.0, 10.0, 20.0, 30.0]
    assert heartbeat_times(event_log) == [0.0, 30.0]
    assert finished == [25.0]
    assert task.parts.status is Status.Done
    assert event_log.of("Error") == []
    failures = [r for r in caplog.records if "heartbeat failed" in r.getMessage()]
    assert len(failures) == 2
    assert all("'gamma'" in r.getMessage() for r in failures)
    assert "registry unreachable (call 1)" in str(failures[0].exc_info[1])  # type: ignore[index]


async def test_a_backend_without_the_capability_runs_no_heartbeat(
    autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    storage = MemoryStorage()
    assert not isinstance(storage, RegisterWorker)
    worker = WorkerBuilder("plain").backend(storage).on_event(event_log).build(_noop)
    assert worker.source is not None
    assert worker.source.register is None
    assert worker.source.alongside is None  # no task beside the loops

    async def watch() -> None:
        await trio.sleep(100)
        worker.context.stop()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        nursery.start_soon(watch)
    assert heartbeat_times(event_log) == []


async def test_a_pipe_forwards_the_registration_to_the_backend_it_feeds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    registry = Registry()

    async def nothing() -> Any:
        return
        yield  # pragma: no cover - makes this an async generator

    pipe = Pipe(nothing(), registry)
    assert isinstance(pipe, RegisterWorker)
    assert not isinstance(Pipe(nothing(), MemoryStorage()), RegisterWorker)
    worker = WorkerBuilder("piped").backend(pipe).heartbeat(4).build(_noop)
    await worker.run_until(lambda: trio.sleep(9))
    assert registry.calls == [("piped", 0.0), ("piped", 4.0), ("piped", 8.0)]


async def test_json_storage_lists_live_workers_and_their_last_heartbeat(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    with JsonStorage(tmp_path / "tasks.jsonl") as storage:
        await storage.push("x")
        assert await storage.list_workers() == []
        seen: list[list[Any]] = []

        async def handler(item: str, ctx: WorkerContext) -> None:
            await trio.sleep(1)

        worker = (
            WorkerBuilder("json-worker")
            .backend(storage)
            .heartbeat(5)
            .on_event(event_log)
            .build(handler)
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker.run)
            await trio.sleep(2.5)
            for _ in range(3):  # at 2.5, 7.5 and 12.5: between two beats
                seen.append(await storage.list_workers())
                await trio.sleep(5)
            worker.context.stop()
        assert heartbeat_times(event_log) == [0.0, 5.0, 10.0, 15.0]
        assert trio.current_time() == 17.5
        for workers in seen:
            [info] = workers
            assert info.name == "json-worker"
            assert info.pid == os.getpid()
            assert info.last_seen >= info.started_at
        last_seen = [workers[0].last_seen for workers in seen]
        assert last_seen == sorted(last_seen)
        assert len({workers[0].started_at for workers in seen}) == 1
        [final] = await storage.list_workers()
        assert final.last_seen >= last_seen[-1]
    # The registrations are durable: a new handle on the file sees the worker.
    with JsonStorage(tmp_path / "tasks.jsonl") as again:
        [info] = await again.list_workers()
        assert info == final


def test_heartbeat_validation() -> None:
    builder = WorkerBuilder("w")
    with pytest.raises(TypeError, match="heartbeat: expected seconds, got str"):
        builder.heartbeat("10")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="heartbeat: expected seconds, got bool"):
        builder.heartbeat(True)
    for bad in (0, -1, math.nan):
        with pytest.raises(ValueError, match="heartbeat: must be > 0 seconds"):
            builder.heartbeat(bad)
    assert builder.heartbeat(1) is builder
