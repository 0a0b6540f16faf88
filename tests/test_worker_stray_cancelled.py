"""A ``trio.Cancelled`` that a handler raises while nothing cancels the worker.

trio raises ``Cancelled`` inside a cancelled scope, and that scope catches it.
A handler that keeps one and raises it elsewhere used to make ``run()``
return as if stopped: the worker's nursery, cancelled because of the escaping
exception, swallowed it, and the task went back unnoticed. Now the task fails
with ``StrayCancelledError`` and the worker goes on; one that escapes a layer
stops the worker with that error. A real cancellation from outside still hands
every task in flight back and propagates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import pytest
import trio
import trio.testing
from conftest import EventLog

from pyapalis import EventKind, MemoryStorage, Status, Task, TaskBuilder, WorkerBuilder
from pyapalis._worker._pipeline import StrayCancelledError
from pyapalis._worker._service import Service
from pyapalis.testing import TestWorker


async def caught_cancelled() -> trio.Cancelled:
    """A real ``Cancelled``, caught in its own scope and kept."""
    with trio.CancelScope() as scope:
        scope.cancel()
        try:
            await trio.lowlevel.checkpoint()
        except trio.Cancelled as cancelled:
            return cancelled
    raise AssertionError("the checkpoint was not cancelled")


def task_layer(inner: Service) -> Service:
    async def service(task: Task) -> Any:
        return await inner(task)

    return service


class ExecutionLayer:
    wraps_execution: ClassVar[bool] = True

    def layer(self, inner: Service) -> Service:
        async def service(task: Task) -> Any:
            return await inner(task)

        return service


PATHS: dict[str, Callable[[WorkerBuilder], WorkerBuilder]] = {
    "no layers": lambda b: b,
    "task layer": lambda b: b.layer(task_layer),
    "execution layer": lambda b: b.layer(ExecutionLayer()),
    "worker timeout": lambda b: b.timeout(100),
}


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("style", ["async def", "plain def", "own timeout"])
async def test_a_handler_raising_a_stray_cancelled_fails_its_task_and_the_worker_goes_on(
    path: str, style: str, autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    storage = MemoryStorage()
    stray = TaskBuilder("stray").timeout(50).build() if style == "own timeout" else Task("stray")
    after = Task("after")
    await storage.push_task(stray)
    await storage.push_task(after)
    kept = await caught_cancelled()
    ran: list[str] = []

    async def async_handler(item: str) -> str:
        await trio.sleep(1)
        ran.append(item)
        if item == "stray":
            raise kept
        return item

    def sync_handler(item: str) -> str:
        ran.append(item)
        if item == "stray":
            raise kept
        return item

    handler = sync_handler if style == "plain def" else async_handler
    builder = PATHS[path](WorkerBuilder("w")).backend(storage).on_event(event_log)
    worker = builder.build(handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(10)
        assert not worker.context.is_stopped  # the worker did not quietly stop
        worker.context.stop()
    assert ran == ["stray", "after"]
    assert stray.parts.status is Status.Failed
    assert after.parts.status is Status.Done
    assert len(storage) == 0
    [error_event] = event_log.of("Error")
    error = error_event.error  # type: ignore[attr-defined]
    assert isinstance(error, StrayCancelledError)
    assert isinstance(error, RuntimeError)
    assert error.__cause__ is kept
    assert "raised trio.Cancelled while the worker was not being cancelled" in str(error)
    assert f"{handler.__qualname__!r}" in str(error)  # names the handler
    assert [e.kind for e in event_log.events if e.kind is not EventKind.Idle] == [  # type: ignore[attr-defined]
        EventKind.Start,
        EventKind.Error,
        EventKind.Success,
        EventKind.Stop,
    ]
    [(_, result)] = [
        (r.task_id, r.result) for r in await storage.check_status([stray.parts.task_id])
    ]
    assert result is not None and "StrayCancelledError" in str(result.error)


async def test_a_stray_cancelled_in_test_worker_is_an_error_outcome(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage()
    await storage.push("stray")
    kept = await caught_cancelled()

    async def handler(item: str) -> None:
        raise kept

    async with TestWorker(storage, handler) as tw:
        with trio.fail_after(100):  # a worker that quietly stopped would never answer
            _, result = await tw.execute_next()
    assert isinstance(result.error, StrayCancelledError)  # type: ignore[union-attr]


async def test_a_stray_cancelled_from_a_layer_stops_the_worker_with_a_clear_error(
    autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    storage = MemoryStorage()
    task = Task("x")
    await storage.push_task(task)
    kept = await caught_cancelled()

    def raising_layer(inner: Service) -> Service:
        async def service(task: Task) -> Any:
            await trio.sleep(1)
            raise kept

        return service

    async def handler(item: str) -> None:
        raise AssertionError("the layer never calls the handler")

    worker = WorkerBuilder("w").backend(storage).layer(raising_layer).on_event(event_log)
    built = worker.build(handler)
    with pytest.raises(StrayCancelledError, match=r"a layer of worker 'w' raised trio\.Cancelled"):
        await built.run()
    assert trio.current_time() == 1.0
    # Nothing is lost: the task is handed back, its attempt not counted.
    assert task.parts.status is Status.Pending
    assert task.parts.attempt.current() == 0
    assert storage.take_nowait() is task
    assert event_log.kinds == ["Start", "Stop"]


async def test_a_real_cancellation_from_outside_still_hands_tasks_back_and_propagates(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage()
    tasks = [Task(i) for i in range(3)]
    for task in tasks:
        await storage.push_task(task)

    async def handler(item: int) -> None:
        try:
            await trio.sleep(10)
        except trio.Cancelled:
            raise  # a handler may see the worker's Cancelled pass: it is not stray

    worker = WorkerBuilder("w").backend(storage).concurrency(2).build(handler)
    with trio.move_on_after(3) as scope:
        await worker.run()
    assert scope.cancelled_caught  # the Cancelled reached its scope
    assert all(t.parts.status is Status.Pending for t in tasks)
    assert all(t.parts.attempt.current() == 0 for t in tasks)
    assert len(storage) == 3
