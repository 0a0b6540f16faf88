"""JsonStorage.delete: forgetting one task durably (what WorkerPool retention calls).

What a delete does, as these tests pin it down:

* a finished (Done, Failed, Killed), Pending (due or scheduled) or abandoned
  task is removed; ``delete`` returns True once a ``{"op": "delete"}`` line is
  fsynced, and False for an id the file does not hold;
* a task running in this process is refused with :class:`StorageError`
  naming it (its worker owns it), as ``reschedule`` does;
* afterwards ``fetch_by_id`` returns None; ``check_status``, ``wait_for`` and
  ``wait_for_single`` raise ``KeyError`` as for any unknown id, and a caller
  already waiting for the task gets a ``KeyError`` saying it was deleted;
* while the delete is on its way to the disk nothing else may be written about
  the task (update, reschedule, resume_by_id refuse), a second delete waits for
  the first and returns False, and a ``push_task`` of the same id stores a new
  task after it;
* replay, compaction and vacuum drop deleted tasks and their records; a SIGKILL
  at any instant leaves each task either whole or gone, never a broken file.

Time-dependent tests run in virtual time (``autojump_clock``); the SIGKILL and
real-clock tests wait on process output and on the disk, never on sleeps.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import aclosing
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
import trio.testing

from pyapalis._errors import AbortError, StorageError
from pyapalis._implementation import Task, TaskBuilder, TaskId
from pyapalis._status import Status
from pyapalis._worker._context import WorkerContext
from pyapalis._worker._events import Event, EventKind
from pyapalis._worker._worker import WorkerBuilder
from pyapalis.backends._json._journal import HEADER
from pyapalis.backends._json._storage import JsonStorage

HEADER_LINE = orjson.dumps(HEADER) + b"\n"
REPO = str(Path(__file__).resolve().parent.parent)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "tasks.jsonl"


@pytest.fixture
def storage(path: Path) -> Any:
    with JsonStorage(path) as storage:
        yield storage


def write_journal(path: Path, *records: dict[str, Any]) -> None:
    path.write_bytes(HEADER_LINE + b"".join(orjson.dumps(r) + b"\n" for r in records))


def push_record(task_id: str, args: Any, **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"op": "push", "id": task_id, "queue": "default"}
    record.update(args=orjson.dumps(args).decode(), run_at=time.time() - 1, **fields)
    return record


def records_of(path: Path) -> list[dict[str, Any]]:
    """Every record in the file after the header, batches flattened."""
    records = []
    for line in path.read_bytes().splitlines()[1:]:
        record = orjson.loads(line)
        records.extend(record["records"] if record["op"] == "batch" else [record])
    return records


async def finish(storage: JsonStorage, executions: int) -> list[str]:
    """Run a worker until ``executions`` executions ended: "ok" is Done, "bad" Failed,
    "abort" Killed. Returns the items it ran, in order."""
    ran: list[str] = []
    ended = 0

    async def handler(item: str) -> str:
        ran.append(item)
        if item == "bad":
            raise ValueError("bad")
        if item == "abort":
            raise AbortError("abort")
        return item.upper()

    def on_event(ctx: WorkerContext, event: Event) -> None:
        nonlocal ended
        if event.kind in (EventKind.Success, EventKind.Error):
            ended += 1
            if ended == executions:
                ctx.stop()

    await WorkerBuilder("w").backend(storage).on_event(on_event).build(handler).run()
    return ran


async def gone(storage: JsonStorage, task_id: TaskId | str) -> None:
    """Assert every read treats ``task_id`` as an id the file does not hold."""
    assert await storage.fetch_by_id(task_id) is None
    for call in (
        lambda: storage.check_status([task_id]),
        lambda: storage.wait_for_single(task_id),
    ):
        with pytest.raises(KeyError, match="unknown task id"):
            await call()
    with pytest.raises(KeyError, match="wait_for: unknown task id"):
        async with aclosing(storage.wait_for([task_id])) as results:
            async for _ in results:
                pass
    assert str(task_id) not in {
        str(t.parts.task_id) for t in await storage.list_tasks(None, 1, 1000)
    }


# -- what can be deleted ----------------------------------------------------------------------


async def test_finished_and_pending_tasks_are_deleted(
    storage: JsonStorage, autojump_clock: trio.testing.MockClock
) -> None:
    ok, bad, abort = await storage.push_bulk(["ok", "bad", "abort"])
    assert await finish(storage, 3) == ["ok", "bad", "abort"]
    statuses = [r.status for r in await storage.check_status([ok, bad, abort])]
    assert statuses == [Status.Done, Status.Failed, Status.Killed]
    due = await storage.push("due")
    later = await storage.push_task(TaskBuilder("later").run_after(60).build())
    kept = await storage.push("kept")
    assert len(storage) == 3

    for task_id in (ok, bad, abort, due, later):
        assert await storage.delete(task_id) is True
        await gone(storage, task_id)
    assert len(storage) == 1
    assert [t.args for t in await storage.list_tasks()] == ["kept"]

    # The deleted Pending tasks never run, even once due: only "kept" is left.
    start = trio.current_time()
    assert await finish(storage, 1) == ["kept"]
    with trio.move_on_after(120):
        await storage.take()
        raise AssertionError("a deleted task was handed out")
    assert trio.current_time() - start == 120
    assert (await storage.wait_for_single(kept)).unwrap() == "KEPT"


async def test_a_task_running_in_this_process_is_refused(
    storage: JsonStorage, autojump_clock: trio.testing.MockClock
) -> None:
    task_id = await storage.push("x")
    task = storage.take_nowait()
    assert task is not None and task.parts.task_id == task_id
    with pytest.raises(
        StorageError,
        match=f"^JsonStorage.delete: task {task_id} is running in this process; "
        f"its worker owns it$",
    ):
        await storage.delete(task_id)
    # Its worker settles it as usual; then it can be deleted.
    await storage.ack(task, Status.Done, "result", None)
    assert (await storage.wait_for_single(task_id)).unwrap() == "result"
    assert await storage.delete(str(task_id)) is True
    await gone(storage, task_id)


async def test_an_abandoned_task_can_be_deleted(
    path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Running in a process that is gone (the file's lock proves it): its worker cannot ack."""
    lease = time.time() + 3600
    write_journal(
        path,
        push_record("dead", "dead"),
        {"op": "take", "id": "dead", "attempts": 1, "lease": lease, "owner": "gone"},
        push_record("alive", "alive"),
    )
    with JsonStorage(path) as storage:
        [result] = await storage.check_status(["dead"])
        assert result.status is Status.Running
        assert await storage.delete("dead") is True
        assert await storage.resume_abandoned() == 0, "nothing left to resume"
        assert await finish(storage, 1) == ["alive"]
    with JsonStorage(path) as storage:
        await gone(storage, "dead")
        assert await storage.resume_abandoned() == 0


