"""The capabilities the command and the board use beyond apalis's: Kill, CountTasks, Delete.

``kill_by_id``: a Pending task killed never runs and reports Killed with the
reason as its error; a finished or unknown one is refused (False). On
SqliteStorage a Running task can be killed too: its worker's late
acknowledgement is fenced. ``count_tasks`` agrees with ``list_tasks``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from pyapalis import (
    Event,
    EventKind,
    JsonStorage,
    MemoryStorage,
    SqliteStorage,
    Status,
    TaskId,
    WorkerBuilder,
)
from pyapalis.backends._capabilities import CountTasks, Delete, Kill, ListQueues

MAKERS: dict[str, Callable[[Path], Any]] = {
    "memory": lambda _path: MemoryStorage(),
    "json": lambda path: JsonStorage(path / "tasks.jsonl"),
    "sqlite": lambda path: SqliteStorage(path / "tasks.db"),
}


@pytest.fixture(params=sorted(MAKERS))
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    backend = MAKERS[request.param](tmp_path)
    if hasattr(backend, "__aenter__"):
        async with backend:
            yield backend
    else:
        yield backend


async def test_a_killed_pending_task_never_runs(storage: Any) -> None:
    assert isinstance(storage, Kill)
    doomed = await storage.push("doomed")
    kept = await storage.push("kept")
    assert await storage.kill_by_id(doomed, "operator said so")
    [result] = await storage.check_status([doomed])
    assert result.status is Status.Killed
    with pytest.raises(Exception, match="operator said so"):
        result.unwrap()

    ran: list[str] = []

    async def handler(item: str) -> None:
        ran.append(item)

    worker = WorkerBuilder("w").backend(storage).build(handler)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker.run)
            await storage.wait_for_single(kept)
            worker.context.stop()
    assert ran == ["kept"]


async def test_a_finished_or_unknown_task_is_refused(storage: Any) -> None:
    task_id = await storage.push("x")
    assert await storage.kill_by_id(task_id)
    assert not await storage.kill_by_id(task_id)  # already Killed
    assert not await storage.kill_by_id(TaskId("no-such-task"))
    with pytest.raises(TypeError, match="reason"):
        await storage.kill_by_id(task_id, 42)


async def test_count_tasks_agrees_with_list_tasks(storage: Any) -> None:
    assert isinstance(storage, CountTasks)
    assert await storage.count_tasks() == dict.fromkeys(Status, 0)
    ids = [await storage.push(n) for n in range(5)]
    await storage.kill_by_id(ids[0])
    await storage.kill_by_id(ids[1])
    counts = await storage.count_tasks()
    assert counts == {**dict.fromkeys(Status, 0), Status.Pending: 3, Status.Killed: 2}
    for status in Status:
        listed = await storage.list_tasks(status=status, page_size=100)
        assert len(listed) == counts[status]
    if hasattr(storage, "queue"):  # another named queue of the same store counts apart
        assert await storage.queue("other").count_tasks() == dict.fromkeys(Status, 0)


async def test_list_queues_names_the_queues_holding_tasks(tmp_path: Path) -> None:
    for storage in (SqliteStorage(tmp_path / "tasks.db"), JsonStorage(tmp_path / "t.jsonl")):
        async with storage:
            assert isinstance(storage, ListQueues)
            assert await storage.list_queues() == ["default"]
            async with storage.queue("emails") as emails:
                await emails.push("hi")
                assert await emails.list_queues() == ["emails"]  # default holds none
                assert await storage.list_queues() == ["default", "emails"]
            async with storage.queue("zzz") as empty:
                assert await empty.list_queues() == ["emails", "zzz"]
    assert not isinstance(MemoryStorage(), ListQueues)


async def test_delete_capability_is_declared_where_it_exists(storage: Any) -> None:
    assert isinstance(storage, Delete) == (not isinstance(storage, MemoryStorage))


async def test_sqlite_kills_a_running_task_and_fences_its_ack(tmp_path: Path) -> None:
    async with SqliteStorage(tmp_path / "tasks.db") as storage:
        task_id = await storage.push("long")
        started = trio.Event()
        release = trio.Event()

        async def handler(item: str) -> str:
            started.set()
            await release.wait()
            return "finished anyway"

        handled = trio.Event()

        def on_event(_context: Any, event: Event) -> None:
            if event.kind is EventKind.Success:
                handled.set()

        worker = WorkerBuilder("w").backend(storage).on_event(on_event).build(handler)
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(worker.run)
                await started.wait()
                assert await storage.kill_by_id(task_id, "stop it")
                release.set()
                await handled.wait()
                worker.context.stop()  # drains: the (fenced) ack is flushed

        [result] = await storage.check_status([task_id])
        assert result.status is Status.Killed
        task = await storage.fetch_by_id(task_id)
        assert task is not None and task.parts.status is Status.Killed


async def test_json_refuses_to_kill_a_task_running_in_this_process(tmp_path: Path) -> None:
    from pyapalis import StorageError

    async with JsonStorage(tmp_path / "tasks.jsonl") as storage:
        task_id = await storage.push("long")
        started = trio.Event()
        release = trio.Event()

        async def handler(item: str) -> None:
            started.set()
            await release.wait()

        worker = WorkerBuilder("w").backend(storage).build(handler)
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(worker.run)
                await started.wait()
                with pytest.raises(StorageError, match="its worker owns it"):
                    await storage.kill_by_id(task_id)
                release.set()
                await storage.wait_for_single(task_id)
                worker.context.stop()
