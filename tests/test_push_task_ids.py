"""``push_task`` of an id that exists stores nothing and returns that id.

In any status — queued, finished, and after ``vacuum`` — until the task is
deleted. That is what makes a periodic tick pushed by several processes
(``Pipe(CronStream(...), storage)``) run once, also when another process's push
of that tick has already run to completion.

MemoryStorage does not track tasks in flight, so it remembers the ids given to
``push_task`` (the last ``pushed_ids``, 100,000 by default). JsonStorage holds
its tasks until vacuum or delete, and remembers the ids vacuum drops; so does
SqliteStorage (a ``vacuumed`` table, schema version 2).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from pyapalis import JsonStorage, MemoryStorage, SqliteStorage, Status, Task, TaskBuilder, TaskId
from pyapalis.backends._json import _store
from pyapalis.backends._sqlite import _storage as _sqlite_storage
from pyapalis.backends._sqlite._schema import MIGRATIONS, SCHEMA_VERSION
from pyapalis.testing import TestWorker


def tick(args: str = "tick", task_id: str = "cron:report:2026-05-04T12:00:00Z") -> Task:
    return TaskBuilder(args).id(task_id).build()


async def run_one(storage: Any) -> tuple[TaskId, Any]:
    seen: list[str] = []

    async def handler(args: str) -> str:
        seen.append(args)
        return f"ran {args}"

    async with TestWorker(storage, handler) as worker:
        task_id, result = await worker.execute_next()
    return task_id, (seen, result.unwrap())


# -- MemoryStorage -------------------------------------------------------------------------------


async def test_memory_a_queued_id_is_not_stored_twice() -> None:
    storage = MemoryStorage()
    first = await storage.push_task(tick("first"))
    second_task = tick("second")
    second_task.parts.status = Status.Done
    assert await storage.push_task(second_task) == first
    assert len(storage) == 1
    assert second_task.parts.status is Status.Done  # the refused task is left as it was
    assert await run_one(storage) == (first, (["first"], "ran first"))


async def test_memory_a_finished_or_vacuumed_id_is_not_stored_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage()
    task_id = await storage.push_task(tick())
    await run_one(storage)
    assert await storage.push_task(tick("again")) == task_id
    assert storage.push_task_nowait(tick("again")) == task_id
    assert len(storage) == 0
    assert [r.status for r in await storage.check_status([task_id])] == [Status.Done]
    assert await storage.vacuum() == 1
    assert await storage.push_task(tick("after vacuum")) == task_id
    assert len(storage) == 0


async def test_memory_remembers_the_last_pushed_ids_only() -> None:
    storage = MemoryStorage(pushed_ids=2)
    for name in ("a", "b", "c"):
        await storage.push_task(tick(name, task_id=name))
    assert len(storage) == 3
    await storage.push_task(tick("c again", task_id="c"))
    await storage.push_task(tick("a again", task_id="a"))  # forgotten: stored
    assert len(storage) == 4
    unbounded_off = MemoryStorage(pushed_ids=0)
    await unbounded_off.push_task(tick())
    await unbounded_off.push_task(tick())
    assert len(unbounded_off) == 2


async def test_memory_a_push_that_did_not_store_leaves_the_id_free(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage(maxsize=1)
    await storage.push("filler")
    with trio.move_on_after(5):
        await storage.push_task(tick("waited"))  # full: waits, then cancelled
    with pytest.raises(trio.WouldBlock):
        storage.push_task_nowait(tick("refused"))
    assert storage.take_nowait() is not None  # room again
    await storage.push_task(tick("stored"))
    assert len(storage) == 1


def test_memory_pushed_ids_must_be_a_count() -> None:
    with pytest.raises(
        ValueError, match=r"^MemoryStorage: pushed_ids must be an int >= 0, got int -1$"
    ):
        MemoryStorage(pushed_ids=-1)


# -- JsonStorage -----------------------------------------------------------------------------------


async def test_json_an_id_is_not_stored_again_until_deleted(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "tasks.jsonl"
    with JsonStorage(path) as storage:
        task_id = await storage.push_task(tick())
        await run_one(storage)
        assert await storage.push_task(tick("again")) == task_id
        assert len(storage) == 0
        assert await storage.vacuum() == 1
        assert await storage.push_task(tick("after vacuum")) == task_id
        assert await storage.list_tasks() == []
    # The vacuumed id is remembered across a restart (a new process).
    with JsonStorage(path) as storage:
        assert await storage.push_task(tick("after restart")) == task_id
        assert await storage.list_tasks() == []
        assert await storage.delete(task_id)  # forgets the id
        assert not await storage.delete(task_id)
        assert await storage.push_task(tick("after delete")) == task_id
        assert [t.args for t in await storage.list_tasks()] == ["after delete"]
    with JsonStorage(path) as storage:
        assert [t.args for t in await storage.list_tasks()] == ["after delete"]


async def test_json_remembers_the_last_vacuumed_ids_only(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_store, "VACUUMED_IDS", 2)
    with JsonStorage(tmp_path / "tasks.jsonl") as storage:
        for name in ("a", "b", "c"):
            await storage.push_task(tick(name, task_id=name))
            await run_one(storage)
        assert await storage.vacuum() == 3
        for name in ("a", "b", "c"):
            await storage.push_task(tick(f"{name} again", task_id=name))
        assert [t.args for t in await storage.list_tasks()] == ["a again"]


# -- SqliteStorage -------------------------------------------------------------------------------


async def test_sqlite_an_id_is_not_stored_again_until_deleted(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "tasks.db"
    async with SqliteStorage(path) as storage:
        task_id = await storage.push_task(tick())
        await run_one(storage)
        assert await storage.push_task(tick("again")) == task_id
        assert await storage.vacuum() == 1
        assert await storage.push_task(tick("after vacuum")) == task_id
        assert await storage.list_tasks() == []
    async with SqliteStorage(path) as storage:
        assert await storage.push_task(tick("after restart")) == task_id
        assert await storage.list_tasks() == []
        assert await storage.delete(task_id)  # forgets the id
        assert not await storage.delete(task_id)
        assert await storage.push_task(tick("after delete")) == task_id
        assert [t.args for t in await storage.list_tasks()] == ["after delete"]


async def test_sqlite_a_version_1_file_gains_the_vacuumed_ids(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "tasks.db"
    with sqlite3.connect(path) as raw:
        raw.executescript(MIGRATIONS[0])
        raw.execute("PRAGMA user_version = 1")
    raw.close()
    async with SqliteStorage(path) as storage:
        task_id = await storage.push_task(tick())
        await run_one(storage)
        assert await storage.vacuum() == 1
        assert await storage.push_task(tick("after vacuum")) == task_id
        assert await storage.list_tasks() == []
    with sqlite3.connect(path) as raw:
        assert (
            raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        )  # (every later migration applied too)
    raw.close()


async def test_sqlite_remembers_the_last_vacuumed_ids_only(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_sqlite_storage, "VACUUMED_IDS", 2)
    async with SqliteStorage(tmp_path / "tasks.db") as storage:
        for name in ("a", "b", "c"):
            await storage.push_task(tick(name, task_id=name))
            await run_one(storage)
        assert await storage.vacuum() == 3
        for name in ("a", "b", "c"):
            await storage.push_task(tick(f"{name} again", task_id=name))
        assert [t.args for t in await storage.list_tasks()] == ["a again"]
