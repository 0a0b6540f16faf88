"""JsonStorage: the persistent backend's behaviour, durability and recovery (issue 4).

Everything time-dependent runs in virtual time (``autojump_clock``); JsonStorage
fsyncs inline under it, so virtual time never leaps during a write and the
times asserted here are exact. Files live in ``tmp_path``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
import trio.testing

from pyapalis._errors import AbortError, CodecError, RetryAfterError, StorageError, TaskError
from pyapalis._implementation import Attempt, Task, TaskBuilder, TaskId
from pyapalis._status import Status
from pyapalis._worker._context import WorkerContext
from pyapalis._worker._events import Event, EventKind
from pyapalis._worker._handler import Meta
from pyapalis._worker._retry import BackoffMode, RetryPolicy
from pyapalis._worker._worker import WorkerBuilder
from pyapalis.backends._capabilities import CAPABILITIES, feature_table
from pyapalis.backends._json._journal import HEADER
from pyapalis.backends._json._storage import JsonStorage
from pyapalis.backends._kit._clock import run_clock
from pyapalis.testing import WallClock

HEADER_LINE = orjson.dumps(HEADER) + b"\n"
CRASH_WORKER = str(Path(__file__).with_name("_crash_worker.py"))
REPO = str(Path(__file__).resolve().parent.parent)


@dataclasses.dataclass
class Tenant:
    name: str


async def drain(
    storage: JsonStorage,
    handler: Callable[..., Any],
    *,
    executions: int,
    concurrency: int = 1,
    retry: RetryPolicy | None = None,
) -> None:
    """Run a worker on ``storage`` until ``executions`` executions have ended."""
    ended = 0

    def on_event(ctx: WorkerContext, event: Event) -> None:
        nonlocal ended
        if event.kind in (EventKind.Success, EventKind.Error):
            ended += 1
            if ended == executions:
                ctx.stop()

    builder = WorkerBuilder("test").backend(storage).on_event(on_event).concurrency(concurrency)
    if retry is not None:
        builder.retry(retry)
    await builder.build(handler).run()


def write_journal(path: Path, *records: dict[str, Any]) -> None:
    path.write_bytes(HEADER_LINE + b"".join(orjson.dumps(r) + b"\n" for r in records))


def push_record(task_id: str, args: Any, **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"op": "push", "id": task_id, "queue": "default"}
    record.update(args=orjson.dumps(args).decode(), run_at=time.time() - 1, **fields)
    return record


def take_record(task_id: str, attempts: int, lease: float) -> dict[str, Any]:
    return {"op": "take", "id": task_id, "attempts": attempts, "lease": lease, "owner": "dead"}


NO_TENANT = Tenant("none")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "tasks.jsonl"


@pytest.fixture
def storage(path: Path) -> Any:
    with JsonStorage(path) as storage:
        yield storage


# -- consuming -----------------------------------------------------------------------------------


async def test_a_worker_consumes_in_push_order(
    storage: JsonStorage, autojump_clock: trio.testing.MockClock
) -> None:
    ids = [await storage.push(n) for n in range(5)]
    ids += await storage.push_bulk(range(5, 20))
    seen: list[tuple[int, TaskId]] = []

    async def handler(item: int, task_id: TaskId) -> int:
        seen.append((item, task_id))
        return item * 2

    await drain(storage, handler, executions=20)
    assert seen == list(zip(range(20), ids, strict=True))
    results = await storage.check_status(ids)
    assert [(r.status, r.unwrap()) for r in results] == [(Status.Done, 2 * n) for n in range(20)]
    assert len(storage) == 0


async def test_wait_for_reports_in_completion_order_at_completion_time(
    storage: JsonStorage, autojump_clock: trio.testing.MockClock
) -> None:
    slow, quick, middle = await storage.push_bulk([3, 1, 2])
    reported: list[tuple[TaskId, float, Any]] = []

    async def handler(seconds: int) -> str:
        await trio.sleep(seconds)
        return f"slept {seconds}"

    async def collect() -> None:
        async with aclosing(storage.wait_for([slow, quick, middle])) as results:
            async for result in results:
                reported.append((result.task_id, trio.current_time(), result.unwrap()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect)
        await drain(storage, handler, executions=3, concurrency=3)
    assert reported == [
        (quick, 1.0, "slept 1"),
        (middle, 2.0, "slept 2"),
        (slow, 3.0, "slept 3"),
    ]
    # Final ones are reported at once, in the order asked, each once.
    again = [r.task_id async for r in storage.wait_for([middle, slow, middle])]
    assert again == [middle, slow]
    single = await storage.wait_for_single(slow)
    assert (single.status, single.unwrap()) == (Status.Done, "slept 3")


async def test_statuses_are_true_and_results_stored(
    storage: JsonStorage, autojump_clock: trio.testing.MockClock
) -> None:
    ok = await storage.push("ok")
    failing = await storage.push_task(TaskBuilder("fail").attempts(3).build())
    aborted = await storage.push_task(TaskBuilder("abort").attempts(3).build())
    falsy = await storage.push("false")
    [pending] = await storage.check_status([ok])
    assert (pending.status, pending.result) == (Status.Pending, None)
    running_seen: list[Status] = []
    executions: list[tuple[str, int]] = []

    async def handler(item: str, task_id: TaskId, attempt: Attempt) -> Any:
        executions.append((item, attempt.current()))
        [me] = await storage.check_status([task_id])
        running_seen.append(me.status)
        if item == "fail":
            raise ValueError(f"bad {attempt.current()}")
        if item == "abort":
            raise AbortError("no way")
        if item == "false":
            return False
        return {"answer": 42}

    await drain(storage, handler, executions=6)
    assert set(running_seen) == {Status.Running}
    assert executions == [
        ("ok", 1),
        ("fail", 1),
        ("abort", 1),
        ("false", 1),
        ("fail", 2),
        ("fail", 3),
    ]
    results = {r.task_id: r for r in await storage.check_status([ok, failing, aborted, falsy])}
    assert results[ok].status is Status.Done
    assert results[ok].unwrap() == {"answer": 42}
    assert results[failing].status is Status.Failed, "never Done for a failure"
    with pytest.raises(TaskError, match=r"^ValueError: bad 3$"):
        results[failing].unwrap()
    assert results[aborted].status is Status.Killed
    with pytest.raises(TaskError, match=r"^AbortError: no way$"):
        results[aborted].unwrap()
    assert results[falsy].status is Status.Failed
    with pytest.raises(TaskError, match=r"^TaskFailedError: Task returned false$"):
        results[falsy].unwrap()
    task = await storage.fetch_by_id(failing)
    assert task is not None and task.parts.attempt.current() == 3


async def test_attempts_persist_across_reopening(
    path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    seen: list[int] = []

    async def handler(item: str, attempt: Attempt) -> None:
        seen.append(attempt.current())
        raise RuntimeError("again")

    with JsonStorage(path) as storage:
        task_id = await storage.push_task(TaskBuilder("x").attempts(5).build())
        await drain(storage, handler, executions=2)
    with JsonStorage(path) as storage:
        task = await storage.fetch_by_id(task_id)
        assert task is not None
        assert (task.parts.status, task.parts.attempt.current()) == (Status.Pending, 2)
        await drain(storage, handler, executions=3)
        [result] = await storage.check_status([task_id])
    assert seen == [1, 2, 3, 4, 5]
    assert result.status is Status.Failed


async def test_a_scheduled_task_runs_exactly_when_due(
    storage: JsonStorage, wall_clock: WallClock, autojump_clock: trio.testing.MockClock
) -> None:
    await storage.push("now")
    await storage.push_task(TaskBuilder("builder").run_at_timestamp(wall_clock.after(30)).build())
    exact = wall_clock.after(12.5)
    await storage.push_task(TaskBuilder("timestamp").run_at_timestamp(exact).build())
    ran: dict[str, float] = {}

    async def handler(item: str) -> None:
        ran[item] = trio.current_time()

    await drain(storage, handler, executions=3)
    assert list(ran) == ["now", "timestamp", "builder"]
    assert ran["now"] == 0
    assert (ran["timestamp"], ran["builder"]) == (12.5, 30)


async def test_retry_backoff_delays_are_exact(
    storage: JsonStorage, autojump_clock: trio.testing.MockClock
) -> None:
    task_id = await storage.push("flaky")
    times: list[float] = []

    async def handler(item: str) -> None:
        times.append(trio.current_time())
        raise RuntimeError("flaky")

    policy = RetryPolicy.retries(3, BackoffMode.exponential(1.0))
    await drain(storage, handler, executions=4, retry=policy)
    assert times == [0.0, 1.0, 3.0, 7.0]
    [result] = await storage.check_status([task_id])
    assert result.status is Status.Failed


async def test_retry_after_error_waits_its_delay(
    storage: JsonStorage, autojump_clock: trio.testing.MockClock
) -> None:
    await storage.push_task(TaskBuilder("later").attempts(2).build())
    times: list[float] = []

    async def handler(item: str, attempt: Attempt) -> None:
        times.append(trio.current_time())
        if attempt.current() == 1:
            raise RetryAfterError("busy", 42.5)

    await drain(storage, handler, executions=2)
    assert times == [0.0, 42.5]


async def test_a_hand_back_does_not_count_the_execution(
    path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    with JsonStorage(path) as storage:
        first = await storage.push("long")
        await storage.push("next")
        started = trio.Event()

        async def stuck(item: str) -> None:
            started.set()
            await trio.sleep_forever()

        worker = WorkerBuilder("doomed").backend(storage).build(stuck)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker.run)
            await started.wait()
            nursery.cancel_scope.cancel()
        task = await storage.fetch_by_id(first)
        assert task is not None
        assert (task.parts.status, task.parts.attempt.current()) == (Status.Pending, 0)
    with JsonStorage(path) as storage:
        seen: list[tuple[str, int]] = []

        async def quick(item: str, attempt: Attempt) -> None:
            seen.append((item, attempt.current()))

        await drain(storage, quick, executions=2)
    assert seen == [("long", 1), ("next", 1)], "back at the front, attempt not counted"


# -- durability ---------------------------------------------------------------------------------


async def test_every_acknowledged_change_survives_reopening(
    path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    storage = JsonStorage(path)

    def reopen() -> JsonStorage:
        storage.close()
        return JsonStorage(path)

    async def status(task_id: TaskId) -> Status:
        [result] = await storage.check_status([task_id])
        return result.status

    a = await storage.push("a")
    storage = reopen()
    assert await status(a) is Status.Pending
    b, c = await storage.push_bulk(["b", "c"])
    storage = reopen()
    assert [await status(b), await status(c)] == [Status.Pending, Status.Pending]
    built = (
        TaskBuilder("d").id("task-d").attempts(3).timeout(5).priority(2).meta(Tenant("acme"))
    ).build()
    d = await storage.push_task(built)
    storage = reopen()
    task = await storage.fetch_by_id(d)
    assert task is not None
    assert (task.args, task.parts.max_attempts, task.parts.timeout, task.parts.priority) == (
        "d",
        3,
        5.0,
        2,
    )
    assert task.parts.run_at == built.parts.run_at
    assert task.parts.ctx == {"Tenant": {"name": "acme"}}

    async def handler(item: str, tenant: Meta[Tenant] = NO_TENANT) -> str:
        if item == "b":
            raise ValueError("b fails")
        if item == "c":
            raise AbortError("c aborted")
        if item == "d":
            raise RetryAfterError(f"{tenant.name} busy", 100)
        return item.upper()

    await drain(storage, handler, executions=4)
    storage = reopen()
    results = await storage.check_status([a, b, c, d])
    assert [r.status for r in results] == [
        Status.Done,
        Status.Failed,
        Status.Killed,
        Status.Pending,
    ]
    assert results[0].unwrap() == "A"
    with pytest.raises(TaskError, match="ValueError: b fails"):
        results[1].unwrap()
    task = await storage.fetch_by_id(d)
    assert task is not None and task.parts.attempt.current() == 1
    assert task.parts.run_at == pytest.approx(run_clock().wall_now() + 100, abs=1)

    task.parts.max_attempts = 7
    task.parts.status = Status.Killed
    await storage.update(task)
    storage = reopen()
    task = await storage.fetch_by_id(d)
    assert task is not None
    assert (task.parts.max_attempts, task.parts.status) == (7, Status.Killed)

    assert await storage.resume_by_id(b)
    storage = reopen()
    task = await storage.fetch_by_id(b)
    assert task is not None
    assert (task.parts.status, task.parts.attempt.current()) == (Status.Pending, 0)

    killed = await storage.fetch_by_id(c)
    assert killed is not None
    await storage.reschedule(killed, 5)
    storage = reopen()
    assert await status(c) is Status.Pending

    await storage.register_worker("w1")
    storage = reopen()
    # (The worker that ran the tasks may have registered itself too.)
    assert "w1" in [w.name for w in await storage.list_workers()]

    assert await storage.vacuum() == 2  # a (Done) and d (Killed)
    storage = reopen()
    assert [t.args for t in await storage.list_tasks()] == ["b", "c"]
    storage.close()


async def test_files_are_private(path: Path, autojump_clock: trio.testing.MockClock) -> None:
    with JsonStorage(path, compact_min=1) as storage:
        await storage.push_bulk(range(3))
        await storage.vacuum()  # a compaction: the new file is private too
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        # The lock is on the journal itself: no side file is left behind.
        assert [p.name for p in path.parent.iterdir()] == ["tasks.jsonl"]


async def test_compaction_keeps_every_task(
    path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    with JsonStorage(path, compact_min=5) as storage:
        ids = await storage.push_bulk(range(20))

        async def handler(n: int, attempt: Attempt) -> int:
            if n % 5 == 0 and attempt.current() == 1:
                raise RuntimeError("once")
            if n % 7 == 0:
                raise AbortError("seven")
            return n * n

        await drain(storage, handler, executions=24, retry=RetryPolicy.retries(1))
        before = await storage.check_status(ids)
        attempts = [t.parts.attempt.current() for t in await storage.list_tasks(page_size=100)]
        lines = path.read_bytes().splitlines()
        assert orjson.loads(lines[1])["op"] == "put", "compacted: a snapshot renamed over it"
        assert len(lines) - 1 <= 40 < 20 + 2 * 24 + 4, "fewer records than were written"
        assert not list(path.parent.glob("tasks.jsonl.compact*"))
    with JsonStorage(path) as storage:
        after = await storage.check_status(ids)
        reopened = [t.parts.attempt.current() for t in await storage.list_tasks(page_size=100)]

    def described(results: list[Any]) -> list[tuple[Status, str]]:
        return [(r.status, repr(r.result)) for r in results]

    assert described(after) == described(before)
    assert reopened == attempts
    assert {r.status for r in after} == {Status.Done, Status.Killed}


async def test_vacuum_drops_finished_tasks_and_compacts(
    path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    with JsonStorage(path) as storage:
        ids = await storage.push_bulk(["ok", "ok", "bad", "abort"])
        later = await storage.push_task(TaskBuilder("later").run_after(3600).build())

        async def handler(item: str) -> None:
            if item == "bad":
                raise ValueError(item)
            if item == "abort":
                raise AbortError(item)

        await drain(storage, handler, executions=4)
        assert await storage.vacuum() == 4
        assert await storage.vacuum() == 0
        with pytest.raises(KeyError, match="unknown task id"):
            await storage.check_status(ids[:1])
        assert [r.status for r in await storage.check_status([later])] == [Status.Pending]
    # The task left, after the header, the ids of the vacuumed tasks (a push of
    # one stores nothing) and the worker's registration, if it made one.
    records = [orjson.loads(line) for line in path.read_bytes().splitlines()[1:]]
    assert records[0] == {"op": "vacuumed", "ids": [str(task_id) for task_id in ids]}
    tasks = [record for record in records[1:] if record["op"] != "worker"]
    assert len(tasks) == 1 and tasks[0]["id"] == str(later)
    assert len(records) - len(tasks) <= 2


# -- unreadable files --------------------------------------------------------------------------


async def test_a_torn_last_line_is_tolerated_and_reported(
    path: Path, caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    with JsonStorage(path) as storage:
        ids = await storage.push_bulk(["a", "b", "c"])
    good = path.read_bytes()
    torn = b'{"op":"push","id":"01J9ZZZ","queue":"def'
    path.write_bytes(good + torn)
    with caplog.at_level(logging.WARNING), JsonStorage(path) as storage:
        assert storage.report.torn_tail == torn
        assert storage.report.records == 3
        assert [r.status for r in await storage.check_status(ids)] == [Status.Pending] * 3
        assert path.read_bytes() == good, "cut back to the last good line"
        await storage.push("d")  # appends start on a clean line
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert f"{path}: cut off an incomplete last line of {len(torn)} bytes" in warning.getMessage()
    with JsonStorage(path) as storage:
        assert storage.report.torn_tail is None
        assert len(storage) == 4


def test_a_corrupt_line_in_the_middle_raises_and_changes_nothing(path: Path) -> None:
    write_journal(path, push_record("a", 1), push_record("b", 2), push_record("c", 3))
    original = path.read_bytes()
    lines = original.splitlines(keepends=True)
    lines[2] = lines[2].replace(b'"id"', b'"id', 1)
    damaged = b"".join(lines)
    path.write_bytes(damaged)
    with pytest.raises(StorageError) as raised:
        JsonStorage(path)
    message = str(raised.value)
    assert message.startswith(f"JsonStorage: {path}: line 3 is corrupt")
    assert "the file was not changed" in message
    assert path.read_bytes() == damaged
    path.write_bytes(original)  # repaired: it opens (the lock was released)
    with JsonStorage(path) as storage:
        assert len(storage) == 3


@pytest.mark.parametrize(
    ("record", "message"),
    [
        pytest.param(
            {"op": "push", "id": "x"},
            r"line 3 is not a valid record \(KeyError: 'queue'\)",
            id="missing",
        ),
        pytest.param(
            {"op": "push", "id": 7, "queue": "q", "args": "1", "run_at": 1.0},
            r"line 3 is not a valid record \(TypeError: 'id' must be str, got 7\)",
            id="wrong-type",
        ),
        pytest.param(
            {"op": "take", "id": "ghost", "attempts": 1, "lease": 1.0, "owner": "o"},
            r"line 3 is not a valid record \(KeyError: 'ghost'\)",
            id="unknown-task",
        ),
        pytest.param(
            {"op": "explode", "id": "a"},
            r"line 3 is not a valid record \(ValueError: unknown op 'explode'\)",
            id="op",
        ),
        pytest.param(
            {"op": "final", "id": "a", "status": "Finished", "attempts": 1},
            r"line 3 is not a valid record \(ValueError: .*Finished",
            id="status",
        ),
    ],
)
def test_an_invalid_record_names_its_line(path: Path, record: dict[str, Any], message: str) -> None:
    write_journal(path, push_record("a", 1), record, push_record("b", 2))
    content = path.read_bytes()
    with pytest.raises(StorageError, match=message) as raised:
        JsonStorage(path)
    assert str(path) in str(raised.value)
    assert path.read_bytes() == content


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b"just some notes\n", "is not a pyapalis journal", id="text"),
        pytest.param(b"no newline at all", "is not a pyapalis journal", id="no-newline"),
        pytest.param(b'{"name": "config"}\n', "is not a pyapalis journal", id="json"),
        pytest.param(
            b'{"pyapalis": "journal", "version": 9}\n',
            "unsupported journal version 9",
            id="version",
        ),
    ],
)
def test_a_file_that_is_not_a_journal_is_refused_untouched(
    path: Path, content: bytes, message: str
) -> None:
    path.write_bytes(content)
    with pytest.raises(StorageError, match=message):
        JsonStorage(path)
    assert path.read_bytes() == content


# -- processes and handles ---------------------------------------------------------------------


async def test_a_second_process_is_refused_naming_the_holder(path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=REPO)
    holder = await trio.lowlevel.open_process(
        [sys.executable, CRASH_WORKER, "hold", str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    assert holder.stdout is not None and holder.stdin is not None
    output = b""
    with trio.fail_after(30):
        while b"\n" not in output:
            chunk = await holder.stdout.receive_some()
            assert chunk, "the holder exited"
            output += chunk
    assert output == f"ready {holder.pid}\n".encode()
    with pytest.raises(StorageError) as raised:
        JsonStorage(path)
    assert str(raised.value).startswith(
        f"JsonStorage: {path} is in use by process {holder.pid}; one process at a time"
    )
    await holder.stdin.aclose()  # the holder closes the storage and exits
    with trio.fail_after(30):
        assert await holder.wait() == 0
    await holder.stdout.aclose()
    with JsonStorage(path) as storage:
        assert len(storage) == 0


async def test_handles_on_one_file_in_one_process_share_it(
    path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    first = JsonStorage(path)
    second = JsonStorage(str(path))
    link = path.with_name("link.jsonl")
    link.symlink_to(path)
    third = JsonStorage(link)
    task_id = await first.push("shared")
    assert second.path == third.path == str(path)
    fetched = await third.fetch_by_id(task_id)
    assert fetched is not None and fetched.args == "shared"
    first.close()
    first.close()  # idempotent
    with pytest.raises(StorageError, match="is closed"):
        await first.push("x")
    assert len(second) == 1  # the file stays open while a handle does
    second.close()
    third.close()
    with JsonStorage(path) as reopened:  # the last close released the lock
        assert len(reopened) == 1


class WrappingCodec:
    """Stores values wrapped as ``{"email": value}``: a codec of its own for one queue."""

    def encode(self, value: Any) -> bytes:
        return orjson.dumps({"email": value})

    def decode(self, data: bytes) -> Any:
        return orjson.loads(data)["email"]


async def test_typed_queues_share_a_file_and_consume_only_their_own(
    path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    with JsonStorage(path) as default, default.queue("emails", codec=WrappingCodec()) as emails:
        numbers = await default.push_bulk([1, 2, 3])
        addresses = await emails.push_bulk(["ann@example.org", "bob@example.org"])
        assert (len(default), len(emails)) == (3, 2)
        assert [t.args for t in await emails.list_tasks()] == ["ann@example.org", "bob@example.org"]
        assert b'"{\\"email\\":\\"ann@example.org\\"}"' in path.read_bytes()
        seen_numbers: list[int] = []
        seen_emails: list[str] = []

        async def count(n: int) -> int:
            seen_numbers.append(n)
            return n

        async def send(address: str) -> str:
            seen_emails.append(address)
            return f"sent to {address}"

        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: drain(emails, send, executions=2))
            await drain(default, count, executions=3)
        assert seen_numbers == [1, 2, 3]
        assert seen_emails == ["ann@example.org", "bob@example.org"]
        [sent] = await emails.check_status(addresses[:1])
        assert sent.unwrap() == "sent to ann@example.org"
        assert [r.unwrap() for r in await default.check_status(numbers)] == [1, 2, 3]
        assert repr(emails) == f"JsonStorage({str(path)!r}, queue='emails')"
        assert emails.queue_name == "emails"
    with JsonStorage(path, queue="emails", codec=WrappingCodec()) as emails:
        assert [r.unwrap() for r in await emails.check_status(addresses)] == [
            "sent to ann@example.org",
            "sent to bob@example.org",
        ]


# -- codecs --------------------------------------------------------------------------------------


async def test_arguments_that_cannot_be_encoded_fail_at_push_with_nothing_written(
    storage: JsonStorage, path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    size = path.stat().st_size
    with pytest.raises(CodecError, match=r"^JsonStorage: cannot store the task's arguments: "):
        await storage.push(object())
    with pytest.raises(CodecError, match="arguments"):
        await storage.push_bulk([1, 2, {3}, 4])
    meta_task = TaskBuilder("x").meta(Tenant("t")).build()
    meta_task.parts.ctx["Tenant"] = object()
    with pytest.raises(CodecError, match="cannot store the task's metadata"):
        await storage.push_task(meta_task)
    assert path.stat().st_size == size, "nothing written"
    assert len(storage) == 0


async def test_a_codec_must_produce_utf8_text(
    path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    class Binary:
        def encode(self, value: Any) -> bytes:
            return b"\xff\xfe"

        def decode(self, data: bytes) -> Any:
            return data

    with (
        JsonStorage(path, codec=Binary()) as storage,
        pytest.raises(
            CodecError, match=r"must produce UTF-8 text bytes for the arguments, got b'\\xff\\xfe'"
        ),
    ):
        await storage.push(1)


class PickyCodec:
    """JSON, except that the value "poison" cannot be decoded."""

    def encode(self, value: Any) -> bytes:
        return orjson.dumps(value)

    def decode(self, data: bytes) -> Any:
        value = orjson.loads(data)
        if value == "poison":
            raise ValueError("poisoned payload")
        return value


async def test_a_payload_that_cannot_be_decoded_fails_its_task_and_the_worker_goes_on(
    path: Path, caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    with JsonStorage(path, codec=PickyCodec()) as storage:
        a, poison, b = await storage.push_bulk(["a", "poison", "b"])
        seen: list[str] = []

        async def handler(item: str) -> str:
            seen.append(item)
            return item

        with caplog.at_level(logging.ERROR):
            await drain(storage, handler, executions=2)
        assert seen == ["a", "b"]
        result = await storage.wait_for_single(poison)
        assert result.status is Status.Failed
        with pytest.raises(
            TaskError,
            match=r"^CodecError: cannot decode the stored task: ValueError: poisoned payload$",
        ):
            result.unwrap()
        assert [r.status for r in await storage.check_status([a, b])] == [Status.Done] * 2
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert f"task {poison} failed: CodecError" in error.getMessage()
    with JsonStorage(path) as storage:  # and it stays Failed
        assert [r.status for r in await storage.check_status([poison])] == [Status.Failed]


async def test_a_result_that_cannot_be_encoded_fails_the_task(
    storage: JsonStorage, autojump_clock: trio.testing.MockClock
) -> None:
    task_id = await storage.push("x")

    async def handler(item: str) -> Any:
        return {1, 2}

    await drain(storage, handler, executions=1)
    [result] = await storage.check_status([task_id])
    assert result.status is Status.Failed
    with pytest.raises(
        TaskError, match=r"^CodecError: JsonStorage: cannot store the task's result: "
    ):
        result.unwrap()


# -- resumption ----------------------------------------------------------------------------------


async def test_resume_abandoned_brings_back_a_dead_process_tasks_counting_the_execution(
    path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    lease = time.time() + 3600
    write_journal(
        path,
        push_record("x", "x", max=3),
        take_record("x", 1, lease),
        push_record("y", "y", max=1),
        take_record("y", 1, lease),
        push_record("z", "z"),
    )
    with JsonStorage(path) as storage:
        assert [r.status for r in await storage.check_status(["x", "y", "z"])] == [
            Status.Running,
            Status.Running,
            Status.Pending,
        ]
        assert await storage.resume_abandoned() == 2
        assert await storage.resume_abandoned() == 0
        y = await storage.wait_for_single("y")
        assert y.status is Status.Failed
        with pytest.raises(
            TaskError, match="its worker died while running it and no attempts remain"
        ):
            y.unwrap()
        seen: list[tuple[str, int]] = []

        async def handler(item: str, attempt: Attempt) -> None:
            seen.append((item, attempt.current()))

        await drain(storage, handler, executions=2)
    assert seen == [("x", 2), ("z", 1)]
    with JsonStorage(path) as storage:
        assert await storage.resume_abandoned() == 0
        statuses = [r.status for r in await storage.check_status(["x", "y", "z"])]
        assert statuses == [Status.Done, Status.Failed, Status.Done]


async def test_an_abandoned_task_comes_back_by_itself_when_its_lease_expires(
    path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    write_journal(path, push_record("x", "x"), take_record("x", 1, time.time() + 30))
    seen: list[tuple[int, float]] = []
    with JsonStorage(path) as storage:

        async def handler(item: str, attempt: Attempt) -> None:
            seen.append((attempt.current(), trio.current_time()))

        async def look_before() -> None:
            await trio.sleep(29)
            [result] = await storage.check_status(["x"])
            assert result.status is Status.Running, "not before its lease expires"

        async with trio.open_nursery() as nursery:
            nursery.start_soon(look_before)
            await drain(storage, handler, executions=1)
    [(attempt, at)] = seen
    assert attempt == 2
    # The lease is wall-clock; mapped onto this run's clock it expires 30 s
    # after it was written, less the wall time since then.
    assert 29.5 < at <= 30


async def test_an_expired_lease_comes_back_at_once(
    path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    write_journal(path, push_record("x", "x", max=2), take_record("x", 1, time.time() - 1))
    with JsonStorage(path) as storage:
        times: list[float] = []

        async def handler(item: str) -> None:
            times.append(trio.current_time())

        await drain(storage, handler, executions=1)
        assert times == [0.0]


async def test_resume_by_id_revives_failed_and_killed_tasks(
    storage: JsonStorage, autojump_clock: trio.testing.MockClock
) -> None:
    failed, killed, done = await storage.push_bulk(["fail", "abort", "ok"])
    pending = await storage.push_task(TaskBuilder("later").run_after(100).build())
    seen: set[str] = set()

    async def handler(item: str, attempt: Attempt) -> str:
        first_time = item not in seen
        seen.add(item)
        if first_time and item == "fail":
            raise ValueError("first time")
        if first_time and item == "abort":
            raise AbortError("first time")
        return f"{item} {attempt.current()}"

    await drain(storage, handler, executions=3)
    assert not await storage.resume_by_id(done)
    assert not await storage.resume_by_id(pending)
    assert not await storage.resume_by_id("no-such-task")
    assert await storage.resume_by_id(failed)
    assert await storage.resume_by_id(str(killed))
    task = await storage.fetch_by_id(failed)
    assert task is not None
    assert (task.parts.status, task.parts.attempt.current()) == (Status.Pending, 0)
    await drain(storage, handler, executions=2)
    results = await storage.check_status([failed, killed])
    assert [r.unwrap() for r in results] == ["fail 1", "abort 1"], "a fresh attempt budget"


async def test_resume_by_id_of_an_abandoned_task(
    path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    write_journal(path, push_record("x", "x"), take_record("x", 1, time.time() + 3600))
    with JsonStorage(path) as storage:
        assert await storage.resume_by_id("x")
        assert await storage.resume_abandoned() == 0, "already resumed"
        [result] = await storage.check_status(["x"])
        assert result.status is Status.Pending


# -- the capabilities -----------------------------------------------------------------------------


async def test_update_changes_a_stored_task(
    storage: JsonStorage, wall_clock: WallClock, autojump_clock: trio.testing.MockClock
) -> None:
    task_id = await storage.push("x")
    task = await storage.fetch_by_id(task_id)
    assert task is not None
    task.parts.run_at = wall_clock.after(50)
    task.parts.max_attempts = 4
    task.parts.ctx = {"Tenant": {"name": "t"}}
    await storage.update(task)
    times: list[tuple[float, int | None, Any]] = []

    async def handler(item: str, task: Task) -> None:
        times.append((trio.current_time(), task.parts.max_attempts, task.parts.ctx))

    await drain(storage, handler, executions=1)
    [(at, max_attempts, ctx)] = times
    assert at == 50
    assert (max_attempts, ctx) == (4, {"Tenant": {"name": "t"}})

    other = await storage.push("y")
    fetched = await storage.fetch_by_id(other)
    assert fetched is not None
    fetched.parts.status = Status.Killed
    waiting = trio.Event()
    reported: list[Status] = []

    async def wait() -> None:
        waiting.set()
        reported.append((await storage.wait_for_single(other)).status)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait)
        await waiting.wait()
        await storage.update(fetched)
    assert reported == [Status.Killed]
    assert len(storage) == 0


async def test_update_refuses_running_tasks_and_statuses(
    storage: JsonStorage, autojump_clock: trio.testing.MockClock
) -> None:
    task_id = await storage.push("x")
    task = await storage.fetch_by_id(task_id)
    assert task is not None
    for status in (Status.Running, Status.Queued):
        task.parts.status = status
        with pytest.raises(
            ValueError,
            match=f"^update: status must be Pending, Done, Failed or Killed, got {status.value}$",
        ):
            await storage.update(task)
    taken = storage.take_nowait()
    assert taken is not None
    with pytest.raises(
        StorageError, match=f"update: task {task_id} is Running; its worker owns it"
    ):
        await storage.update(taken)
    with pytest.raises(StorageError, match=f"task {task_id} is running in this process"):
        await storage.reschedule(taken, 1)
    with pytest.raises(StorageError, match="task nope is not in"):
        await storage.update(TaskBuilder("z").id("nope").build())


async def test_a_task_being_updated_cannot_be_taken(
    storage: JsonStorage,
    monkeypatch: pytest.MonkeyPatch,
    wall_clock: WallClock,
    autojump_clock: trio.testing.MockClock,
) -> None:
    """While an update waits for its fsync, a taker must not get the version it replaces."""
    await storage.push_task(TaskBuilder("x").id("x").build())
    taken_during_fsync: list[Task | None] = []
    real_sync = os.fdatasync

    def sync_and_take(fd: int) -> None:
        taken_during_fsync.append(storage.take_nowait())  # a worker's pull, mid-commit
        real_sync(fd)

    monkeypatch.setattr(os, "fdatasync", sync_and_take)
    await storage.update(TaskBuilder("x").id("x").run_at_timestamp(wall_clock.after(100)).build())
    monkeypatch.undo()
    assert taken_during_fsync == [None]
    ran: list[float] = []

    async def handler(item: str) -> None:
        ran.append(trio.current_time())

    await drain(storage, handler, executions=1)
    [at] = ran
    assert at == 100, "it runs once, as updated"


async def test_reschedule_queues_a_task_again(
    storage: JsonStorage, autojump_clock: trio.testing.MockClock
) -> None:
    task_id = await storage.push("x")
    task = await storage.fetch_by_id(task_id)
    assert task is not None
    await trio.sleep(5)
    await storage.reschedule(task, 20)
    times: list[float] = []

    async def handler(item: str) -> str:
        times.append(trio.current_time())
        return "ok"

    await drain(storage, handler, executions=1)
    assert times == [25.0]
    await storage.reschedule(task, 0)  # a Done task runs again
    await drain(storage, handler, executions=1)
    assert times == [25.0, 25.0]


@pytest.mark.parametrize(
    ("delay", "error", "shown"),
    [(math.inf, ValueError, "float inf"), (True, TypeError, "bool True")],
)
async def test_reschedule_rejects_bad_delays(
    storage: JsonStorage,
    delay: Any,
    error: type[Exception],
    shown: str,
    autojump_clock: trio.testing.MockClock,
) -> None:
    """(More bad delays are in the conformance suite, for every backend.)"""
    task = await storage.fetch_by_id(await storage.push("x"))
    assert task is not None
    expected = (
        f"reschedule: delay must be a finite number of seconds >= 0 or a timedelta, got {shown}"
    )
    with pytest.raises(error) as raised:
        await storage.reschedule(task, delay)
    assert (type(raised.value), str(raised.value)) == (error, expected)


async def test_fetch_by_id(storage: JsonStorage, autojump_clock: trio.testing.MockClock) -> None:
    assert await storage.fetch_by_id("missing") is None
    task_id = await storage.push_task(TaskBuilder({"n": 1}).id("t-1").attempts(2).build())
    task = await storage.fetch_by_id(TaskId("t-1"))
    assert task is not None
    assert (task.args, task.parts.task_id, task.parts.status) == ({"n": 1}, task_id, Status.Pending)
    assert task.parts.max_attempts == 2


async def test_push_task_keeps_an_existing_id(
    storage: JsonStorage, path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    first = await storage.push_task(TaskBuilder("one").id("same").build())
    size = path.stat().st_size
    again = await storage.push_task(TaskBuilder("two").id("same").build())
    assert first == again == TaskId("same")
    assert path.stat().st_size == size, "the duplicate stores nothing"
    task = await storage.fetch_by_id("same")
    assert task is not None and task.args == "one"
    generated = Task("three")
    assigned = await storage.push_task(generated)
    assert generated.parts.task_id == assigned


async def test_list_tasks_pages_and_filters(
    storage: JsonStorage, autojump_clock: trio.testing.MockClock
) -> None:
    await storage.push_bulk(range(7))

    async def handler(n: int) -> None:
        if n % 2:
            raise ValueError("odd")

    await drain(storage, handler, executions=3)
    assert [t.args for t in await storage.list_tasks(page_size=3)] == [0, 1, 2]
    assert [t.args for t in await storage.list_tasks(page=3, page_size=3)] == [6]
    assert await storage.list_tasks(page=4, page_size=3) == []
    assert [t.args for t in await storage.list_tasks(Status.Done)] == [0, 2]
    assert [t.args for t in await storage.list_tasks(Status.Failed)] == [1]
    assert [t.args for t in await storage.list_tasks("Pending", page=1, page_size=2)] == [3, 4]
    assert [t.parts.status for t in await storage.list_tasks(page_size=3)] == [
        Status.Done,
        Status.Failed,
        Status.Done,
    ]


async def test_workers_are_registered_durably(
    path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    before = time.time()
    with JsonStorage(path) as storage:
        await storage.register_worker("beta")
        await storage.register_worker("alpha")
        first = {w.name: w for w in await storage.list_workers()}
        await storage.register_worker("alpha")  # a heartbeat
        [alpha, beta] = await storage.list_workers()
    assert [alpha.name, beta.name] == ["alpha", "beta"]
    assert alpha.pid == os.getpid()
    assert alpha.started_at == first["alpha"].started_at >= before
    assert alpha.last_seen >= first["alpha"].last_seen
    with JsonStorage(path) as storage:
        assert await storage.list_workers() == [alpha, beta]


async def test_closing_wakes_waiting_takers_and_waiters(
    path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    storage = JsonStorage(path)
    task_id = await storage.push_task(TaskBuilder("later").run_after(60).build())
    woken: list[str] = []

    async def take() -> None:
        with pytest.raises(StorageError, match="is closed"):
            await storage.take()
        woken.append("take")

    async def wait() -> None:
        with pytest.raises(StorageError, match="is closed"):
            await storage.wait_for_single(task_id)
        woken.append("wait_for_single")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(take)
        nursery.start_soon(wait)
        await trio.sleep(1)
        storage.close()
    assert sorted(woken) == ["take", "wait_for_single"]
    assert trio.current_time() == 1, "woken at once, not at the task's due time"


async def test_new_temp_lives_until_the_last_handle_closes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with JsonStorage.new_temp() as storage:
        directory = Path(storage.path).parent
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        other = storage.queue("other")
        await other.push(1)
        assert len(storage) == 0 and len(other) == 1
    assert directory.exists()
    other.close()
    assert not directory.exists()


def test_the_features_table_matches_the_methods() -> None:
    table = feature_table(JsonStorage)
    assert set(table) == set(CAPABILITIES)
    assert set(table.values()) == {"supported"}
    storage_type: Any = JsonStorage
    for name, protocol in CAPABILITIES.items():
        for method in protocol.__dict__:
            if not method.startswith("_") and callable(getattr(protocol, method)):
                assert callable(getattr(storage_type, method, None)), (name, method)


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"path": 5}, TypeError, "JsonStorage: path must be a str or os.PathLike, got 5"),
        ({"queue": ""}, ValueError, "JsonStorage: queue must be a non-empty str, got str ''"),
        ({"queue": 3}, TypeError, "JsonStorage: queue must be a non-empty str, got int 3"),
        (
            {"lease": 0},
            ValueError,
            "JsonStorage: lease must be a finite number of seconds > 0, got 0",
        ),
        (
            {"lease": -1.5},
            ValueError,
            "JsonStorage: lease must be a finite number of seconds > 0, got -1.5",
        ),
        (
            {"lease": math.inf},
            ValueError,
            "JsonStorage: lease must be a finite number of seconds > 0, got inf",
        ),
        (
            {"lease": math.nan},
            ValueError,
            "JsonStorage: lease must be a finite number of seconds > 0, got nan",
        ),
        (
            {"lease": True},
            ValueError,
            "JsonStorage: lease must be a finite number of seconds > 0, got True",
        ),
        (
            {"compact_min": 0},
            ValueError,
            "JsonStorage: compact_min must be an int >= 1, got int 0",
        ),
        (
            {"compact_min": 2.5},
            TypeError,
            "JsonStorage: compact_min must be an int >= 1, got float 2.5",
        ),
        (
            {"compact_min": True},
            TypeError,
            "JsonStorage: compact_min must be an int >= 1, got bool True",
        ),
        (
            {"codec": "json"},
            TypeError,
            "JsonStorage: codec must have encode() and decode(), got 'json'",
        ),
    ],
)
def test_bad_constructor_arguments(
    path: Path, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    arguments: dict[str, Any] = {"path": path, **kwargs}
    target = arguments.pop("path")
    with pytest.raises(error) as raised:
        JsonStorage(target, **arguments)
    assert str(raised.value) == message
    assert not path.exists(), "nothing created"


def test_a_missing_directory_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=r"^JsonStorage: directory '.*missing' does not exist$"):
        JsonStorage(tmp_path / "missing" / "tasks.jsonl")


@pytest.mark.parametrize(
    ("bad", "error", "shown"),
    [(None, TypeError, "NoneType None"), ("", ValueError, "str ''"), (5, TypeError, "int 5")],
)
async def test_bad_task_ids(
    storage: JsonStorage,
    bad: Any,
    error: type[Exception],
    shown: str,
    autojump_clock: trio.testing.MockClock,
) -> None:
    expected = "must be a TaskId or a non-empty str, got " + shown

    async def wait_for(task_ids: list[Any]) -> None:
        async with aclosing(storage.wait_for(task_ids)) as results:
            async for _ in results:
                pass  # pragma: no cover

    for where, call in [
        ("fetch_by_id: task_id", lambda: storage.fetch_by_id(bad)),
        ("check_status: task_ids item", lambda: storage.check_status([bad])),
        ("wait_for_single: task_id", lambda: storage.wait_for_single(bad)),
        ("resume_by_id: task_id", lambda: storage.resume_by_id(bad)),
        ("delete: task_id", lambda: storage.delete(bad)),
        ("wait_for: task_ids item", lambda: wait_for([bad])),
    ]:
        with pytest.raises(error) as raised:
            await call()
        assert (type(raised.value), str(raised.value)) == (error, f"{where} {expected}")


async def test_unknown_ids_in_wait_for_raise_key_error(
    storage: JsonStorage, autojump_clock: trio.testing.MockClock
) -> None:
    known = await storage.push(1)
    with pytest.raises(KeyError, match="wait_for_single: unknown task id 'ghost'"):
        await storage.wait_for_single("ghost")
    with pytest.raises(KeyError, match="check_status: unknown task id 'ghost'"):
        await storage.check_status([known, "ghost"])
    reported = []
    with pytest.raises(KeyError, match="wait_for: unknown task id 'ghost'"):
        async with aclosing(storage.wait_for([known, "ghost"])) as results:
            async for result in results:
                reported.append(result)
    assert reported == [], "nothing yielded before the error"


# Bad pages and status filters: the conformance suite (every backend).


async def test_other_bad_input(
    storage: JsonStorage, autojump_clock: trio.testing.MockClock
) -> None:
    with pytest.raises(
        ValueError, match=r"^register_worker: name must be a non-empty str, got str ''$"
    ):
        await storage.register_worker("")
    with pytest.raises(TypeError, match=r"^push_task: task must be a Task, got str 'not a task'$"):
        await storage.push_task("not a task")  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"^JsonStorage.queue: name must be a non-empty str, got str ''$"
    ):
        storage.queue("")
    with pytest.raises(TypeError, match=r"^JsonStorage: codec must have encode"):
        storage.queue("q", codec=object())  # type: ignore[arg-type]


async def test_many_workers_on_the_real_clock_with_compactions(path: Path) -> None:
    """Threaded group commits, concurrent acks and compactions between fsyncs lose nothing."""
    with JsonStorage(path, compact_min=50) as storage:
        ids = await storage.push_bulk(range(500))

        async def handler(n: int, attempt: Attempt) -> int:
            await trio.sleep(0)
            if n % 10 == 0 and attempt.current() == 1:
                raise RuntimeError("retry me")
            return n + 1

        with trio.fail_after(30):
            await drain(
                storage, handler, executions=550, concurrency=20, retry=RetryPolicy.retries(1)
            )
        expected = [(Status.Done, n + 1) for n in range(500)]
        assert [(r.status, r.unwrap()) for r in await storage.check_status(ids)] == expected
        assert orjson.loads(path.read_bytes().splitlines()[1])["op"] == "put", "compacted"
    with JsonStorage(path) as storage:
        assert [(r.status, r.unwrap()) for r in await storage.check_status(ids)] == expected
        tasks = await storage.list_tasks(page_size=500)
        assert [t.parts.attempt.current() for t in tasks] == [
            2 if n % 10 == 0 else 1 for n in range(500)
        ]


async def test_a_hand_back_before_the_execution_started_keeps_the_count(
    storage: JsonStorage, autojump_clock: trio.testing.MockClock
) -> None:
    """A task taken and handed back before its handler ran (a layer refused it) is as it was."""
    await storage.push_task(TaskBuilder("x").id("x").with_attempt(Attempt(2)).build())
    taken = storage.take_nowait()
    assert taken is not None and taken.parts.attempt.current() == 2
    await storage.release(taken)
    task = await storage.fetch_by_id("x")
    assert task is not None
    assert (task.parts.status, task.parts.attempt.current()) == (Status.Pending, 2)


def test_the_comparison_with_sqlite_runs(tmp_path: Path) -> None:
    """benchmarks/json_vs_sqlite.py must not rot: every row measured, the table printed."""
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    from benchmarks import json_vs_sqlite

    rows = json_vs_sqlite.run(n=10, acks=3, directory=str(tmp_path))
    assert [row.name.split(":")[0] for row in rows] == [
        "JsonStorage push_bulk + drain, c=1",
        "JsonStorage push_bulk + drain, c=100",
        "JsonStorage push_bulk + drain, c=1, fsync inline",
        "JsonStorage",
        "JsonStorage",
        "sqlite3 WAL synchronous=FULL",
        "sqlite3 DELETE synchronous=FULL",
        "sqlite3 WAL synchronous=FULL",
        "sqlite3 DELETE synchronous=FULL",
    ]
    for row in rows:
        measured = [row.tasks_per_second, row.ack_microseconds]
        assert [value for value in measured if value is not None and value > 0], row
    lines = json_vs_sqlite.table(rows).splitlines()
    assert lines[0].split() == ["tasks/s", "push_bulk", "(s)", "µs", "per", "durable", "ack"]
    assert len(lines) == 2 + len(rows)
    assert list(tmp_path.iterdir()) == [], "its files are removed"


async def test_a_take_the_journal_refuses_leaves_the_task_first_in_line(
    storage: JsonStorage, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    first, _second = await storage.push_bulk(["first", "second"])
    real_write = os.write

    def disk_full(fd: int, data: Any) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", disk_full)
    with pytest.raises(StorageError, match="write failed"):
        storage.take_nowait()
    monkeypatch.setattr(os, "write", real_write)
    [status] = await storage.check_status([first])
    assert status.status is Status.Pending
    taken = storage.take_nowait()
    assert taken is not None and taken.parts.task_id == first
