"""SqliteStorage: the file, the schema, the capabilities, faults, and typed tasks on it.

The delivery model itself (claims, fenced acks, leases) is tested on a fake
store in tests/test_leases.py and across processes by the shared conformance
cases (tests/test_conformance.py); the crash soak is tests/test_sqlite_soak.py.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from pyapalis import (
    BackgroundTask,
    CodecError,
    CurrentTask,
    SqliteStorage,
    Status,
    StorageError,
    TaskBuilder,
    TaskHash,
    TaskId,
    WorkerBuilder,
    WorkerContext,
    WorkerPool,
)
from pyapalis.backends import WorkerInfo
from pyapalis.backends._sqlite._schema import SCHEMA_VERSION
from pyapalis.testing import WallClock


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "tasks.db"


async def _drain(storage: SqliteStorage, handler: Any, count: int, **options: Any) -> Any:
    """Run a worker until ``count`` executions happened (then let the acks land)."""
    seen: list[Any] = []
    done = trio.Event()

    async def wrapped(item: Any, ctx: WorkerContext) -> Any:
        seen.append(item)
        if len(seen) == count:
            done.set()
        return await handler(item)

    builder = WorkerBuilder("drain").backend(storage)
    if "concurrency" in options:
        builder = builder.concurrency(options["concurrency"])
    worker = builder.build(wrapped)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await done.wait()
        await trio.sleep(0.1)
        worker.context.stop()
    return seen


async def _echo(item: Any) -> Any:
    return item


# -- the file ---------------------------------------------------------------------------


async def test_construction_does_no_io_and_opening_sets_up_the_file(path: Path) -> None:
    storage = SqliteStorage(path, synchronous="full")
    assert not path.exists()
    async with storage:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        await storage.push(1)  # the WAL and shared-memory files exist once written
        for extra in ("-wal", "-shm"):
            assert stat.S_IMODE(Path(f"{path}{extra}").stat().st_mode) == 0o600
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    raw.close()


async def test_synchronous_is_applied_and_checked(path: Path) -> None:
    for value, level in (("NORMAL", 1), ("FULL", 2)):
        async with SqliteStorage(path, synchronous=value) as storage:
            pragma = await storage._db.run(
                "test", lambda c: c.execute("PRAGMA synchronous").fetchone()[0]
            )
            assert pragma == level
    with pytest.raises(
        ValueError, match="synchronous must be one of NORMAL, FULL, EXTRA, got 'OFF'"
    ):
        SqliteStorage(path, synchronous="OFF")
    with pytest.raises(ValueError, match="lease must be a positive number of seconds"):
        SqliteStorage(path, lease=0)
    with pytest.raises(ValueError, match="queue must be a non-empty str"):
        SqliteStorage(path, queue="")


def test_schema_migration_is_idempotent_across_concurrent_openers(path: Path) -> None:
    errors: list[BaseException] = []

    def open_once() -> None:
        async def run() -> None:
            async with SqliteStorage(path, busy_timeout=10) as storage:
                await storage.push("x")

        try:
            trio.run(run)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=open_once) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT count(*) FROM tasks").fetchone()[0] == 6
    raw.close()


async def test_a_file_from_a_newer_version_is_refused(path: Path) -> None:
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(
        StorageError,
        match=rf"schema version {SCHEMA_VERSION + 1}, newer than .* \({SCHEMA_VERSION}\); upgrade",
    ):
        async with SqliteStorage(path):
            pass


async def test_a_file_that_is_not_sqlite_is_a_clear_storage_error(path: Path) -> None:
    path.write_bytes(b"this is not a database, just text " * 200)
    with pytest.raises(StorageError, match=r"tasks.db: opening the file: the file is not a SQLite"):
        async with SqliteStorage(path):
            pass


async def test_a_database_locked_past_the_busy_timeout_is_a_storage_error(path: Path) -> None:
    async with SqliteStorage(path, busy_timeout=0.05) as storage:
        locker = sqlite3.connect(path, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(StorageError, match="stayed locked by another connection"):
                await storage.push(1)
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        await storage.push(2)  # usable again


async def test_a_full_disk_is_a_storage_error_and_nothing_is_half_written(path: Path) -> None:
    async with SqliteStorage(path) as storage:
        await storage.push("small")
        # Cap the file at its current size: the next growth fails as on a full disk.
        await storage._db.run(
            "test",
            lambda c: c.execute(
                "PRAGMA max_page_count = " + str(c.execute("PRAGMA page_count").fetchone()[0])
            ),
        )
        with pytest.raises(StorageError, match="the disk is full"):
            await storage.push_bulk(["x" * 4000] * 50)
        assert len(await storage.list_tasks(page_size=1000)) == 1


async def test_a_worker_backs_off_while_the_file_is_locked_and_goes_on(
    path: Path, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    storage = SqliteStorage(path, busy_timeout=0)
    ids = await storage.push_bulk(range(5))
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    seen: list[int] = []

    async def handler(item: int) -> None:
        seen.append(item)

    worker = WorkerBuilder("w").backend(storage).build(handler)
    with caplog.at_level(logging.WARNING, logger="pyapalis.leases"):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker.run)
            await trio.sleep(3)
            assert seen == []  # the claims failed, and are retried
            locker.execute("ROLLBACK")
            locker.close()
            await trio.sleep(10)
            worker.context.stop()
    assert sorted(seen) == list(range(5))
    assert {r.status for r in await storage.check_status(ids)} == {Status.Done}
    assert "stayed locked by another connection" in caplog.text
    await storage.aclose()


# -- tasks ------------------------------------------------------------------------------


async def test_priorities_then_run_at_then_push_order(
    path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with SqliteStorage(path) as storage:
        # All due long ago (a task stamped "now" may be a millisecond in the
        # future for a claim in the same millisecond: run_at rounds up).
        for args, priority, run_at in [
            ("a", 0, 100.0),
            ("high", 5, 100.0),
            ("b", 0, 100.0),
            ("earlier", 0, 1.0),
            ("higher", 9, 100.0),
        ]:
            await storage.push_task(
                TaskBuilder(args).priority(priority).run_at_timestamp(run_at).build()
            )
        seen = await _drain(storage, _echo, 5)
    assert seen == ["higher", "high", "earlier", "a", "b"]


@pytest.fixture
def wall(monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock) -> WallClock:
    clock = WallClock(clock=autojump_clock)
    monkeypatch.setattr("time.time", clock)
    return clock


async def test_run_at_in_milliseconds_is_never_early(
    path: Path, autojump_clock: trio.testing.MockClock, wall: WallClock
) -> None:
    async with SqliteStorage(path) as storage:
        due = wall.after(2.0004)  # a fraction of a millisecond: rounded up, never down
        await storage.push_task(TaskBuilder("later").run_at_timestamp(due).build())
        ran: list[float] = []

        async def handler(item: str) -> None:
            ran.append(wall())

        await _drain(storage, handler, 1)
        [task] = await storage.list_tasks()
    assert due <= ran[0] <= due + 0.002
    assert task.parts.run_at == pytest.approx(due, abs=0.001)


async def test_ids_and_existing_ids(path: Path) -> None:
    async with SqliteStorage(path) as storage:
        first = await storage.push_task(TaskBuilder("one").id("fixed").build())
        again = await storage.push_task(TaskBuilder("two").id("fixed").build())
        assert first == again == TaskId("fixed")
        task = await storage.fetch_by_id("fixed")
        assert task is not None and task.args == "one"  # nothing stored the second time
        [generated] = await storage.push_bulk(["x"])
        assert len(str(generated)) == 26  # a ULID
        assert await storage.fetch_by_id("missing") is None


async def test_named_queues_share_the_file_not_the_tasks(
    path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with SqliteStorage(path) as storage:
        emails = storage.queue("emails")
        await storage.push("default-task")
        await emails.push("email-task")
        assert emails.queue_name == "emails"
        assert await _drain(emails, _echo, 1) == ["email-task"]
        assert [t.args for t in await storage.list_tasks(Status.Pending)] == ["default-task"]
        emails.close()


async def test_capabilities(path: Path, autojump_clock: trio.testing.MockClock) -> None:
    async with SqliteStorage(path) as storage:
        ids = await storage.push_bulk(range(25))
        page = await storage.list_tasks(page=2, page_size=10)
        assert [t.args for t in page] == list(range(10, 20))
        assert await storage.list_tasks(page=4, page_size=10) == []
        with pytest.raises(ValueError, match="page must be an int >= 1"):
            await storage.list_tasks(page=0)
        task = await storage.fetch_by_id(ids[0])
        assert task is not None
        task.parts.priority = 7
        task.parts.max_attempts = 4
        await storage.update(task)
        updated = await storage.fetch_by_id(ids[0])
        assert updated is not None
        assert (updated.parts.priority, updated.parts.max_attempts) == (7, 4)
        await storage.reschedule(updated, 60)
        assert await storage.delete(ids[1]) is True
        assert await storage.delete(ids[1]) is False
        with pytest.raises(KeyError, match="is not in"):
            await storage.check_status([ids[1]])

        async def fail_odd(item: int) -> int:
            if item % 2:
                raise ValueError("odd")
            return item

        await _drain(storage, fail_odd, 23)
        statuses = {r.task_id: r.status for r in await storage.check_status(ids[2:])}
        assert statuses[ids[3]] is Status.Failed and statuses[ids[2]] is Status.Done
        assert await storage.resume_by_id(ids[3]) is True
        assert await storage.resume_by_id(ids[2]) is False  # Done: not resumable
        [resumed] = await storage.check_status([ids[3]])
        assert resumed.status is Status.Pending
        assert await storage.vacuum() == 22
        assert {t.parts.task_id for t in await storage.list_tasks(page_size=100)} == {
            ids[0],
            ids[3],
        }
        await storage.register_worker("web")
        [info] = await storage.list_workers()
        assert isinstance(info, WorkerInfo)
        assert (info.name, info.pid) == ("web", os.getpid())


async def test_a_result_the_codec_cannot_encode_fails_the_task(
    path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with SqliteStorage(path) as storage:
        task_id = await storage.push("x")

        async def handler(item: str) -> object:
            return object()

        await _drain(storage, handler, 1)
        [result] = await storage.check_status([task_id])
        assert result.status is Status.Failed
        with pytest.raises(Exception, match="CodecError"):
            result.unwrap()
        with pytest.raises(CodecError):
            await storage.push(object())


async def test_an_undecodable_stored_task_fails_and_the_worker_goes_on(
    path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with SqliteStorage(path) as storage:
        bad, _ = await storage.push_bulk(["bad", "good"])
        await storage._db.run(
            "test", lambda c: c.execute("UPDATE tasks SET args = x'ff' WHERE id = ?", (str(bad),))
        )
        assert await _drain(storage, _echo, 1) == ["good"]
        [result] = await storage.check_status([bad])
        assert result.status is Status.Failed
        with pytest.raises(Exception, match="cannot decode the stored task"):
            result.unwrap()


# -- producers and wake-ups ------------------------------------------------------------


async def test_push_sync_from_a_thread_wakes_an_idle_worker(path: Path) -> None:
    async with SqliteStorage(path) as storage:
        got = trio.Event()
        seen: list[str] = []

        async def handler(item: str) -> None:
            seen.append(item)
            got.set()

        worker = WorkerBuilder("w").backend(storage).build(handler)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker.run)
            task_id = await trio.to_thread.run_sync(storage.push_sync, "from a thread")
            with trio.fail_after(10):
                await got.wait()
            worker.context.stop()
        assert seen == ["from a thread"]
        assert isinstance(task_id, TaskId)
        with pytest.raises(RuntimeError, match=r"would block the trio thread: use await push\(\)"):
            storage.push_sync("inside trio")


async def test_a_worker_idle_for_a_long_virtual_time_still_picks_up_work(
    path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with SqliteStorage(path, poll=600, lease=600) as storage:
        started: list[float] = []

        async def handler(item: int) -> None:
            started.append(trio.current_time())

        worker = WorkerBuilder("w").backend(storage).heartbeat(600).build(handler)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker.run)
            for hours in (1, 24):
                await trio.sleep(hours * 3600)
                pushed = trio.current_time()
                await storage.push(hours)
                await trio.sleep(0.001)
                assert started[-1] == pushed
            worker.context.stop()


# -- typed tasks ------------------------------------------------------------------------


class Report(BackgroundTask):
    TASK_NAME = "report"
    MAX_RETRIES = 0
    day: str

    async def run(self, task: CurrentTask, app: Any) -> str:
        return f"report {self.day}"

    def uniq(self) -> TaskHash | None:
        return TaskHash.of(self.day)


async def test_typed_tasks_and_uniqueness_across_handles(
    path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with SqliteStorage(path) as storage, SqliteStorage(path) as other:
        first = await Report("monday").enqueue(storage)
        # Another handle (as another process would) meets the same unique key.
        assert await Report("monday").enqueue(other) == first
        pool = WorkerPool(storage).register_task_type(Report)

        async def until_done() -> None:
            # RemoveDone (the default on a backend that can delete): gone once Done.
            while await storage.fetch_by_id(first) is not None:
                await trio.sleep(0.01)

        await pool.run_until(until_done)
        second = await Report("monday").enqueue(other)  # finished: the key is free again
        assert second != first


# -- leases on the real store -----------------------------------------------------------


async def test_heartbeats_keep_a_long_task_from_a_recovering_worker(
    path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with SqliteStorage(path, lease=3.0) as storage:
        task_id = await storage.push("long")
        runs: list[str] = []

        async def slow(item: str, ctx: WorkerContext) -> None:
            runs.append(ctx.name)
            await trio.sleep(20)  # far past the lease: only heartbeats keep it

        owner = WorkerBuilder("owner").backend(storage).build(slow)
        other = WorkerBuilder("other").backend(storage).build(slow)  # recovers every 1.5 s
        async with trio.open_nursery() as nursery:
            nursery.start_soon(owner.run)
            await trio.sleep(0.5)
            nursery.start_soon(other.run)
            await trio.sleep(25)
            owner.context.stop()
            other.context.stop()
        assert runs == ["owner"]
        [result] = await storage.check_status([task_id])
        assert result.status is Status.Done


async def test_resume_abandoned_brings_back_a_dead_processs_tasks_at_once(
    path: Path, tmp_path: Path
) -> None:
    import json
    import signal
    import subprocess
    import sys

    log = tmp_path / "runs.log"
    config = {
        "factory": "pyapalis.backends._open:open_backend",
        "url": f"sqlite://{path}?lease=600",  # no lease will expire during the test
        "name": "doomed",
        "log": str(log),
        "ready": str(tmp_path / "ready"),
        "concurrency": 2,
        "hang": True,
    }
    async with SqliteStorage(path, lease=600) as storage:
        ids = await storage.push_bulk(["a", "b"])
        child = subprocess.Popen(
            [sys.executable, "-m", "pyapalis.testing._shared_child", json.dumps(config)]
        )
        try:
            with trio.fail_after(60):
                while not log.exists() or len(log.read_text().splitlines()) < 2:
                    await trio.sleep(0.01)
            # Alive: its tasks are not abandoned.
            assert await storage.resume_abandoned() == 0
            child.send_signal(signal.SIGKILL)
            child.wait()
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        assert await storage.resume_abandoned() == 2  # its pid is gone: at once, no lease wait
        tasks = [await storage.fetch_by_id(task_id) for task_id in ids]
        assert [(t.parts.status, t.parts.attempt.current()) for t in tasks if t] == [
            (Status.Pending, 1),
            (Status.Pending, 1),
        ]


def test_push_sync_from_asyncio_and_plain_code(path: Path) -> None:
    import asyncio

    storage = SqliteStorage(path)
    first = storage.push_sync("plain")  # no event loop at all: opens the file itself

    async def view() -> TaskId:
        # In an asyncio app, off the event loop (a commit blocks for a moment).
        return await asyncio.to_thread(storage.push_sync, {"from": "asyncio"})

    second = asyncio.run(view())
    third = storage.push_task_sync(TaskBuilder("task").priority(3).build())
    storage.close()
    raw = sqlite3.connect(path)
    rows = raw.execute("SELECT id, priority FROM tasks ORDER BY rowid").fetchall()
    raw.close()
    assert rows == [(str(first), 0), (str(second), 0), (str(third), 3)]
    with pytest.raises(StorageError, match="closed"):
        storage.push_sync("after close")


async def test_acks_wake_result_waiters_not_idle_workers(
    path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with SqliteStorage(path) as storage:
        db = storage._db
        work, results = db.work.generation, db.results.generation
        ids = await storage.push_bulk(range(50))  # one commit: one work poke
        assert (db.work.generation, db.results.generation) == (work + 1, results)
        await _drain(storage, _echo, 50)
        # 50 acks, in a few commits: result waiters were poked, idle takers never.
        assert db.work.generation == work + 1
        assert db.results.generation > results
        assert [r.unwrap() for r in await storage.check_status(ids)] == list(range(50))


def test_opening_waits_for_another_connection_creating_the_file(path: Path) -> None:
    # Another opener holds the fresh file's write lock (as while it creates or
    # migrates the schema): switching to WAL is refused at once by SQLite,
    # without its busy handler; the opener must wait like any statement does.
    import sqlite3
    import threading

    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("CREATE TABLE squatter (x)")
    release = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    release.start()
    try:
        task_id = SqliteStorage(path).push_sync("waited")
    finally:
        release.join()
        other.close()
    assert task_id
