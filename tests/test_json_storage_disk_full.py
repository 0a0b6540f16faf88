"""JsonStorage on a disk that fills up (issue 12, points 3 and 4).

A full disk must not wedge a task: an outcome (ack, retry) the journal cannot
write is tried again with back-off until it is written, and a task whose
outcome could not be written before its worker was cancelled comes back. A
failing compaction backs off instead of re-serialising the store at every
fsync.

The disk is a real one where possible: a small tmpfs mounted for the test
(root only) and filled with a file until the kernel answers ENOSPC. Each test
also runs on a simulated full disk (``os.write`` refusing with ENOSPC), which
needs no privileges. A failed fsync cannot be produced on demand by any real
file system, so that one is simulated only.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
import trio.testing

from pyapalis._errors import StorageError
from pyapalis._status import Status
from pyapalis._worker._worker import WorkerBuilder
from pyapalis.backends._json._journal import HEADER
from pyapalis.backends._json._storage import JsonStorage

HEADER_LINE = orjson.dumps(HEADER) + b"\n"
PAGE = 4096


class Disk:
    """A directory on a file system that can be filled up and freed again."""

    def __init__(self, directory: Path, monkeypatch: pytest.MonkeyPatch, real: bool) -> None:
        self.directory = directory
        self.real = real
        self._monkeypatch = monkeypatch
        self._filler = directory / "filler"
        self._refuse: Callable[[str], bool] | None = None
        if not real:
            monkeypatch.setattr(os, "write", self._write)

    def fill(self, leave: int = 0, refuse: Callable[[str], bool] = lambda name: True) -> None:
        """Fill the disk, leaving ``leave`` bytes (whole pages) free.

        Simulated: writes to the files ``refuse`` names fail with ENOSPC (a
        real full disk refuses what does not fit: here the test says what).
        """
        if not self.real:
            self._refuse = refuse
            return
        reserve = self.directory / "reserve"
        if leave:
            reserve.write_bytes(b"r" * leave)
        fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (1 << 20, 64 << 10, PAGE, 1):
                chunk = b"f" * size
                try:
                    while True:
                        os.write(fd, chunk)
                except OSError as error:
                    assert error.errno == errno.ENOSPC
        finally:
            os.close(fd)
        if leave:
            reserve.unlink()

    def free(self) -> None:
        if self.real:
            self._filler.unlink()
        else:
            self._refuse = None

    _real_write = staticmethod(os.write)

    def _write(self, fd: int, data: Any) -> int:
        if self._refuse is not None:
            name = os.readlink(f"/proc/self/fd/{fd}")
            if name.startswith(str(self.directory)) and self._refuse(name):
                raise OSError(errno.ENOSPC, "No space left on device")
        return self._real_write(fd, data)


@pytest.fixture(params=["tmpfs", "simulated"])
def disk(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Disk]:
    directory = tmp_path / "disk"
    directory.mkdir()
    if request.param == "simulated":
        yield Disk(directory, monkeypatch, real=False)
        return
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(directory)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(
            "cannot mount a small tmpfs to fill (needs root): "
            + (mounted.stderr.decode().strip() or f"mount exited {mounted.returncode}")
            + "; the simulated variant of this test ran instead"
        )
    try:
        yield Disk(directory, monkeypatch, real=True)
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=True)


def warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


# -- point 3: an outcome the disk refuses ------------------------------------------------------


async def test_an_ack_the_full_disk_refuses_lands_once_there_is_room(
    disk: Disk, caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    caplog.set_level(logging.WARNING)
    path = disk.directory / "tasks.jsonl"
    with JsonStorage(path) as storage:
        first, second = await storage.push_bulk(["fill", "next"])
        filled = trio.Event()

        async def handler(item: str) -> str:
            if item == "fill":
                disk.fill()
                filled.set()
            return item * 2000  # a result larger than a page: its record needs room

        async def make_room() -> None:
            await filled.wait()
            await trio.sleep(1.0)  # the disk stays full for a second
            disk.free()

        results = {}
        worker = WorkerBuilder("w").backend(storage).build(handler)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(make_room)
            all_done = trio.Event()
            nursery.start_soon(worker.run_until, all_done.wait)
            with trio.fail_after(60):
                async with aclosing(storage.wait_for([first, second])) as stream:
                    async for result in stream:
                        results[result.task_id] = result
                        if result.task_id == first:
                            # Retried after 0.1, 0.3, 0.7 and 1.5 s: the disk had room at 1.
                            assert trio.current_time() == pytest.approx(1.5)
            all_done.set()
        assert results[first].status is Status.Done
        assert results[first].unwrap() == "fill" * 2000
        assert results[second].unwrap() == "next" * 2000
        retried = warnings(caplog, "cannot record the outcome of task")
        assert len(retried) == 4, retried
        assert "No space left on device" in retried[0]
    with JsonStorage(path) as reopened:
        assert [r.status for r in await reopened.check_status([first, second])] == [
            Status.Done,
            Status.Done,
        ]


async def test_a_retry_the_full_disk_refuses_lands_once_there_is_room(
    disk: Disk, caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    caplog.set_level(logging.WARNING)
    path = disk.directory / "tasks.jsonl"
    with JsonStorage(path) as storage:
        task_id = await storage.push("x")
        attempts: list[int] = []

        async def handler(item: str) -> str:
            attempts.append(len(attempts) + 1)
            if len(attempts) == 1:
                disk.fill()
                raise RuntimeError("e" * 5000)  # the retry record holds the error
            return "ok"

        async def make_room() -> None:
            await trio.sleep(0.5)
            disk.free()

        from pyapalis._worker._retry import RetryPolicy

        worker = WorkerBuilder("w").backend(storage).retry(RetryPolicy.retries(1)).build(handler)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(make_room)
            nursery.start_soon(worker.run_until, lambda: storage.wait_for_single(task_id))
        [result] = await storage.check_status([task_id])
        assert result.status is Status.Done and attempts == [1, 2]
        assert len(warnings(caplog, "cannot record the retry of task")) == 3  # 0.1, 0.3, 0.7


async def test_a_task_whose_ack_never_landed_comes_back_after_a_cancelled_worker(
    disk: Disk, caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    path = disk.directory / "tasks.jsonl"
    with JsonStorage(path) as storage:
        task_id = await storage.push("x")
        runs: list[int] = []

        async def handler(item: str) -> str:
            runs.append(len(runs) + 1)
            if len(runs) == 1:
                disk.fill()
            return item * 5000

        worker = WorkerBuilder("w").backend(storage).build(handler)
        with trio.move_on_after(5):  # the worker is cancelled while the ack waits for room
            await worker.run()
        [result] = await storage.check_status([task_id])
        assert result.status is Status.Running
        disk.free()
        # Not Running forever: handed back, it runs again (the lost execution counts).
        second = WorkerBuilder("w2").backend(storage).build(handler)
        with trio.fail_after(60):
            await second.run_until(lambda: storage.wait_for_single(task_id))
        assert runs == [1, 2]
        fetched = await storage.fetch_by_id(task_id)
        assert fetched is not None and fetched.parts.status is Status.Done
        assert fetched.parts.attempt.current() == 2


async def test_an_idle_worker_takes_a_handed_back_task_once_the_disk_has_room(
    disk: Disk, caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    """The idle worker that notices the hand-back is not killed by the full disk."""
    caplog.set_level(logging.WARNING)
    path = disk.directory / "tasks.jsonl"
    with JsonStorage(path) as storage:
        task_id = await storage.push("x")
        runs: list[str] = []
        taken = trio.Event()

        def handler_of(name: str) -> Callable[[str], Any]:
            async def handler(item: str) -> str:
                runs.append(name)
                if name == "a":
                    disk.fill()
                    taken.set()
                return item * 5000

            return handler

        first = WorkerBuilder("a").backend(storage).build(handler_of("a"))
        second = WorkerBuilder("b").backend(storage).build(handler_of("b"))
        first_scope = trio.CancelScope()

        async def run_first() -> None:
            with first_scope:
                await first.run()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_first)
            await taken.wait()
            nursery.start_soon(second.run_until, lambda: storage.wait_for_single(task_id))
            await trio.sleep(5)
            first_scope.cancel()  # cancels the first worker while its ack waits for room
            await trio.sleep(1)
            if not disk.real:
                # Every write fails: the second worker could not resume it yet,
                # and lived on. (On the real tmpfs the small resume and take
                # records may still fit in the last page of the journal.)
                assert runs == ["a"]
                assert warnings(caplog, f"cannot resume task {task_id}")
            disk.free()
        assert runs == ["a", "b"]
        [result] = await storage.check_status([task_id])
        assert result.status is Status.Done


async def test_a_handed_back_task_is_resumed_by_resume_abandoned(
    disk: Disk, autojump_clock: trio.testing.MockClock
) -> None:
    path = disk.directory / "tasks.jsonl"
    with JsonStorage(path) as storage:
        task_id = await storage.push("x")

        async def handler(item: str) -> str:
            disk.fill()
            return item * 5000

        worker = WorkerBuilder("w").backend(storage).build(handler)
        with trio.move_on_after(5):
            await worker.run()
        disk.free()
        assert await storage.resume_abandoned() == 1
        [result] = await storage.check_status([task_id])
        assert result.status is Status.Pending


async def test_a_hand_back_the_full_disk_refuses_leaves_the_task_abandoned(
    disk: Disk, autojump_clock: trio.testing.MockClock
) -> None:
    """A hand-back happens on the way out: it is not retried, but the task comes back."""
    path = disk.directory / "tasks.jsonl"
    with JsonStorage(path) as storage:
        task_id = await storage.push("x")
        started = trio.Event()

        async def handler(item: str) -> str:
            disk.fill()
            started.set()
            await trio.sleep_forever()
            return item

        worker = WorkerBuilder("w").backend(storage).build(handler)

        async def run() -> None:
            with contextlib.suppress(StorageError):  # the hand-back failed
                await worker.run()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            await started.wait()
            nursery.cancel_scope.cancel()  # interrupted: the worker hands the task back
        if not disk.real:  # (on tmpfs the small release record may still fit)
            assert str(task_id) not in storage._store.in_flight
        disk.free()
        if not disk.real:
            assert await storage.resume_abandoned() == 1
        [result] = await storage.check_status([task_id])
        assert result.status is Status.Pending


async def test_an_ack_whose_fsync_failed_lands_in_a_fresh_file(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    autojump_clock: trio.testing.MockClock,
) -> None:
    """After a failed fsync the file is never trusted again: the journal starts a new one."""
    caplog.set_level(logging.WARNING)
    path = tmp_path / "tasks.jsonl"
    real_sync = os.fdatasync
    failures = 0

    def sync(fd: int) -> None:
        nonlocal failures
        if failing and failures < 1:
            failures += 1
            raise OSError(errno.EIO, "Input/output error")
        real_sync(fd)

    failing = False
    monkeypatch.setattr(os, "fdatasync", sync)
    with JsonStorage(path) as storage:
        first, second = await storage.push_bulk(["a", "b"])
        inode = path.stat().st_ino

        async def handler(item: str) -> str:
            nonlocal failing
            failing = True
            return item.upper()

        worker = WorkerBuilder("w").backend(storage).build(handler)
        with trio.fail_after(60):
            await worker.run_until(lambda: storage.wait_for_single(second))
        assert [r.unwrap() for r in await storage.check_status([first, second])] == ["A", "B"]
        assert failures == 1
        assert path.stat().st_ino != inode, "rewritten into a new file"
        assert len(warnings(caplog, "recovered from a failed write")) == 1
        assert trio.current_time() == pytest.approx(0.1), "the first retry landed"
    with JsonStorage(path) as reopened:
        assert [r.unwrap() for r in await reopened.check_status([first, second])] == ["A", "B"]


# -- point 4: a compaction the disk refuses ----------------------------------------------------


def finished_journal(path: Path, count: int) -> None:
    """A journal of ``count`` finished tasks: three records each, one live."""
    lines = []
    for n in range(count):
        task_id = f"task-{n:05}"
        lines.append(
            orjson.dumps(
                {"op": "push", "id": task_id, "queue": "default", "args": str(n), "run_at": 1.0}
            )
        )
        lines.append(
            orjson.dumps({"op": "take", "id": task_id, "attempts": 1, "lease": 2.0, "owner": "o"})
        )
        lines.append(
            orjson.dumps(
                {"op": "final", "id": task_id, "status": "Done", "attempts": 1, "result": "1"}
            )
        )
    path.write_bytes(HEADER_LINE + b"\n".join(lines) + b"\n")


async def test_a_failing_compaction_backs_off(
    disk: Disk,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    autojump_clock: trio.testing.MockClock,
) -> None:
    caplog.set_level(logging.WARNING)
    path = disk.directory / "tasks.jsonl"
    finished_journal(path, 200)  # ~40 kB: compaction is due at every fsync
    # Room for a few pushes, not for the snapshot of 200 tasks.
    disk.fill(leave=2 * PAGE, refuse=lambda name: ".compact" in name)
    with JsonStorage(path, compact_min=1) as storage:
        journal = storage._store.journal
        attempts: list[float] = []
        rewrite = journal.rewrite

        def counting(records: Any) -> None:
            attempts.append(trio.current_time())
            rewrite(records)

        monkeypatch.setattr(journal, "rewrite", counting)
        for n in range(20):
            await storage.push(n)  # each fsync is a quiet point where compaction is due
        assert attempts == [0.0], "tried once, not at every commit"
        for _ in range(4):
            await trio.sleep(1.0)
            await storage.push("later")
        # Failed at 0, so next at 1; failed at 1, next at 3; failed at 3, next at 7.
        assert attempts == [0.0, 1.0, 3.0]
        failed = warnings(caplog, "compaction failed")
        assert len(failed) == 3, "logged once per back-off step"
        assert [message.rsplit("next attempt in ", 1)[1] for message in failed] == [
            "1 s",
            "2 s",
            "4 s",
        ]
        lines_before = journal.lines
        disk.free()
        await trio.sleep(3.0)  # t = 7
        await storage.push("room again")
        assert attempts == [0.0, 1.0, 3.0, 7.0]
        assert journal.lines < lines_before, "compacted at last"
        await storage.push("after")
        assert len(attempts) == 4, "no longer due"
    with JsonStorage(path) as reopened:
        assert len(reopened) == 26
