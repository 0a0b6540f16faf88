"""A plain ``def`` handler that returns an awaitable or a generator is never recorded Done unrun.

``.build(lambda to: send(to))`` and a decorator without ``functools.wraps``
make a plain function that returns a coroutine: the worker awaits it, so the
work runs and its value is the result. A generator function or an async
generator function is refused at build; a plain ``def`` that returns a
generator fails the task with a ``TypeError``. Every dispatch path of the
worker is covered: no layers, a task layer, an execution layer, the worker's
timeout, a task's own timeout, and ``TestWorker``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import outcome
import pytest
import trio
import trio.testing
from conftest import EventLog

from pyapalis import (
    BuildError,
    EventKind,
    MemoryStorage,
    RetryPolicy,
    Status,
    Task,
    TaskBuilder,
    TaskTimeoutError,
    WorkerBuilder,
)
from pyapalis._worker._service import Service
from pyapalis.testing import TestWorker

sent: list[tuple[str, float]] = []


async def send(to: str) -> str:
    await trio.sleep(1)
    sent.append((to, trio.current_time()))
    return f"sent to {to}"


def logged(function: Callable[[str], Awaitable[str]]) -> Callable[[str], Awaitable[str]]:
    """A decorator without functools.wraps: the wrapper is a plain def."""

    def wrapper(to: str) -> Awaitable[str]:
        return function(to)

    return wrapper


class Later:
    """An awaitable that is not a coroutine (it has ``__await__``)."""

    def __init__(self, to: str) -> None:
        self.to = to

    def __await__(self) -> Generator[Any, None, str]:
        return send(self.to).__await__()


class Caller:
    """Resolved by an async ``from_request``: the handler's call becomes a coroutine."""

    def __init__(self, name: str) -> None:
        self.name = name

    @classmethod
    async def from_request(cls, task: Task) -> Caller:
        await trio.lowlevel.checkpoint()
        return cls("resolved")


class Sender:
    """A callable object whose ``__call__`` is a plain def returning a coroutine."""

    def __call__(self, to: str) -> Awaitable[str]:
        return send(to)


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


@dataclass(frozen=True)
class Path:
    """A way through the worker: the builder's configuration and the task's."""

    name: str
    configure: Callable[[WorkerBuilder], WorkerBuilder]
    task_timeout: bool = False
    test_worker: bool = False


PATHS = [
    Path("no layers", lambda b: b),
    Path("task layer", lambda b: b.layer(task_layer)),
    Path("execution layer", lambda b: b.layer(ExecutionLayer())),
    Path("both zones", lambda b: b.layer(task_layer).layer(ExecutionLayer())),
    Path("worker timeout", lambda b: b.timeout(100)),
    Path("task timeout", lambda b: b, task_timeout=True),
    Path("task timeout, task layer", lambda b: b.layer(task_layer), task_timeout=True),
    Path("TestWorker", lambda b: b, test_worker=True),
]


@pytest.fixture(params=PATHS, ids=[path.name for path in PATHS])
def path(request: pytest.FixtureRequest) -> Path:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def _clear_sent() -> None:
    sent.clear()