async def test_unknown_ids_return_false_and_write_nothing(
    path: Path, storage: JsonStorage, autojump_clock: trio.testing.MockClock
) -> None:
    task_id = await storage.push(1)
    before = path.read_bytes()
    assert await storage.delete("ghost") is False
    assert await storage.delete(TaskId.generate()) is False
    assert path.read_bytes() == before
    assert await storage.delete(task_id) is True
    assert await storage.delete(task_id) is False, "already deleted"
    assert [r["op"] for r in records_of(path)] == ["push", "delete"]


@pytest.mark.parametrize(
    ("bad", "error", "shown"),
    [
        (None, TypeError, "NoneType None"),
        ("", ValueError, "str ''"),
        (5, TypeError, "int 5"),
        (b"id", TypeError, "bytes b'id'"),
        (["a"], TypeError, "list ['a']"),
    ],
)
async def test_bad_ids_are_refused(
    storage: JsonStorage,
    bad: Any,
    error: type[Exception],
    shown: str,
    autojump_clock: trio.testing.MockClock,
) -> None:
    message = f"delete: task_id must be a TaskId or a non-empty str, got {shown}"
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        await storage.delete(bad)


async def test_a_closed_storage_refuses(path: Path, autojump_clock: trio.testing.MockClock) -> None:
    storage = JsonStorage(path)
    task_id = await storage.push(1)
    storage.close()
    with pytest.raises(StorageError, match="is closed"):
        await storage.delete(task_id)


