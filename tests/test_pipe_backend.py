"""A Pipe is a backend: one worker runs the pipe and consumes the backend it feeds.

``WorkerBuilder(...).backend(Pipe(source, storage))`` (apalis's "pipe-based
backend"): the worker takes and acknowledges through ``storage`` and runs the
pipe beside its consumer loops. When the source ends the worker keeps
consuming; an error from the source stops the worker with that error once the
tasks in flight have finished; nothing pushed is lost. All in virtual time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing
from conftest import EventLog

from pyapalis import MemoryStorage, Status, Task, TaskId, WorkerBuilder, WorkerContext
from pyapalis.backends import Backend, RunsAlongside, SyncAck
from pyapalis.backends._custom import dequeue_backend
from pyapalis.backends._pipe import Pipe, pipe_to


async def numbers(count: int, period: float = 1.0) -> AsyncIterator[int]:
    for n in range(count):
        await trio.sleep(period)
        yield n


async def test_a_worker_runs_the_pipe_and_consumes_its_backend(
    autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    storage = MemoryStorage()
    seen: list[tuple[Any, float]] = []

    async def handler(item: Any) -> None:
        seen.append((item, trio.current_time()))

    pipe = Pipe(numbers(3), storage)
    worker = WorkerBuilder("piped").backend(pipe).on_event(event_log).build(handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(5)
        # The source ended at 3; the worker keeps consuming what others push.
        assert not worker.context.is_shutting_down
        await storage.push("late")
        await trio.sleep(1)
        worker.context.stop()
    assert seen == [(0, 1.0), (1, 2.0), (2, 3.0), ("late", 5.0)]
    assert pipe.count == 3
    assert len(storage) == 0
    assert event_log.kinds[0] == "Start" and event_log.kinds[-1] == "Stop"
    assert len(event_log.of("Success")) == 4


async def test_the_pipe_lends_the_worker_its_backends_own_methods(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage()
    pipe = Pipe(numbers(1), storage)
    assert isinstance(pipe, Backend)
    assert isinstance(pipe, RunsAlongside)
    assert isinstance(pipe, SyncAck)  # MemoryStorage acknowledges without awaiting
    # The very same bound methods: consuming through a pipe costs nothing more.
    assert pipe.take_nowait == storage.take_nowait
    assert pipe.ack_nowait == storage.ack_nowait
    assert pipe.take_or_wake == storage.take_or_wake
    worker = WorkerBuilder("piped").backend(pipe).build(_noop)
    assert worker.source is not None
    assert worker.source.take_or_wake is not None  # the idle fast path is kept
    # A backend lacking an optional method leaves it out of the pipe too.
    polled = dequeue_backend(1)
    assert not hasattr(polled, "take_or_wake")
    assert not hasattr(Pipe(numbers(1), polled), "take_or_wake")


async def _noop(item: Any) -> None:
    pass


async def test_a_source_error_stops_the_worker_after_in_flight_tasks_finish(
    autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    storage = MemoryStorage()
    done: list[tuple[Any, float]] = []

    async def broken() -> AsyncIterator[str]:
        await trio.sleep(1)
        yield "a"
        await trio.sleep(1)
        yield "b"
        await trio.sleep(1)
        raise ConnectionError("feed lost")

    async def handler(item: str) -> None:
        await trio.sleep(5)
        done.append((item, trio.current_time()))

    pipe = Pipe(broken(), storage)
    worker = WorkerBuilder("piped").backend(pipe).on_event(event_log).build(handler)
    with pytest.raises(ConnectionError, match="feed lost"), trio.fail_after(100):
        await worker.run()
    # "a" was in flight when the source failed at 3: it finished at 6, then
    # the worker stopped. "b" was pushed and not taken: it stays in the storage.
    assert trio.current_time() == 6.0
    assert done == [("a", 6.0)]
    assert pipe.count == 2
    assert len(storage) == 1
    left = storage.take_nowait()
    assert left is not None and left.args == "b"
    assert event_log.kinds[-1] == "Stop"
    assert worker.context.is_stopped


async def test_stop_ends_the_pipe_and_nothing_pushed_or_taken_is_lost(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage(maxsize=1)
    send, receive = trio.open_memory_channel[int](100)
    for n in range(6):
        send.send_nowait(n)
    seen: list[tuple[int, float]] = []

    async def slow(item: int) -> None:
        seen.append((item, trio.current_time()))
        await trio.sleep(10)

    pipe = Pipe(receive, storage)
    worker = WorkerBuilder("first").backend(pipe).build(slow)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(1)
        worker.context.stop()
    # Item 0 ran; item 1 filled the storage; item 2 was in the pipe's hand,
    # waiting for room, when the run ended at 10.
    assert trio.current_time() == 10.0
    assert seen == [(0, 0.0)]
    assert pipe.count == 2
    assert len(storage) == 1

    # A later worker on the same pipe carries on: every item once, in order.
    async def quick(item: int, ctx: WorkerContext) -> None:
        seen.append((item, trio.current_time()))
        if item == 5:
            ctx.stop()

    with trio.fail_after(100):
        await WorkerBuilder("second").backend(pipe).build(quick).run()
    assert [item for item, _ in seen] == [0, 1, 2, 3, 4, 5]
    assert pipe.count == 6


async def test_a_cancelled_run_hands_tasks_back_and_the_pipe_keeps_its_item(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage(maxsize=1)
    tasks_seen: list[Task] = []

    async def source() -> AsyncIterator[int]:
        for n in range(4):
            yield n

    async def slow(item: int, task: Task) -> None:
        tasks_seen.append(task)
        await trio.sleep(10)

    pipe = Pipe(source(), storage)
    with trio.move_on_after(1) as scope:
        await WorkerBuilder("first").backend(pipe).build(slow).run()
    assert scope.cancelled_caught
    [interrupted] = tasks_seen
    assert interrupted.parts.status is Status.Pending  # handed back, not lost
    assert pipe.count == 2  # item 2 waits in the pipe's hand

    done: list[int] = []

    async def quick(item: int, ctx: WorkerContext) -> None:
        done.append(item)
        if len(done) == 4:
            ctx.stop()

    with trio.fail_after(100):
        await WorkerBuilder("second").backend(pipe).build(quick).run()
    assert sorted(done) == [0, 1, 2, 3]
    assert done[0] == 0  # the interrupted task was handed back first in line


async def test_a_pipe_into_a_polling_backend(autojump_clock: trio.testing.MockClock) -> None:
    backend = dequeue_backend(2)
    seen: list[tuple[int, float]] = []

    async def handler(item: int) -> None:
        seen.append((item, trio.current_time()))

    worker = WorkerBuilder("piped").backend(Pipe(numbers(4, 0.75), backend)).build(handler)
    await worker.run_until(lambda: trio.sleep(7))
    # Pushed at 0.75, 1.5, 2.25, 3; found by the polls at 2 and 4, two at a time.
    assert seen == [(0, 2.0), (1, 2.0), (2, 4.0), (3, 4.0)]


async def test_a_pipe_into_something_a_worker_cannot_consume_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Collector:
        async def push(self, args: Any) -> TaskId:
            return TaskId.generate()

    pipe = Pipe(numbers(1), Collector())
    with pytest.raises(TypeError, match="this Pipe feeds a Collector, which a worker cannot"):
        WorkerBuilder("w").backend(pipe)  # type: ignore[arg-type]
    assert await pipe_to(numbers(2), Collector()) == 2  # pipe_to stays for that


async def test_one_worker_runs_a_pipe_at_a_time(autojump_clock: trio.testing.MockClock) -> None:
    storage = MemoryStorage()
    pipe = Pipe(numbers(100), storage)
    first = WorkerBuilder("first").backend(pipe).build(_noop)
    second = WorkerBuilder("second").backend(pipe).build(_noop)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(first.run)
        await trio.sleep(0.5)
        with pytest.raises(trio.BusyResourceError, match="already running"):
            await second.run()
        first.context.stop()


async def test_any_backend_can_ask_for_a_task_alongside_the_worker(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The protocol, not Pipe: run while the loops run, cancelled when the last one ends."""
    log: list[tuple[str, float]] = []

    class Ticking(MemoryStorage):
        async def run_alongside(self) -> None:
            log.append(("started", trio.current_time()))
            try:
                while True:
                    await trio.sleep(2.5)
                    await self.push("tick")
            finally:
                log.append(("ended", trio.current_time()))

    storage = Ticking()
    assert isinstance(storage, RunsAlongside)

    async def slow(item: str) -> None:
        log.append((item, trio.current_time()))
        await trio.sleep(3)

    worker = WorkerBuilder("w").backend(storage).build(slow)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(6)
        worker.context.stop()
    # It runs until the task in flight (taken at 5.5) finished at 8.5; the
    # tick it pushed at 7.5 stays in the storage.
    assert log == [
        ("started", 0.0),
        ("tick", 2.5),
        ("tick", 5.5),
        ("ended", 8.5),
    ]
    assert len(storage) == 1


async def test_an_error_alongside_stops_the_worker_even_when_idle(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Failing(MemoryStorage):
        async def run_alongside(self) -> None:
            await trio.sleep(4)
            raise OSError("feed broke")

    worker = WorkerBuilder("w").backend(Failing()).build(_noop)
    with pytest.raises(OSError, match="feed broke"), trio.fail_after(100):
        await worker.run()
    assert trio.current_time() == 4.0