async def run_one(
    path: Path, handler: Callable[..., Any], args: Any, builder: WorkerBuilder | None = None
) -> tuple[Task, outcome.Outcome[Any], EventLog]:
    """Run one task along ``path``; its Task, its outcome and the worker's events."""
    storage = MemoryStorage()
    task_builder = TaskBuilder(args)
    if path.task_timeout:
        task_builder = task_builder.timeout(100)
    task = task_builder.build()
    await storage.push_task(task)
    events = EventLog()
    builder = path.configure(builder or WorkerBuilder("w")).on_event(events)
    if path.test_worker:
        async with TestWorker(storage, handler, builder=builder) as tw:
            task_id, result = await tw.execute_next()
        assert task_id == task.parts.task_id
        return task, result, events
    worker = builder.backend(storage).build(handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(10)
        worker.context.stop()
    assert task.parts.status.is_final
    # The outcome as TestWorker reports it: the result, or the exception itself.
    [last] = [
        event for event in events.events if event.kind in (EventKind.Success, EventKind.Error)
    ]
    if last.kind is EventKind.Success:
        return task, outcome.Value(last.result), events
    return task, outcome.Error(last.error), events


# -- a returned awaitable is awaited ------------------------------------------------------


RETURNING_AWAITABLES = {
    "lambda": lambda to: send(to),
    "decorator without wraps": logged(send),
    "__await__ object": lambda to: Later(to),
    "callable object": Sender(),
}


@pytest.mark.parametrize("name", list(RETURNING_AWAITABLES))
async def test_a_returned_awaitable_is_awaited_and_its_value_is_the_result(
    path: Path, name: str, autojump_clock: trio.testing.MockClock
) -> None:
    task, result, events = await run_one(path, RETURNING_AWAITABLES[name], "ann")
    assert sent == [("ann", 1.0)]  # the body ran, once, taking its time
    assert result == outcome.Value("sent to ann")
    if not path.test_worker:  # TestWorker's backend keeps no result for us to ask
        assert task.parts.status is Status.Done
    [success] = events.of("Success")
    assert success.result == "sent to ann"  # type: ignore[attr-defined]


async def test_an_awaited_false_is_a_failure(
    path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async def refuse(to: str) -> bool:
        await trio.sleep(1)
        return False

    task, result, events = await run_one(path, lambda to: refuse(to), "ann")
    assert isinstance(result, outcome.Error)
    assert "Task returned false" in str(result.error)
    if not path.test_worker:
        assert task.parts.status is Status.Failed
    assert events.of("Success") == []


TIMED_PATHS = [path for path in PATHS if path.task_timeout or path.name == "worker timeout"]


@pytest.mark.parametrize("timed", TIMED_PATHS, ids=[path.name for path in TIMED_PATHS])
async def test_a_returned_awaitable_runs_under_the_timeout(
    timed: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async def slow(to: str) -> str:
        await trio.sleep(1000)
        sent.append((to, trio.current_time()))
        return "late"

    task, result, _ = await run_one(timed, lambda to: slow(to), "ann")
    assert isinstance(result, outcome.Error)
    assert isinstance(result.error, TaskTimeoutError)
    assert sent == []
    assert task.parts.status is Status.Failed


async def test_a_sync_handler_with_an_async_resolver_has_its_awaitable_awaited(
    path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    def handler(to: str, caller: Caller) -> Awaitable[str]:
        assert caller.name == "resolved"
        return send(to)

    _, result, _ = await run_one(path, handler, "bob")
    assert sent == [("bob", 1.0)]
    assert result == outcome.Value("sent to bob")


# -- a returned generator fails the task -------------------------------------------------


def numbers(to: str) -> Iterator[str]:
    sent.append((to, -1.0))  # never runs
    yield to


async def async_numbers(to: str) -> AsyncIterator[str]:
    sent.append((to, -1.0))  # never runs
    yield to


@pytest.mark.parametrize(
    ("handler", "kind"),
    [
        (lambda to: numbers(to), "a generator"),
        (lambda to: async_numbers(to), "an async generator"),
    ],
    ids=["generator", "async generator"],
)
async def test_a_returned_generator_fails_the_task_with_a_clear_error(
    path: Path, handler: Callable[[str], Any], kind: str, autojump_clock: trio.testing.MockClock
) -> None:
    task, result, events = await run_one(path, handler, "ann")
    assert isinstance(result, outcome.Error)
    error = result.error
    assert isinstance(error, TypeError)
    assert f"returned {kind} instead of a result" in str(error)
    assert "<lambda>" in str(error)  # names the handler
    assert sent == []
    if not path.test_worker:
        assert task.parts.status is Status.Failed
    assert [event.kind for event in events.of("Error")] == [EventKind.Error]
    assert events.of("Success") == []


async def test_a_returned_generator_is_retried_like_any_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage()
    task = Task("ann")
    await storage.push_task(task)
    events = EventLog()
    worker = (
        WorkerBuilder("w")
        .backend(storage)
        .retry(RetryPolicy.retries(2))
        .on_event(events)
        .build(lambda to: numbers(to))
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(1)
        worker.context.stop()
    assert task.parts.status is Status.Failed
    assert task.parts.attempt.current() == 3
    assert len(events.of("Error")) == 3


# -- refused at build ---------------------------------------------------------------------


def generator_handler(to: str) -> Iterator[str]:
    yield to


async def async_generator_handler(to: str) -> AsyncIterator[str]:
    yield to


class GeneratorCall:
    def __call__(self, to: str) -> Iterator[str]:
        yield to


@pytest.mark.parametrize(
    ("handler", "name", "kind"),
    [
        (generator_handler, "generator_handler", "a generator function"),
        (async_generator_handler, "async_generator_handler", "an async generator function"),
        (GeneratorCall(), "GeneratorCall", "a generator function"),
    ],
    ids=["generator function", "async generator function", "generator __call__"],
)
def test_generator_functions_are_refused_at_build(
    handler: Callable[..., Any], name: str, kind: str
) -> None:
    builder = WorkerBuilder("w").backend(MemoryStorage())
    with pytest.raises(BuildError, match=f"handler '{name}' is {kind}") as caught:
        builder.build(handler)
    assert caught.value.kind == "InvalidHandler"
    with pytest.raises(BuildError, match=name):
        TestWorker(MemoryStorage(), handler)


# -- the fast path pays nothing ------------------------------------------------------------


async def test_async_handlers_results_are_not_inspected(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An async def's result is its result, even an awaitable: only plain defs are checked."""
    storage = MemoryStorage()
    task = Task("ann")
    await storage.push_task(task)
    later = Later("x")

    async def handler(to: str) -> Later:
        return later

    worker = WorkerBuilder("w").backend(storage).build(handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(1)
        worker.context.stop()
    [result] = await storage.check_status([task.parts.task_id])
    assert result.result == outcome.Value(later)
    assert sent == []