async def test_any_queue_of_the_file(
    storage: JsonStorage, autojump_clock: trio.testing.MockClock
) -> None:
    with storage.queue("emails") as emails:
        mail = await emails.push("mail")
        assert await storage.delete(mail) is True
        assert await emails.fetch_by_id(mail) is None
        assert len(emails) == 0


# -- durability -------------------------------------------------------------------------------


async def test_deletions_survive_reopening_and_the_rest_is_intact(
    path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    storage = JsonStorage(path)
    ids = await storage.push_bulk(["ok", "bad", "abort", "ok"])
    await finish(storage, 4)
    pending = await storage.push_task(
        TaskBuilder({"n": 1}).id("pending").attempts(3).priority(2).run_after(30).build()
    )
    doomed = await storage.push("doomed")
    before = {str(t.parts.task_id): t for t in await storage.list_tasks(None, 1, 100)}
    results = await storage.check_status([*ids, pending])
    for task_id in (ids[0], ids[2], doomed):
        assert await storage.delete(task_id)
    storage.close()

    with JsonStorage(path) as reopened:
        for task_id in (ids[0], ids[2], doomed):
            await gone(reopened, task_id)
        kept = [ids[1], ids[3], pending]
        after = {str(t.parts.task_id): t for t in await reopened.list_tasks(None, 1, 100)}
        assert list(after) == [str(task_id) for task_id in kept]

        def described(task: Task) -> tuple[Any, ...]:
            parts = task.parts
            return (
                task.args,
                parts.status,
                parts.attempt.current(),
                parts.run_at,
                parts.max_attempts,
                parts.priority,
            )

        assert {k: described(t) for k, t in after.items()} == {
            k: described(before[k]) for k in after
        }
        reported = await reopened.check_status(kept)
        assert [(r.status, repr(r.result)) for r in reported] == [
            (r.status, repr(r.result)) for r in (results[1], results[3], results[4])
        ]
        assert len(reopened) == 1


async def test_delete_returns_only_once_its_record_is_fsynced(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real clock, fsync in a worker thread held shut: delete waits for the disk."""
    with JsonStorage(path) as storage:
        task_id = await storage.push("x")
        storage._store.journal.inline_sync = False
        gate = threading.Event()
        synced: list[bytes] = []
        real_fdatasync = os.fdatasync

        def held_fdatasync(fd: int) -> None:
            assert gate.wait(10), "the test never opened the gate"
            real_fdatasync(fd)
            synced.append(path.read_bytes())

        monkeypatch.setattr(os, "fdatasync", held_fdatasync)
        returned: list[bool] = []

        async def delete() -> None:
            returned.append(await storage.delete(task_id))

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(delete)
                await trio.testing.wait_all_tasks_blocked()
                assert returned == []
                assert b'"op":"delete"' in path.read_bytes(), "written, not yet synced"
                assert await storage.fetch_by_id(task_id) is not None, "not gone before the disk"
                gate.set()
        assert returned == [True]
        assert len(synced) == 1 and b'"op":"delete"' in synced[0]
        assert await storage.fetch_by_id(task_id) is None


async def test_nothing_else_is_written_about_a_task_being_deleted(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a delete waits for the disk: update, reschedule and resume_by_id refuse; a
    second delete waits for the first and returns False; push_task of the id stores a
    new task after the delete. The file replays to the same state."""
    with JsonStorage(path) as storage:
        task_id = await storage.push_task(TaskBuilder("old").id("t").build())
        await storage.push_task(TaskBuilder("bad").id("failed").build())
        await finish(storage, 1)  # "old" Done
        task = await storage.fetch_by_id(task_id)
        assert task is not None and task.parts.status is Status.Done
        storage._store.journal.inline_sync = False
        gate = threading.Event()
        real_fdatasync = os.fdatasync

        def held_fdatasync(fd: int) -> None:
            assert gate.wait(10)
            real_fdatasync(fd)

        monkeypatch.setattr(os, "fdatasync", held_fdatasync)
        outcomes: dict[str, Any] = {}

        async def run(name: str, call: Any) -> None:
            outcomes[name] = await call()

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run, "first", lambda: storage.delete(task_id))
                await trio.testing.wait_all_tasks_blocked()
                for call in (lambda: storage.update(task), lambda: storage.reschedule(task, 1)):
                    message = f"JsonStorage: task t is being deleted from {storage.path}"
                    with pytest.raises(StorageError, match=f"^{re.escape(message)}$"):
                        await call()
                assert await storage.resume_by_id(task_id) is False
                nursery.start_soon(run, "second", lambda: storage.delete(task_id))
                nursery.start_soon(
                    run, "push", lambda: storage.push_task(TaskBuilder("new").id("t").build())
                )
                await trio.testing.wait_all_tasks_blocked()
                assert outcomes == {}, "everyone waits for the disk"
                gate.set()
        assert outcomes == {"first": True, "second": False, "push": TaskId("t")}
        new = await storage.fetch_by_id("t")
        assert new is not None and (new.args, new.parts.status) == ("new", Status.Pending)
        monkeypatch.undo()
    assert [r["op"] for r in records_of(path) if r.get("id") == "t"][-2:] == ["delete", "push"]
    with JsonStorage(path) as reopened:
        again = await reopened.fetch_by_id("t")
        assert again is not None and (again.args, again.parts.status) == ("new", Status.Pending)
        assert await finish(reopened, 2) == ["bad", "new"]


async def test_killed_at_any_instant_each_task_is_whole_or_gone(path: Path) -> None:
    """A process deleting tasks one by one (compacting as it goes) is SIGKILLed at
    random instants; every reopening finds a readable file in which exactly a prefix of
    the tasks is gone (every acknowledged deletion among them) and the rest intact."""
    count = 40
    records: list[dict[str, Any]] = []
    for n in range(count):
        records.append(push_record(f"t{n:02}", {"n": n, "pad": "x" * 300}))
        if n % 2 == 0:
            records.append(
                {
                    "op": "final",
                    "id": f"t{n:02}",
                    "status": "Done",
                    "attempts": 1,
                    "result": orjson.dumps(n * 2).decode(),
                }
            )
    write_journal(path, *records)
    ids = [f"t{n:02}" for n in range(count)]
    child = (
        "import sys, trio\n"
        "from pyapalis.backends._json._storage import JsonStorage\n"
        "async def main():\n"
        "    with JsonStorage(sys.argv[1], compact_min=4) as storage:\n"
        "        for n in range(int(sys.argv[2])):\n"
        "            if await storage.delete(f't{n:02}'):\n"
        "                print(f'deleted t{n:02}', flush=True)\n"
        "        print('all done', flush=True)\n"
        "trio.run(main)\n"
    )
    env = dict(os.environ, PYTHONPATH=REPO)
    rng = random.Random(4)
    acknowledged: set[str] = set()
    rounds = 0
    while len(acknowledged) < count:
        rounds += 1
        assert rounds < 50
        process = await trio.lowlevel.open_process(
            [sys.executable, "-c", child, str(path), str(count)], stdout=subprocess.PIPE, env=env
        )
        assert process.stdout is not None
        wanted = rng.randint(1, 6)
        buffer = b""
        seen = 0
        with trio.fail_after(30):
            while seen < wanted and b"all done" not in buffer:
                chunk = await process.stdout.receive_some()
                if not chunk:
                    break
                buffer += chunk
                seen = buffer.count(b"deleted ")
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGKILL)
            await process.wait()
        await process.stdout.aclose()
        complete_lines = buffer.split(b"\n")[:-1]  # a last line without newline is cut
        acknowledged.update(
            line.split()[1].decode() for line in complete_lines if line.startswith(b"deleted ")
        )
        with JsonStorage(path) as reopened:
            present = [task_id for task_id in ids if await reopened.fetch_by_id(task_id)]
            missing = count - len(present)
            assert present == ids[missing:], "deletions happen in order: a prefix is gone"
            assert not acknowledged & set(present), "an acknowledged deletion was lost"
            for task_id in present:
                task = await reopened.fetch_by_id(task_id)
                assert task is not None
                n = int(task_id[1:])
                assert task.args == {"n": n, "pad": "x" * 300}
                [result] = await reopened.check_status([task_id])
                if n % 2 == 0:
                    assert (result.status, result.unwrap()) == (Status.Done, n * 2)
                else:
                    assert result.status is Status.Pending
        acknowledged.update(ids[:missing])
    assert not list(path.parent.glob("tasks.jsonl.compact*"))


