"""Pipe and pipe_to: a source feeding a backend that a worker consumes."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing

from pyapalis._implementation import TaskId
from pyapalis._worker._worker import WorkerBuilder
from pyapalis.backends._custom import dequeue_backend
from pyapalis.backends._memory._storage import MemoryStorage
from pyapalis.backends._pipe import Pipe, PushTarget, pipe_to


async def numbers(count: int, period: float = 0.0) -> AsyncIterator[int]:
    for n in range(count):
        if period:
            await trio.sleep(period)
        yield n


async def test_pipe_into_memory_storage_consumed_by_a_worker(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage()
    seen: list[tuple[int, float]] = []

    async def handler(item: int) -> None:
        seen.append((item, trio.current_time()))

    worker = WorkerBuilder("piped").backend(storage).build(handler)
    pipe = Pipe(numbers(5, period=1), storage)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        assert await pipe.run() == 5
        await trio.sleep(1)
        worker.context.stop()
    # MemoryStorage wakes the worker on push: each item runs when it is yielded.
    assert seen == [(0, 1.0), (1, 2.0), (2, 3.0), (3, 4.0), (4, 5.0)]
    assert pipe.count == 5


async def test_pipe_to_in_a_nursery_with_a_polling_backend(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backend = dequeue_backend(2)
    seen: list[tuple[int, float]] = []

    async def handler(item: int) -> None:
        seen.append((item, trio.current_time()))

    worker = WorkerBuilder("piped").backend(backend).build(handler)
    counts: list[int] = []

    async def feed() -> None:
        counts.append(await pipe_to(numbers(4, period=0.75), backend))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(feed)
        await worker.run_until(lambda: trio.sleep(7))
    assert counts == [4]
    # Pushed at 0.75, 1.5, 2.25, 3; found by the polls at 2 and 4, two at a time.
    assert seen == [(0, 2.0), (1, 2.0), (2, 4.0), (3, 4.0)]


async def test_source_errors_propagate_after_earlier_items_are_pushed() -> None:
    storage = MemoryStorage()

    async def broken() -> AsyncIterator[str]:
        yield "a"
        yield "b"
        raise ConnectionError("feed lost")

    pipe = Pipe(broken(), storage)
    with pytest.raises(ConnectionError, match="feed lost"):
        await pipe.run()
    assert pipe.count == 2
    assert len(storage) == 2
    first, second = storage.take_nowait(), storage.take_nowait()
    assert first is not None and second is not None
    assert (first.args, second.args) == ("a", "b")


async def test_pipe_to_propagates_source_errors() -> None:
    async def broken() -> AsyncIterator[int]:
        raise ValueError("bad source")
        yield 0  # pragma: no cover - makes this an async generator

    with pytest.raises(ValueError, match="bad source"):
        await pipe_to(broken(), MemoryStorage())


async def test_pipe_respects_backpressure(autojump_clock: trio.testing.MockClock) -> None:
    storage = MemoryStorage(maxsize=2)
    pulled: list[tuple[int, float]] = []

    async def source() -> AsyncIterator[int]:
        for n in range(6):
            pulled.append((n, trio.current_time()))
            yield n

    seen: list[tuple[int, float]] = []

    sizes: list[int] = []

    async def slow(item: int) -> None:
        seen.append((item, trio.current_time()))
        await trio.sleep(10)
        sizes.append(len(storage))

    worker = WorkerBuilder("slow").backend(storage).build(slow)
    pipe = Pipe(source(), storage)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pipe.run)
        await trio.sleep(1)
        # The worker has not started: two items fill the storage, the third
        # waits in the pipe's hand, and the source is not asked for a fourth.
        assert [n for n, _ in pulled] == [0, 1, 2]
        assert len(storage) == 2
        nursery.start_soon(worker.run)
        await trio.sleep(100)
        worker.context.stop()
    assert [n for n, _ in seen] == list(range(6)), "nothing dropped, in order"
    assert [at for _, at in seen] == [1.0, 11.0, 21.0, 31.0, 41.0, 51.0]
    # The source is asked for more only when the pipe's push got room. A
    # MemoryStorage wakes a waiting producer when the worker settles a task
    # (not when it takes one): at 11 item 0 is settled and item 1 taken, so
    # items 2 and 3 go in and 4 waits in the pipe's hand.
    assert pulled == [(0, 0.0), (1, 0.0), (2, 0.0), (3, 11.0), (4, 11.0), (5, 21.0)]
    assert max(sizes) == 2
    assert pipe.count == 6


async def test_a_cancelled_pipe_keeps_the_item_in_hand(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage(maxsize=1)
    pipe = Pipe(numbers(3), storage)
    with trio.move_on_after(5) as scope:
        await pipe.run()
    assert scope.cancelled_caught
    assert pipe.count == 1  # item 1 was waiting for room, in the pipe's hand
    taken: list[int] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pipe.run)  # carries on: item 1 first, then the rest
        for _ in range(3):
            task = await storage.take()
            taken.append(task.args)
    assert taken == [0, 1, 2]
    assert pipe.count == 3


async def test_run_twice_at_once_is_refused(autojump_clock: trio.testing.MockClock) -> None:
    pipe = Pipe(numbers(3, period=1), MemoryStorage())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pipe.run)
        await trio.sleep(0.5)
        with pytest.raises(trio.BusyResourceError, match="already running"):
            await pipe.run()
    assert pipe.count == 3
    assert await pipe.run() == 3, "an exhausted source adds nothing"


async def test_aclose_closes_the_source(autojump_clock: trio.testing.MockClock) -> None:
    closed: list[bool] = []

    async def source() -> AsyncIterator[int]:
        try:
            for n in range(100):
                yield n
        finally:
            closed.append(True)

    storage = MemoryStorage(maxsize=3)
    pipe = Pipe(source(), storage)
    with trio.move_on_after(1):
        await pipe.run()
    assert closed == []
    await pipe.aclose()
    assert closed == [True]
    assert pipe.count == 3


async def test_any_object_with_push_is_a_target() -> None:
    class Collector:
        def __init__(self) -> None:
            self.items: list[Any] = []

        async def push(self, args: Any) -> TaskId:
            self.items.append(args)
            return TaskId.generate()

    collector = Collector()
    assert isinstance(collector, PushTarget)
    assert await pipe_to(numbers(3), collector) == 3
    assert collector.items == [0, 1, 2]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: Pipe([1, 2], MemoryStorage()), "Pipe: source must be an async iterable, got list"),
        (
            lambda: Pipe(numbers(1), object()),
            "Pipe: backend must have an async push() method, got object",
        ),
    ],
)
def test_bad_input(call: Any, message: str) -> None:
    with pytest.raises(TypeError, match="^" + re.escape(message) + "$"):
        call()
