"""Task names on SqliteStorage: stored at push, migrated into older files, filtered in claims.

The mixed-version deploy itself (two pools on one file) is the shared
conformance case (``pyapalis.testing._shared_names``, run by
tests/test_conformance.py::TestSqliteStorageShared).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest
import trio

from pyapalis import BackgroundTask, CurrentTask, SqliteStorage, Status, TaskBuilder
from pyapalis.backends import FiltersTaskNames
from pyapalis.backends._kit._names import TYPED_INFO_KEY, check_task_names, task_name_of
from pyapalis.backends._sqlite._schema import MIGRATIONS, SCHEMA_VERSION
from pyapalis.backends._sqlite._store import _claim_sql


class Alpha(BackgroundTask):
    TASK_NAME = "alpha"
    n: int

    async def run(self, task: CurrentTask, app: None) -> None:
        pass


class Beta(BackgroundTask):
    TASK_NAME = "beta"
    n: int

    async def run(self, task: CurrentTask, app: None) -> None:
        pass


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "tasks.db"


def test_the_name_rule_and_the_name_checks() -> None:
    assert task_name_of({TYPED_INFO_KEY: {"task_name": "alpha", "uniq": "x"}}) == "alpha"
    for ctx in (None, "x", {}, {TYPED_INFO_KEY: "alpha"}, {TYPED_INFO_KEY: {"task_name": ""}}):
        assert task_name_of(ctx) is None
    assert task_name_of({TYPED_INFO_KEY: {"task_name": 3}}) is None
    assert check_task_names(["a", "b", "a"], "f") == frozenset({"a", "b"})
    with pytest.raises(ValueError, match="f: at least one task name is needed"):
        check_task_names([], "f")
    with pytest.raises(TypeError, match="f: names must be an iterable of task names, not one 'a'"):
        check_task_names("a", "f")
    with pytest.raises(TypeError, match="f: every task name must be a non-empty str, got 3"):
        check_task_names(["a", 3], "f")  # type: ignore[list-item]


async def test_a_view_takes_only_its_names_and_a_plain_handle_takes_everything(
    path: Path,
) -> None:
    async with SqliteStorage(path) as storage:
        assert isinstance(storage, FiltersTaskNames)
        with pytest.raises(ValueError, match=r"SqliteStorage\.only_task_names: at least one"):
            storage.only_task_names(set())
        plain_id = await storage.push("plain")
        beta_id = await Beta(1).enqueue(storage)
        alpha_id = await Alpha(2).enqueue(storage)
        async with storage.only_task_names({"alpha"}) as view:
            assert view.task_names == frozenset({"alpha"})
            assert (
                repr(view) == f"SqliteStorage({str(path)!r}, queue='default', task_names=['alpha'])"
            )
            task = await view.take()
            assert task.parts.task_id == alpha_id
            assert view.take_nowait() is None
            await view.ack(task, Status.Done, None, None)
        assert storage.task_names is None
        # The unfiltered handle takes the rest, in push order (plain tasks too).
        taken = [await storage.take(), await storage.take()]
        assert [t.parts.task_id for t in taken] == [plain_id, beta_id]
        for task in taken:
            await storage.ack(task, Status.Done, None, None)


async def test_update_keeps_the_stored_name_in_step_with_the_metadata(path: Path) -> None:
    async with SqliteStorage(path) as storage:
        task_id = await Beta(1).enqueue(storage)
        task = await storage.fetch_by_id(task_id)
        assert task is not None
        task.parts.ctx = {TYPED_INFO_KEY: {"task_name": "alpha"}}
        await storage.update(task)
        async with storage.only_task_names(["alpha"]) as view:
            with trio.fail_after(5):
                taken = await view.take()
            assert taken.parts.task_id == task_id
            await view.ack(taken, Status.Done, None, None)


async def test_a_file_of_the_previous_version_migrates_on_open_and_its_tasks_filter(
    path: Path,
) -> None:
    raw = sqlite3.connect(path)
    for migration in MIGRATIONS[:2]:
        raw.executescript(migration)
    raw.execute("PRAGMA user_version = 2")

    def row(task_id: str, meta: bytes | None, status: str = "Pending") -> tuple[object, ...]:
        return (task_id, "default", orjson.dumps({"task_name": "x", "payload": {}}), meta, status)

    def meta(name: object) -> bytes:
        return orjson.dumps({TYPED_INFO_KEY: {"task_name": name, "created_at": 1.0}})

    raw.executemany(
        "INSERT INTO tasks (id, queue, args, meta, status, run_at) VALUES (?, ?, ?, ?, ?, 0)",
        [
            row("01-plain", None),
            row("02-beta", meta("beta")),
            row("03-alpha", meta("alpha")),
            row("04-done", meta("alpha"), "Done"),  # finished: left unnamed
            row("05-odd", meta(7)),  # not a name
            row("06-not-json", b"\x80\x81"),  # another codec's bytes
        ],
    )
    raw.commit()
    raw.close()
    async with SqliteStorage(path) as storage:
        raw = sqlite3.connect(path)
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        names = dict(raw.execute("SELECT id, task_name FROM tasks ORDER BY id").fetchall())
        assert names == {
            "01-plain": None,
            "02-beta": "beta",
            "03-alpha": "alpha",
            "04-done": None,
            "05-odd": None,
            "06-not-json": None,
        }
        indexes = {r[1] for r in raw.execute("PRAGMA index_list(tasks)").fetchall()}
        assert "tasks_ready_named" in indexes
        raw.close()
        async with storage.only_task_names(["alpha"]) as view:
            task = await view.take()
            assert str(task.parts.task_id) == "03-alpha"
            assert view.take_nowait() is None
            await view.ack(task, Status.Done, None, None)
        assert (await storage.fetch_by_id("02-beta")).parts.status is Status.Pending  # type: ignore[union-attr]


def test_the_claim_of_one_name_reads_the_named_index_in_claim_order(path: Path) -> None:
    raw = sqlite3.connect(path)
    for migration in MIGRATIONS:
        raw.executescript(migration)
    claim, _ = _claim_sql(1)
    plan = " | ".join(
        str(step[3])
        for step in raw.execute(
            "EXPLAIN QUERY PLAN " + claim, ("owner", 0, "default", 0, "alpha", 10)
        ).fetchall()
    )
    raw.close()
    assert "USING INDEX tasks_ready_named" in plan, plan
    assert "TEMP B-TREE" not in plan, plan  # no sort: the index gives the claim order


async def test_a_typed_task_pushed_with_a_builder_is_named_too(path: Path) -> None:
    async with SqliteStorage(path) as storage:
        task = (
            TaskBuilder({"task_name": "alpha", "payload": {"n": 1}})
            .with_ctx({TYPED_INFO_KEY: {"task_name": "alpha"}})
            .build()
        )
        await storage.push_task(task)
        await storage.push_bulk([1, 2])
        raw = sqlite3.connect(path)
        stored = sorted(
            raw.execute("SELECT task_name FROM tasks").fetchall(), key=lambda r: r[0] or ""
        )
        raw.close()
        assert stored == [(None,), (None,), ("alpha",)]
