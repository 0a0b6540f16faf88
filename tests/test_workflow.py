"""Durable workflows on every built-in backend, in virtual time.

Each test runs on MemoryStorage, JsonStorage and SqliteStorage (the
``backend`` fixture), and on PostgresStorage and RedisStorage where pyapalis
has them and their server answers (``PYAPALIS_POSTGRES_DSN``,
``PYAPALIS_TEST_REDIS``; a skip names what is missing, in CI a failure).
``time.time()`` follows the virtual clock (the ``wall_clock`` fixture), so a
step's delay is exact virtual seconds; SQLite keeps ``run_at`` in whole
milliseconds, rounded up, hence the 2 ms allowance there. The crash test (a
worker SIGKILLed between two steps) is in ``tests/test_workflow_crash.py``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import pyapalis
from pyapalis import (
    JsonStorage,
    MemoryStorage,
    SqliteStorage,
    Status,
    StorageError,
    Task,
    TaskId,
    WorkerBuilder,
    WorkflowFailedError,
)
from pyapalis.backends import TaskResult
from pyapalis.testing import WallClock
from pyapalis.workflow import Workflow, WorkflowBackend, WorkflowRunner
from tests._optional import IN_CI

Opener = Callable[[], Any]


@asynccontextmanager
async def _memory(path: Path) -> AsyncIterator[Any]:
    yield MemoryStorage()


@asynccontextmanager
async def _json(path: Path) -> AsyncIterator[Any]:
    with JsonStorage(path / "tasks.jsonl") as storage:
        yield storage


@asynccontextmanager
async def _sqlite(path: Path) -> AsyncIterator[Any]:
    async with SqliteStorage(path / "tasks.db") as storage:
        yield storage


POSTGRES_DSN = os.environ.get("PYAPALIS_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("PYAPALIS_TEST_REDIS", "redis://127.0.0.1:6379/0")


_SHARED = {
    "postgres": ("PostgresStorage", "issue15-postgres"),
    "redis": ("RedisStorage", "issue16-redis"),
}


def _shared_backend(name: str) -> Any:
    """The shared backend class ``name`` (the fixture skips while it is missing)."""
    return getattr(pyapalis, name)


@asynccontextmanager
async def _server(name: str, storage: Any) -> AsyncIterator[Any]:
    """Open ``storage``; without its server, skip naming it (in CI, fail)."""
    try:
        await storage.__aenter__()
    except StorageError as exc:
        if IN_CI:
            raise
        pytest.skip(f"no {name} server answers: {exc}")
    try:
        yield storage
    finally:
        await storage.__aexit__(None, None, None)


@asynccontextmanager
async def _postgres(path: Path) -> AsyncIterator[Any]:
    postgres_storage = _shared_backend("PostgresStorage")
    schema = f"wf_{path.name[-20:].lower().replace('-', '_')}_{os.getpid()}"
    async with _server("PostgreSQL", postgres_storage(POSTGRES_DSN, schema=schema)) as storage:
        try:
            yield storage
        finally:

            def drop() -> None:
                psycopg = importlib.import_module("psycopg")
                with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

            await trio.to_thread.run_sync(drop)


@asynccontextmanager
async def _redis(path: Path) -> AsyncIterator[Any]:
    redis_storage = _shared_backend("RedisStorage")
    namespace = f"pyapalis-wf-{path.name[-20:]}-{os.getpid()}"
    async with _server("Redis", redis_storage(REDIS_URL, namespace=namespace)) as storage:
        try:
            yield storage
        finally:
            coredis = importlib.import_module("coredis")
            async with coredis.Redis.from_url(REDIS_URL) as client:
                keys = [key async for key in client.scan_iter(match=f"{namespace}:*")]
                if keys:
                    await client.delete(keys)


OPENERS = {
    "memory": _memory,
    "json": _json,
    "sqlite": _sqlite,
    "postgres": _postgres,
    "redis": _redis,
}
# SQLite keeps run_at in whole milliseconds, rounded up; the servers' waits poll
# the store on its own clock (never early: the lower bound is exact).
DELAY_SLACK = {"memory": 0.0, "json": 0.0, "sqlite": 0.002, "postgres": 1.0, "redis": 1.0}


@pytest.fixture(params=sorted(OPENERS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Opener]:
    name: str = request.param
    if name in _SHARED and not hasattr(pyapalis, _SHARED[name][0]):
        pytest.skip(f"pyapalis has no {_SHARED[name][0]} on this branch yet ({_SHARED[name][1]})")
    return name, lambda: OPENERS[name](tmp_path)


async def _run(runner: WorkflowRunner[Any, Any], storage: Any, run_id: str, loops: int = 1) -> Any:
    """Run a worker on ``storage`` until the run finishes; return its result (or raise)."""
    worker = WorkerBuilder("flows").backend(storage).concurrency(loops).build(runner.handle)
    outcome: list[Any] = []

    async def until_done() -> None:
        try:
            outcome.append(await runner.wait(run_id))
        except WorkflowFailedError as exc:
            outcome.append(exc)

    await worker.run_until(until_done)
    if isinstance(outcome[0], WorkflowFailedError):
        raise outcome[0]
    return outcome[0]


async def test_a_chain_runs_its_steps_in_order_with_delays(
    backend: tuple[str, Opener], autojump_clock: trio.testing.MockClock, wall_clock: WallClock
) -> None:
    name, opener = backend
    ran: list[tuple[str, float, Any]] = []

    async def fetch(order: int) -> dict[str, int]:
        ran.append(("fetch", trio.current_time(), order))
        return {"order": order, "amount": 30}

    def charge(order: dict[str, int]) -> int:  # a plain def works too
        ran.append(("charge", trio.current_time(), order))
        return order["amount"] * 2

    async def notify(total: int) -> str:
        ran.append(("notify", trio.current_time(), total))
        return f"charged {total}"

    flow = (
        Workflow[int, int]("orders")
        .and_then(fetch)
        .delay_for(60)
        .and_then(charge)
        .delay_for(10)
        .delay_for(5)  # delays in a row add up
        .and_then(notify)
    )
    async with opener() as storage:
        runner = flow.on(storage)
        start = trio.current_time()
        run_id = await runner.start(7, run_id="order-7")
        assert await _run(runner, storage, run_id) == "charged 60"
        status = await runner.status(run_id)
    assert [(step, arg) for step, _, arg in ran] == [
        ("fetch", 7),
        ("charge", {"order": 7, "amount": 30}),
        ("notify", 60),
    ]
    times = [at - start for _, at, _ in ran]
    slack = DELAY_SLACK[name]
    assert times[0] >= 0
    assert 60 <= times[1] - times[0] <= 60 + slack
    assert 15 <= times[2] - times[1] <= 15 + slack
    assert status.status is Status.Done and status.result == "charged 60"
    assert [(s.name.rsplit(".", 1)[-1], s.status, s.result) for s in status.steps] == [
        ("fetch", Status.Done, {"order": 7, "amount": 30}),
        ("charge", Status.Done, 60),
        ("notify", Status.Done, "charged 60"),
    ]
    assert status.steps[1].task_ids == (TaskId("wf:orders:order-7:1"),)


async def test_fan_out_and_fan_in_collect_results_in_item_order(
    backend: tuple[str, Opener], autojump_clock: trio.testing.MockClock
) -> None:
    _, opener = backend
    joined: list[list[int]] = []

    def numbers(count: int) -> range:
        return range(count)

    async def square(number: int) -> int:
        await trio.sleep(10 - number)  # the last items finish first
        return number * number

    async def total(squares: list[int]) -> int:
        joined.append(squares)
        return sum(squares)

    flow = Workflow[int, int]("sums").and_then(numbers).fan_out(square).fan_in(total)
    async with opener() as storage:
        runner = flow.on(storage)
        run_id = await runner.start(5)
        assert await _run(runner, storage, run_id, loops=5) == 30
        status = await runner.status(run_id)
    assert joined == [[0, 1, 4, 9, 16]]  # the join ran once, results in item order
    assert [s.result for s in status.steps] == [[0, 1, 2, 3, 4], [0, 1, 4, 9, 16], 30]
    assert len(status.steps[1].task_ids) == 5


async def test_a_fan_out_of_no_items_hands_the_join_an_empty_list(
    backend: tuple[str, Opener], autojump_clock: trio.testing.MockClock
) -> None:
    _, opener = backend
    flow = Workflow[int, int]("empty").and_then(lambda n: []).fan_out(str).fan_in(len)
    async with opener() as storage:
        runner = flow.on(storage)
        run_id = await runner.start(0)
        assert await _run(runner, storage, run_id) == 0
        assert [s.result for s in (await runner.status(run_id)).steps] == [[], [], 0]


async def test_a_fan_out_as_last_step_gives_the_list_of_results(
    backend: tuple[str, Opener], autojump_clock: trio.testing.MockClock
) -> None:
    _, opener = backend
    flow = Workflow[list[str], list[str]]("upper").and_then(list).fan_out(str.upper)
    async with opener() as storage:
        runner = flow.on(storage)
        run_id = await runner.start(["a", "b"])
        assert await _run(runner, storage, run_id, loops=2) == ["A", "B"]


class _Race:
    def __init__(self) -> None:
        self.parked = 0
        self.both_parked = trio.Event()
        self.join_pushes = 0


class _SlowLookups:
    """A backend view whose ``fetch_by_id`` of result records waits until both items
    have parked theirs: the two last items of a fan-out finish at the same moment,
    both see every result, and both push the join. Views on two handles of one
    store share one ``race`` (the counts and the gate)."""

    def __init__(self, inner: Any, race: _Race) -> None:
        self.inner = inner
        self.race = race

    async def push_task(self, task: Task) -> TaskId:
        task_id = str(task.parts.task_id)
        result: TaskId = await self.inner.push_task(task)
        # Counted once stored: the gate opens when both records can be found.
        if task_id.endswith(":result"):
            self.race.parked += 1
            if self.race.parked == 2:
                self.race.both_parked.set()
        elif task_id.endswith(":2"):
            self.race.join_pushes += 1
        return result

    async def fetch_by_id(self, task_id: TaskId | str) -> Task | None:
        await self.race.both_parked.wait()
        found: Task | None = await self.inner.fetch_by_id(task_id)
        return found

    async def check_status(self, task_ids: Iterable[TaskId | str]) -> list[TaskResult]:
        found: list[TaskResult] = await self.inner.check_status(task_ids)
        return found

    async def wait_for_single(self, task_id: TaskId | str) -> TaskResult:
        found: TaskResult = await self.inner.wait_for_single(task_id)
        return found

    def wait_for(self, task_ids: Iterable[TaskId | str]) -> Any:
        return self.inner.wait_for(task_ids)

    async def push(self, args: Any) -> TaskId:
        raise NotImplementedError

    async def push_bulk(self, items: Iterable[Any]) -> list[TaskId]:
        raise NotImplementedError

    async def push_stream(self, items: Any) -> int:
        raise NotImplementedError


async def test_fan_in_runs_once_when_the_last_items_finish_together(
    backend: tuple[str, Opener], autojump_clock: trio.testing.MockClock
) -> None:
    """Two workers, each on its own handle of the store (for the file backends, as
    two processes would), finish the two items at once; both see all results and
    push the join, which is stored and run once."""
    name, opener = backend
    joins: list[list[str]] = []

    def join(results: list[str]) -> str:
        joins.append(results)
        return "+".join(results)

    items = Workflow[int, int]("race").and_then(lambda n: ["x", "y"])
    flow = items.fan_out(str.upper).fan_in(join)
    race = _Race()
    async with opener() as storage, AsyncExitStack() as stack:
        # MemoryStorage lives in one process: its second "handle" is the same object.
        other = storage if name == "memory" else await stack.enter_async_context(opener())
        runner = flow.on(_SlowLookups(storage, race))
        other_runner = flow.on(_SlowLookups(other, race))
        run_id = await runner.start(2)
        # Two loops each: a worker that claims both items at once runs them together.
        first = WorkerBuilder("one").backend(storage).concurrency(2).build(runner.handle)
        second = WorkerBuilder("two").backend(other).concurrency(2).build(other_runner.handle)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(second.run)
            await first.run_until(lambda: runner.wait(run_id))
            second.context.stop()
        assert await runner.wait(run_id) == "X+Y"
    assert race.join_pushes == 2  # both items pushed the join...
    assert joins == [["X", "Y"]]  # ...which ran once


async def test_a_failed_step_fails_the_run_after_its_retries(
    backend: tuple[str, Opener], autojump_clock: trio.testing.MockClock
) -> None:
    _, opener = backend
    tries: list[int] = []
    after: list[object] = []

    def check(order: int) -> int:
        return order

    def pay(order: int) -> int:
        tries.append(order)
        raise RuntimeError(f"card declined for order {order}")

    flow = (
        Workflow[int, int]("payments")
        .and_then(check)
        .and_then(pay, attempts=3)
        .and_then(after.append)
    )
    async with opener() as storage:
        runner = flow.on(storage)
        run_id = await runner.start(9, run_id="nine")
        with pytest.raises(WorkflowFailedError) as failed:
            await _run(runner, storage, run_id)
        status = await runner.status(run_id)
    assert tries == [9, 9, 9] and after == []
    assert failed.value.run_id == "nine" and failed.value.step == 1
    assert "card declined for order 9" in failed.value.message
    assert status.status is Status.Failed
    assert [s.status for s in status.steps] == [Status.Done, Status.Failed]
    assert status.error is not None and "card declined" in status.error


async def test_a_failed_fan_out_item_fails_the_run(
    backend: tuple[str, Opener], autojump_clock: trio.testing.MockClock
) -> None:
    _, opener = backend

    def parse(text: str) -> int:
        return int(text)

    flow = Workflow[list[str], list[str]]("parse").and_then(list).fan_out(parse).fan_in(sum)
    async with opener() as storage:
        runner = flow.on(storage)
        run_id = await runner.start(["1", "two", "3"])
        with pytest.raises(WorkflowFailedError, match="invalid literal") as failed:
            await _run(runner, storage, run_id, loops=3)
        assert failed.value.step == 1
        assert (await runner.status(run_id)).status is Status.Failed


async def test_a_step_that_returns_no_items_for_a_fan_out_fails_clearly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    flow: Workflow[int, Any] = Workflow[int, Any]("bad").and_then(lambda n: n).fan_out(abs)
    storage = MemoryStorage()
    runner = flow.on(storage)
    run_id = await runner.start(3)
    with pytest.raises(WorkflowFailedError, match=r"returned 3; the fan_out after it needs"):
        await _run(runner, storage, run_id)


async def test_status_before_and_during_a_run(
    autojump_clock: trio.testing.MockClock, wall_clock: WallClock
) -> None:
    flow = Workflow[int, int]("slow").and_then(abs).delay_for(100).and_then(abs)
    storage = MemoryStorage()
    runner = flow.on(storage)
    run_id = await runner.start(-4)
    assert (await runner.status(run_id)).status is Status.Pending
    worker = WorkerBuilder("w").backend(storage).build(runner.handle)

    async def look() -> None:
        await trio.sleep(50)  # the first step is done; the second waits for its delay
        status = await runner.status(run_id)
        assert status.status is Status.Running
        assert [s.status for s in status.steps] == [Status.Done, Status.Pending]
        assert await runner.wait(run_id) == 4

    await worker.run_until(look)


async def test_starting_twice_with_one_run_id_stores_one_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls: list[int] = []
    flow = Workflow[int, int]("once").and_then(calls.append)
    storage = MemoryStorage()
    runner = flow.on(storage)
    assert await runner.start(1, run_id="r1") == await runner.start(2, run_id="r1") == "r1"
    await _run(runner, storage, "r1")
    assert calls == [1]


async def test_a_task_of_another_workflow_is_killed_not_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage()
    ours = Workflow[int, int]("ours").and_then(abs).on(storage)
    theirs = Workflow[int, int]("theirs").and_then(abs).on(storage)
    run_id = await theirs.start(1)
    worker = WorkerBuilder("ours").backend(storage).build(ours.handle)
    with pytest.raises(WorkflowFailedError, match="not a task of workflow 'ours'"):
        await worker.run_until(lambda: theirs.wait(run_id))
    assert (await theirs.status(run_id)).status is Status.Killed


def test_bad_definitions_raise_naming_the_problem() -> None:
    storage: WorkflowBackend = MemoryStorage()
    with pytest.raises(ValueError, match="name must be non-empty"):
        Workflow("a:b")
    with pytest.raises(TypeError, match="name must be a str"):
        Workflow(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fan_out needs a step before it"):
        Workflow("w").fan_out(abs)
    with pytest.raises(ValueError, match="fan_in: the step before it must be a fan_out"):
        Workflow("w").and_then(abs).fan_in(sum)
    with pytest.raises(ValueError, match="ends with a delay_for"):
        Workflow("w").and_then(abs).delay_for(1).on(storage)
    with pytest.raises(ValueError, match="has no steps"):
        Workflow("w").on(storage)
    with pytest.raises(ValueError, match="delay_for: seconds must be finite and >= 0"):
        Workflow("w").delay_for(-1)
    with pytest.raises(TypeError, match="and_then: the step must be callable"):
        Workflow("w").and_then(3)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="and_then: attempts must be >= 1"):
        Workflow("w").and_then(abs, attempts=0)


async def test_bad_run_ids_raise_naming_the_argument() -> None:
    runner = Workflow[int, int]("w").and_then(abs).on(MemoryStorage())
    with pytest.raises(ValueError, match="start: run_id must be non-empty"):
        await runner.start(1, run_id="")
    with pytest.raises(TypeError, match="status: run_id must be a str"):
        await runner.status(5)  # type: ignore[arg-type]


async def test_forget_deletes_a_finished_runs_tasks_and_records(
    backend: tuple[str, Opener], autojump_clock: trio.testing.MockClock
) -> None:
    name, opener = backend
    if name == "memory":
        return  # it cannot delete: test_forget_needs_a_backend_that_deletes
    flow = Workflow[int, int]("tidy").and_then(lambda n: [n, n]).fan_out(abs).fan_in(sum)
    async with opener() as storage:
        runner = flow.on(storage)
        other = await storage.push("not a workflow task")
        run_id = await runner.start(-3)
        with pytest.raises(ValueError, match=r"forget: run .* is not finished"):
            await runner.forget(run_id)
        assert await _run(runner, storage, run_id, loops=2) == 6
        assert await runner.forget(run_id) == 6  # two steps, two items, two records
        left = await storage.list_tasks(page_size=100)
        assert [task.parts.task_id for task in left] == [other]


async def test_forget_needs_a_backend_that_deletes() -> None:
    runner = Workflow[int, int]("w").and_then(abs).on(MemoryStorage())
    with pytest.raises(TypeError, match=r"forget: .* cannot delete tasks"):
        await runner.forget("r1")
