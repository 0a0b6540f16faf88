"""Task names on PostgresStorage: stored by every push path, schema 1 migrated, claims filtered.

The mixed-version deploy itself (two pools on one schema) is the shared
conformance case (tests/test_conformance.py::TestPostgresStorageShared).
"""

from __future__ import annotations

import pytest
import trio

from pyapalis import BackgroundTask, CurrentTask, PostgresStorage, Status, TaskBuilder
from pyapalis.backends import FiltersTaskNames
from pyapalis.backends._postgres._schema import LATEST, MIGRATIONS
from tests._postgres import DSN, needs_postgres
from tests._postgres import pg_schema as pg_schema

pytestmark = needs_postgres


class Alpha(BackgroundTask):
    TASK_NAME = "alpha"
    n: int

    async def run(self, task: CurrentTask, app: None) -> None:
        pass


def _sql(statement: str) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(DSN, autocommit=True) as conn:
        cursor = conn.execute(statement)
        return cursor.fetchall() if cursor.description else []


async def test_a_schema_of_version_1_migrates_and_every_push_path_stores_the_name(
    pg_schema: str,
) -> None:
    quoted = f'"{pg_schema}"'
    _sql(f"CREATE SCHEMA {quoted}")
    _sql(MIGRATIONS[0].format(schema=quoted))
    _sql(
        f"CREATE TABLE {quoted}.schema_version (version integer PRIMARY KEY, "
        "applied_at timestamptz NOT NULL DEFAULT now()); "
        f"INSERT INTO {quoted}.schema_version (version) VALUES (1)"
    )
    _sql(
        f"INSERT INTO {quoted}.tasks (queue, id, args, run_at, created_at) "
        "VALUES ('default', '00-old', '\\x7b7d', 0, 0)"
    )
    async with PostgresStorage(DSN, schema=pg_schema) as storage:
        assert isinstance(storage, FiltersTaskNames)
        await Alpha(1).enqueue(storage)
        await storage.push_task(TaskBuilder({"task_name": "beta", "payload": {}}).build())
        await storage.push_bulk([{"task_name": "gamma", "payload": {}}, 2])
        await trio.to_thread.run_sync(storage.push_sync, {"task_name": "delta", "payload": {}})
        versions = _sql(f"SELECT max(version) FROM {quoted}.schema_version")
        assert versions == [(LATEST,)] and LATEST == 2
        stored = _sql(f"SELECT task_name FROM {quoted}.tasks ORDER BY seq")
        assert stored == [(None,), ("alpha",), ("beta",), ("gamma",), (None,), ("delta",)]
        indexes = {
            row[0]
            for row in _sql(f"SELECT indexname FROM pg_indexes WHERE schemaname = '{pg_schema}'")
        }
        assert "tasks_ready_named" in indexes


async def test_a_view_takes_only_its_names_and_a_plain_handle_takes_everything(
    pg_schema: str,
) -> None:
    async with PostgresStorage(DSN, schema=pg_schema) as storage:
        with pytest.raises(ValueError, match=r"PostgresStorage\.only_task_names: at least one"):
            storage.only_task_names([])
        plain_id = await storage.push("plain")
        beta_id = await storage.push_task(TaskBuilder({"task_name": "beta", "payload": {}}).build())
        alpha_id = await Alpha(2).enqueue(storage)
        view = storage.only_task_names({"alpha"})
        assert view.task_names == frozenset({"alpha"}) and storage.task_names is None
        assert (
            repr(view)
            == f"PostgresStorage(schema={pg_schema!r}, queue='default', task_names=['alpha'])"
        )
        task = await view.take()
        assert task.parts.task_id == alpha_id
        await view.ack(task, Status.Done, None, None)
        taken = [await storage.take(), await storage.take()]
        assert [t.parts.task_id for t in taken] == [plain_id, beta_id]
        for one in taken:
            await storage.ack(one, Status.Done, None, None)