# -- waiting for a deleted task -----------------------------------------------------------------


async def test_waiters_of_a_deleted_task_get_key_error(
    storage: JsonStorage, autojump_clock: trio.testing.MockClock
) -> None:
    done = await storage.push("ok")
    await finish(storage, 1)
    doomed = await storage.push_task(TaskBuilder("doomed").run_after(100).build())
    other = await storage.push_task(TaskBuilder("other").run_after(200).build())
    seen: list[Any] = []

    async def wait_single() -> None:
        with pytest.raises(
            KeyError, match=f"wait_for_single: task '{doomed}' was deleted from {storage.path}"
        ):
            await storage.wait_for_single(doomed)
        seen.append(("single", trio.current_time()))

    async def wait_many() -> None:
        with pytest.raises(KeyError, match=f"wait_for: task '{doomed}' was deleted"):
            async with aclosing(storage.wait_for([done, doomed, other])) as results:
                async for result in results:
                    seen.append((result.task_id, result.status))
        seen.append(("many", trio.current_time()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait_single)
        nursery.start_soon(wait_many)
        await trio.sleep(10)
        assert seen == [(done, Status.Done)], "the finished one is reported at once"
        assert await storage.delete(doomed)
    assert sorted(seen[1:], key=str) == [("many", 10.0), ("single", 10.0)]
    # The other task is unaffected, and nobody waits for the deleted one any more.
    assert not storage._store.waiters
    [result] = await storage.check_status([other])
    assert result.status is Status.Pending


async def test_a_task_deleted_after_it_finished_is_still_reported(
    storage: JsonStorage, autojump_clock: trio.testing.MockClock
) -> None:
    """A waiter that already got a task's final result is not disturbed by its deletion."""
    first, second = await storage.push_bulk(["ok", "bad"])
    reported: list[tuple[TaskId, Status]] = []
    async with aclosing(storage.wait_for([first, second])) as results, trio.open_nursery() as n:
        n.start_soon(finish, storage, 2)
        async for result in results:
            reported.append((result.task_id, result.status))
            if result.task_id == first:
                assert await storage.delete(first)
    assert reported == [(first, Status.Done), (second, Status.Failed)]


# -- the journal: replay, compaction, vacuum ---------------------------------------------------


def test_replay_applies_delete_records_anywhere(path: Path) -> None:
    write_journal(
        path,
        push_record("a", "a"),
        push_record("b", "b"),
        {"op": "delete", "id": "a"},
        {"op": "delete", "id": "never-existed"},
        {
            "op": "batch",
            "records": [push_record("c", "c"), {"op": "delete", "id": "b"}],
        },
        push_record("a", "a again"),
    )

    async def check() -> None:
        with JsonStorage(path) as storage:
            assert [(str(t.parts.task_id), t.args) for t in await storage.list_tasks()] == [
                ("c", "c"),
                ("a", "a again"),
            ]

    trio.run(check)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        pytest.param(
            {"op": "delete"}, r"line 3 is not a valid record \(KeyError: 'id'\)", id="no-id"
        ),
        pytest.param(
            {"op": "delete", "id": 7},
            r"line 3 is not a valid record \(TypeError: 'id' must be str, got 7\)",
            id="id-type",
        ),
        pytest.param(
            {"op": "final", "id": "a", "status": "Done", "attempts": 1},
            r"line 4 is not a valid record \(KeyError: 'a'\)",
            id="record-after-delete",
        ),
    ],
)
def test_a_bad_delete_or_a_record_after_one_names_its_line(
    path: Path, record: dict[str, Any], message: str
) -> None:
    records = [push_record("a", 1), record]
    if record["op"] != "delete":
        records.insert(1, {"op": "delete", "id": "a"})
    write_journal(path, *records)
    content = path.read_bytes()
    with pytest.raises(StorageError, match=message):
        JsonStorage(path)
    assert path.read_bytes() == content


