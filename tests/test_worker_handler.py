"""Handler parameters resolved at build(): injectables, Data, Meta, from_request, sync handlers.

A handler's first parameter receives the task's args; every other one is
resolved once at ``WorkerBuilder.build()`` from its annotation, and a parameter
nothing can supply is a ``BuildError`` naming it.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from conftest import EventLog

from pyapalis import (
    Attempt,
    BuildError,
    Data,
    Extensions,
    MemoryStorage,
    Meta,
    MissingDataError,
    Parts,
    Status,
    Task,
    TaskBuilder,
    TaskId,
    WorkerBuilder,
    WorkerContext,
)


class Database:
    def __init__(self, name: str) -> None:
        self.name = name


class Cache:
    pass


class Tenant:
    def __init__(self, name: str) -> None:
        self.name = name


class Region:
    def __init__(self, code: str = "eu") -> None:
        self.code = code


XX = Region("xx")


class Caller:
    """Built from the task by its ``from_request`` classmethod."""

    def __init__(self, label: str) -> None:
        self.label = label

    @classmethod
    def from_request(cls, task: Task) -> Caller:
        return cls(f"{task.args}@{task.parts.attempt.current()}")


class AsyncCaller:
    def __init__(self, label: str) -> None:
        self.label = label

    @classmethod
    async def from_request(cls, task: Task) -> AsyncCaller:
        await trio.lowlevel.checkpoint()
        return cls(f"async:{task.args}")


async def run_tasks(
    storage: MemoryStorage,
    handler: Any,
    builder: WorkerBuilder | None = None,
    event_log: EventLog | None = None,
) -> None:
    """Run a worker over what the storage holds, then stop it."""
    builder = builder or WorkerBuilder("w")
    builder.backend(storage)
    if event_log is not None:
        builder.on_event(event_log)
    worker = builder.build(handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(1)
        worker.context.stop()


# -- the injectables ---------------------------------------------------------------------


async def test_every_builtin_injectable(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    task = TaskBuilder({"n": 1}).id("t-1").build()
    await storage.push_task(task)
    seen: dict[str, Any] = {}

    async def handler(
        args: dict[str, int],
        ctx: WorkerContext,
        attempt: Attempt,
        task_id: TaskId,
        parts: Parts,
        whole: Task,
        data: Extensions,
    ) -> None:
        seen.update(args=args, ctx=ctx, attempt=attempt, task_id=task_id)
        seen.update(parts=parts, whole=whole, data=data)

    builder = WorkerBuilder("inject")
    await run_tasks(storage, handler, builder)
    assert seen["args"] == {"n": 1}
    assert isinstance(seen["ctx"], WorkerContext) and seen["ctx"].name == "inject"
    assert seen["attempt"] is task.parts.attempt
    assert seen["attempt"].current() == 1
    assert seen["task_id"] == TaskId("t-1")
    assert seen["parts"] is task.parts
    assert seen["whole"] is task
    assert seen["data"] is task.parts.data


async def test_keyword_only_and_positional_parameters(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    got: list[Any] = []

    async def handler(item: int, ctx: WorkerContext, *, task_id: TaskId, attempt: Attempt) -> None:
        got.append((item, ctx.name, task_id, attempt.current()))

    task_id = await storage.push(5)
    await run_tasks(storage, handler)
    assert got == [(5, "w", task_id, 1)]


async def test_var_args_are_ignored(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    got: list[Any] = []

    async def handler(item: int, *args: Any, **kwargs: Any) -> None:
        got.append((item, args, kwargs))

    await storage.push(1)
    await run_tasks(storage, handler)
    assert got == [(1, (), {})]


async def test_the_args_parameter_needs_no_annotation(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    got: list[Any] = []

    async def handler(item, worker: WorkerContext):  # type: ignore[no-untyped-def]
        got.append(item)

    await storage.push("anything")
    await run_tasks(storage, handler)
    assert got == ["anything"]


# -- Data[T] ----------------------------------------------------------------------------------


async def test_data_from_the_worker_and_overridden_per_task(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    shared = Database("shared")
    special = Database("special")
    got: list[tuple[str, str]] = []

    async def handler(item: str, db: Data[Database]) -> None:
        got.append((item, db.name))

    await storage.push("plain")
    await storage.push_task(TaskBuilder("override").data(special).build())
    await storage.push("plain-again")
    await run_tasks(storage, handler, WorkerBuilder("w").data(shared))
    assert got == [("plain", "shared"), ("override", "special"), ("plain-again", "shared")]


async def test_several_data_types(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    db, cache = Database("db"), Cache()
    got: list[Any] = []

    async def handler(item: int, cache_: Data[Cache], *, db_: Data[Database]) -> None:
        got.append((cache_, db_))

    await storage.push(1)
    await run_tasks(storage, handler, WorkerBuilder("w").data(db).data(cache))
    assert got == [(cache, db)]


def test_missing_data_fails_at_build_naming_the_parameter() -> None:
    async def handler(item: int, database: Data[Database]) -> None:
        pass

    builder = WorkerBuilder("w").backend(MemoryStorage()).data(Cache())
    with pytest.raises(BuildError, match="'database'") as info:
        builder.build(handler)
    assert info.value.kind == "UnresolvableParameter"
    assert "Data[Database]" in str(info.value)


async def test_data_with_a_default_may_come_per_task_only(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    got: list[Any] = []

    async def handler(item: str, db: Data[Database] = None) -> None:  # type: ignore[assignment]
        got.append((item, db.name if db is not None else None))

    await storage.push("none")
    await storage.push_task(TaskBuilder("given").data(Database("per-task")).build())
    await run_tasks(storage, handler)
    assert got == [("none", None), ("given", "per-task")]


# -- Meta[T] -----------------------------------------------------------------------------------


async def test_meta(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    got: list[Any] = []

    async def handler(item: str, tenant: Meta[Tenant], region: Meta[Region] = XX) -> None:
        got.append((item, tenant.name, region.code))

    await storage.push_task(TaskBuilder("a").meta(Tenant("acme")).meta(Region("us")).build())
    await storage.push_task(TaskBuilder("b").meta(Tenant("beta")).build())
    # A decoded dict (as a persistent backend gives back) becomes the class again.
    decoded = Task("c", ctx={"Tenant": {"name": "from-json"}})
    await storage.push_task(decoded)
    missing = Task("d")
    await storage.push_task(missing)
    await run_tasks(storage, handler, event_log=event_log)
    assert got == [("a", "acme", "us"), ("b", "beta", "xx"), ("c", "from-json", "xx")]
    # Missing metadata without a default fails that task (not the build, not the worker).
    assert missing.parts.status is Status.Failed
    error = event_log.of("Error")[0].error
    assert isinstance(error, MissingDataError)
    assert "Tenant" in str(error)
    assert any("'tenant'" in note for note in getattr(error, "__notes__", []))


# -- from_request ---------------------------------------------------------------------------


async def test_from_request_classes(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    got: list[Any] = []

    async def handler(item: str, caller: Caller, other: AsyncCaller) -> None:
        got.append((caller.label, other.label))

    await storage.push("job")
    await run_tasks(storage, handler)
    assert got == [("job@1", "async:job")]


async def test_from_request_with_a_sync_handler(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    got: list[Any] = []

    def handler(item: str, other: AsyncCaller) -> str:
        got.append(other.label)
        return "ok"

    task = Task("sync")
    await storage.push_task(task)
    await run_tasks(storage, handler)
    assert got == ["async:sync"]
    assert task.parts.status is Status.Done


# -- unsatisfiable signatures ------------------------------------------------------------------


class NotInjectable:
    pass


@pytest.mark.parametrize(
    ("handler_src", "param", "problem"),
    [
        ("async def h(item, db): ...", "db", "has no annotation"),
        ("async def h(item, thing: NotInjectable): ...", "thing", "nothing can supply"),
        ("async def h(item, n: int): ...", "n", "nothing can supply"),
        ("async def h(item, *, secret: str): ...", "secret", "nothing can supply"),
    ],
)
def test_unsatisfiable_parameter_fails_at_build(handler_src: str, param: str, problem: str) -> None:
    namespace: dict[str, Any] = {"NotInjectable": NotInjectable}
    exec(handler_src, namespace)
    builder = WorkerBuilder("w").backend(MemoryStorage())
    with pytest.raises(BuildError) as info:
        builder.build(namespace["h"])
    assert info.value.kind == "UnresolvableParameter"
    assert f"{param!r}" in str(info.value)
    assert problem in str(info.value)


def test_a_handler_must_take_the_args_first() -> None:
    builder = WorkerBuilder("w").backend(MemoryStorage())

    async def no_params() -> None:
        pass

    async def keyword_only(*, item: int) -> None:
        pass

    for handler in (no_params, keyword_only):
        with pytest.raises(BuildError, match="first positional parameter") as info:
            builder.build(handler)
        assert info.value.kind == "InvalidHandler"
    with pytest.raises(BuildError, match="callable"):
        builder.build(42)  # type: ignore[arg-type]


def test_an_unresolvable_annotation_string_fails_at_build() -> None:
    # Under ``from __future__ import annotations`` a class local to a function
    # cannot be resolved from the handler's globals: a clear build error.
    class Local:
        pass

    async def handler(item: int, local: Local) -> None:
        pass

    with pytest.raises(BuildError, match="annotations") as info:
        WorkerBuilder("w").backend(MemoryStorage()).build(handler)
    assert info.value.kind == "InvalidHandler"


# -- handler forms ----------------------------------------------------------------------------


async def test_plain_def_handlers_run_inline(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    calls: list[tuple[int, int]] = []

    def handler(item: int, attempt: Attempt) -> int:
        calls.append((item, attempt.current()))
        if item == 2:
            raise ValueError("two")
        if item == 3:
            return False  # type: ignore[return-value]
        return item * 100

    tasks = [Task(i) for i in (1, 2, 3)]
    for task in tasks:
        await storage.push_task(task)
    await run_tasks(storage, handler, event_log=event_log)
    assert calls == [(1, 1), (2, 1), (3, 1)]
    assert [t.parts.status for t in tasks] == [Status.Done, Status.Failed, Status.Failed]
    assert [e.result for e in event_log.of("Success")] == [100]
    assert [str(e.error) for e in event_log.of("Error")] == ["two", "Task returned false"]


async def test_args_only_sync_and_lambda_handlers(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    await storage.push_bulk([1, 2])
    await run_tasks(storage, lambda item: item + 1, event_log=event_log)
    assert [e.result for e in event_log.of("Success")] == [2, 3]


async def test_callable_object_handlers(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    class AsyncHandler:
        def __init__(self) -> None:
            self.seen: list[Any] = []

        async def __call__(self, item: int, attempt: Attempt) -> int:
            await trio.sleep(0.5)
            self.seen.append((item, attempt.current(), trio.current_time()))
            return -item

    handler = AsyncHandler()
    await storage.push(7)
    await run_tasks(storage, handler, event_log=event_log)
    assert handler.seen == [(7, 1, 0.5)]
    assert [e.result for e in event_log.of("Success")] == [-7]


async def test_the_seed_signature_as_written(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    got: list[Any] = []

    async def task(item: int, worker: WorkerContext) -> None:
        got.append((item, worker.name, worker.is_running, worker.task_count))

    await storage.push(1)
    await run_tasks(storage, task, WorkerBuilder("rango-tango"))
    assert got == [(1, "rango-tango", True, 1)]
