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

from pyapalis import BackgroundTask, CurrentTask, SqliteStorage, Status, TaskBuilder
from pyapalis.backends import FiltersTaskNames
from pyapalis.backends._kit._names import check_task_names, task_name_of
from pyapalis.backends._sqlite._schema import MIGRATIONS, SCHEMA_VERSION
from pyapalis.backends._sqlite._store import claim_statements


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
    assert task_name_of({"task_name": "alpha", "payload": {}}) == "alpha"
    assert task_name_of({"task_name": "alpha"}) == "alpha"  # (the pool fails it: no payload)
    for args in (None, "alpha", ["alpha"], {}, {"task_name": ""}, {"task_name": 3}):
        assert task_name_of(args) is None
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


async def test_a_file_of_the_previous_version_migrates_on_open_and_its_tasks_filter(
    path: Path,
) -> None:
    raw = sqlite3.connect(path)
    for migration in MIGRATIONS[:2]:
        raw.executescript(migration)
    raw.execute("PRAGMA user_version = 2")

    def row(task_id: str, args: bytes, status: str = "Pending") -> tuple[object, ...]:
        return (task_id, "default", args, status)

    def envelope(name: object) -> bytes:
        return orjson.dumps({"task_name": name, "payload": {"n": 1}})

    raw.executemany(
        "INSERT INTO tasks (id, queue, args, status, run_at) VALUES (?, ?, ?, ?, 0)",
        [
            row("01-plain", orjson.dumps({"n": 1})),
            row("02-beta", envelope("beta")),
            row("03-alpha", envelope("alpha")),
            row("04-done", envelope("alpha"), "Done"),  # finished: left unnamed
            row("05-odd", envelope(7)),  # not a name
            row("06-empty", envelope("")),
            row("07-list", orjson.dumps(["task_name"])),
            row("08-not-json", b"\x80\x81"),  # another codec's bytes
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
            "06-empty": None,
            "07-list": None,
            "08-not-json": None,
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
    claim, _ = claim_statements(1)
    plan = " | ".join(
        str(step[3])
        for step in raw.execute(
            "EXPLAIN QUERY PLAN " + claim, ("owner", 0, "default", 0, "alpha", 10)
        ).fetchall()
    )
    raw.close()
    assert "USING INDEX tasks_ready_named" in plan, plan
    assert "TEMP B-TREE" not in plan, plan  # no sort: the index gives the claim order


async def test_every_push_path_stores_the_name_of_an_envelope(path: Path) -> None:
    async with SqliteStorage(path) as storage:
        await Alpha(1).enqueue(storage)
        await storage.push_task(TaskBuilder({"task_name": "beta", "payload": {}}).build())
        await storage.push_bulk([{"task_name": "gamma", "payload": {}}, 2])
        raw = sqlite3.connect(path)
        stored = raw.execute("SELECT task_name FROM tasks ORDER BY rowid").fetchall()
        raw.close()
        assert stored == [("alpha",), ("beta",), ("gamma",), (None,)]