async def test_compaction_and_vacuum_drop_deleted_tasks_and_their_records(
    path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    with JsonStorage(path, compact_min=6) as storage:
        ids = await storage.push_bulk([f"p{n}" for n in range(4)])
        assert await storage.delete(ids[0])
        assert await storage.delete(ids[1])
        # 1 batch line of 4 pushes + 2 deletes = 6 records: not above compact_min yet.
        assert [r["op"] for r in records_of(path)] == ["push"] * 4 + ["delete"] * 2
        assert await storage.delete(ids[2])
        # 7 records > max(6, 2 * 1 live): compacted to a snapshot of the one left.
        assert records_of(path) == [
            {
                "op": "put",
                "id": str(ids[3]),
                "queue": "default",
                "args": '"p3"',
                "run_at": records_of(path)[0]["run_at"],
                "attempts": 0,
                "status": "Pending",
            }
        ]
        done = await storage.push("ok")
        await finish(storage, 2)
        assert await storage.delete(done)
        assert await storage.vacuum() == 1  # p3, Done; the deleted one is not counted
        # Only the vacuumed id (remembered: a push of it stores nothing) and the
        # worker's own registration (a heartbeat) may be left.
        assert [r for r in records_of(path) if r["op"] != "worker"] == [
            {"op": "vacuumed", "ids": [str(ids[3])]}
        ]
    with JsonStorage(path) as storage:
        assert await storage.list_tasks() == []


async def test_deletes_racing_pushes_and_compactions_on_the_real_clock(path: Path) -> None:
    """Group commits in a worker thread: deletes written while an fsync runs are carried
    over into the compacted file after the snapshot. Nothing deleted comes back."""
    with JsonStorage(path, compact_min=20) as storage:
        storage._store.journal.inline_sync = False
        ids = await storage.push_bulk(range(300))
        deleted: list[TaskId] = []
        added: list[TaskId] = []

        async def deleter(offset: int) -> None:
            for task_id in ids[offset::4]:
                assert await storage.delete(task_id)
                deleted.append(task_id)

        async def pusher() -> None:
            for n in range(100):
                added.append(await storage.push(1000 + n))

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for offset in range(3):
                    nursery.start_soon(deleter, offset)
                nursery.start_soon(pusher)
        assert len(deleted) == 225
        survivors = [task_id for task_id in ids if task_id not in set(deleted)] + added
        assert records_of(path)[0]["op"] == "put", "compacted along the way"
        listed = [t.parts.task_id for t in await storage.list_tasks(None, 1, 1000)]
        assert sorted(map(str, listed)) == sorted(map(str, survivors))
    with JsonStorage(path) as reopened:
        listed = [t.parts.task_id for t in await reopened.list_tasks(None, 1, 1000)]
        assert sorted(map(str, listed)) == sorted(map(str, survivors))
        for task_id in deleted[:20]:
            assert await reopened.fetch_by_id(task_id) is None
