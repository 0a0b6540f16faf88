"""The crash-safe journal under JsonStorage: replay, group commit, failures, compaction."""

from __future__ import annotations

import errno
import gc
import logging
import os
import stat
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
import trio.testing

from pyapalis._errors import StorageError
from pyapalis.backends._json._journal import HEADER, Journal

HEADER_LINE = orjson.dumps(HEADER) + b"\n"


def snapshots(directory: Path) -> list[str]:
    """The names of the snapshot files (and look-alikes) of ``j.jsonl`` in ``directory``."""
    return sorted(p.name for p in directory.glob("j.jsonl.compact*"))


def line(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record) + b"\n"


def opened(path: Path) -> Journal:
    journal = Journal(str(path))
    journal.replay()
    return journal


def replayed(path: Path) -> list[dict[str, Any]]:
    journal = Journal(str(path))
    try:
        records, _ = journal.replay()
    finally:
        journal.close()
    return [record for _, record in records]


class CountingSync:
    """Replaces ``os.fdatasync``: counts calls; with ``gated``, each call (in its
    thread) waits until the test opens the gate, so what happens "during an
    fsync" is decided by the test, not by how long a sleep lasts on a busy machine."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, gated: bool = False) -> None:
        self.calls = 0
        self.gate: threading.Event | None = threading.Event() if gated else None
        self.started: trio.Event | None = None
        self._real = os.fdatasync
        monkeypatch.setattr(os, "fdatasync", self)

    def __call__(self, fd: int) -> None:
        self.calls += 1
        if self.started is not None:
            trio.from_thread.run_sync(self.started.set)
        if self.gate is not None:
            assert self.gate.wait(60), "the test never opened the fsync gate"
        self._real(fd)

    def open_gate(self) -> None:
        assert self.gate is not None
        self.gate.set()


# -- opening -----------------------------------------------------------------------------


def test_a_new_file_gets_the_header_and_private_modes(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    journal = Journal(str(path))
    records, report = journal.replay()
    journal.close()
    assert (records, report.records, report.torn_tail) == ([], 0, None)
    assert path.read_bytes() == HEADER_LINE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j.jsonl"], (
        "no side file: the lock is on the journal"
    )


def test_a_missing_directory_is_a_storage_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "j.jsonl"
    with pytest.raises(StorageError, match=r"directory .*nope' does not exist"):
        Journal(str(missing))


async def test_records_come_back_in_order(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    journal = opened(path)
    journal.append([{"n": 1}, {"n": 2}])
    await journal.commit([{"n": 3}])
    journal.append([{"n": 4}])
    assert journal.lines == 4
    journal.close()
    assert replayed(path) == [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]
    journal = Journal(str(path))
    records, report = journal.replay()
    journal.close()
    assert [number for number, _ in records] == [2, 2, 3, 4], "one line per write"
    assert report.records == 4


async def test_a_commit_of_several_records_is_all_or_nothing(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "j.jsonl"
    journal = opened(path)
    await journal.commit([{"n": 1}])
    await journal.commit([{"n": 2}, {"n": 3}, {"n": 4}])
    journal.close()
    content = path.read_bytes()
    assert content.count(b"\n") == 3, "the three records share one line"
    path.write_bytes(content[:-10])  # a crash in the middle of that line's write
    assert replayed(path) == [{"n": 1}], "none of the three, not some of them"


def test_a_batch_line_without_records_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    content = HEADER_LINE + line({"op": "batch", "records": [{"n": 1}, 2]}) + line({"n": 3})
    path.write_bytes(content)
    journal = Journal(str(path))
    with pytest.raises(StorageError, match="line 2 is a batch without a list of records"):
        journal.replay()
    journal.close()
    assert path.read_bytes() == content


@pytest.mark.parametrize(
    ("tail", "kept"),
    [
        pytest.param(b'{"n": 3', [{"n": 1}, {"n": 2}], id="cut-mid-record"),
        pytest.param(b'{"n": 3}', [{"n": 1}, {"n": 2}], id="cut-before-newline"),
        pytest.param(b'{"n": \n', [{"n": 1}, {"n": 2}], id="cut-line-ending-in-newline"),
    ],
)
def test_a_torn_last_line_is_cut_off_and_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, tail: bytes, kept: list[dict[str, int]]
) -> None:
    path = tmp_path / "j.jsonl"
    good = HEADER_LINE + line({"n": 1}) + line({"n": 2})
    path.write_bytes(good + tail)
    journal = Journal(str(path))
    with caplog.at_level(logging.WARNING, logger="pyapalis.journal"):
        records, report = journal.replay()
    journal.close()
    assert [record for _, record in records] == kept
    assert [number for number, _ in records] == [2, 3]
    assert report.torn_tail == tail
    assert path.read_bytes() == good, "the file ends on the last good line"
    [message] = [r.getMessage() for r in caplog.records]
    assert f"cut off an incomplete last line of {len(tail)} bytes" in message
    assert str(path) in message


def test_a_torn_header_is_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    path.write_bytes(HEADER_LINE[:9])  # a crash while the file was being created
    journal = Journal(str(path))
    records, report = journal.replay()
    journal.close()
    assert (records, report.torn_tail) == ([], HEADER_LINE[:9])
    assert path.read_bytes() == HEADER_LINE


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b"hello", r"is not a pyapalis journal \(it holds 5 bytes", id="no-line"),
        pytest.param(
            b"hello\nworld\n", r"is not a pyapalis journal \(line 1 is not JSON", id="text"
        ),
        pytest.param(b'{"a": 1}\n', r"is not a pyapalis journal \(line 1: ", id="json"),
        pytest.param(b"\n", r"is not a pyapalis journal \(line 1 is not JSON", id="blank"),
        pytest.param(
            b'{"pyapalis": "journal", "version": 2}\n',
            r"unsupported journal version 2 \(this pyapalis reads version 1\)",
            id="version",
        ),
        pytest.param(
            HEADER_LINE + b'{"n": 1}\n{"n": 2,,}\n{"n": 3}\n',
            r"line 3 is corrupt .*the file was not changed",
            id="corrupt-middle",
        ),
        pytest.param(
            HEADER_LINE + b'{"n": 1}\n\n{"n": 3}\n', r"line 3 is corrupt", id="blank-middle"
        ),
        pytest.param(
            HEADER_LINE + b"[1, 2]\n", r"line 2 is not a JSON object: b'\[1, 2\]'", id="array"
        ),
    ],
)
def test_unreadable_files_raise_and_stay_unchanged(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "j.jsonl"
    path.write_bytes(content)
    journal = Journal(str(path))
    with pytest.raises(StorageError, match=message) as raised:
        journal.replay()
    journal.close()
    assert str(path) in str(raised.value)
    assert path.read_bytes() == content


def test_a_stale_compaction_file_is_removed_on_open(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    path.write_bytes(HEADER_LINE + line({"n": 1}))
    # Crashes during compactions, of this version and of earlier ones.
    for name in ("j.jsonl.compact-0123456789abcdef", "j.jsonl.compact"):
        (tmp_path / name).write_bytes(HEADER_LINE + b'{"half')
    # Not snapshots of this journal: left alone.
    others = ["j.jsonl.compact-x", "k.jsonl.compact-0123456789abcdef", "j.jsonl.compacted"]
    for name in others:
        (tmp_path / name).write_bytes(b"keep")
    assert replayed(path) == [{"n": 1}]
    assert snapshots(tmp_path) == ["j.jsonl.compact-x", "j.jsonl.compacted"]
    assert all((tmp_path / name).read_bytes() == b"keep" for name in others)


# -- the lock --------------------------------------------------------------------------------


def test_a_second_journal_on_the_same_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    first = opened(path)
    with pytest.raises(StorageError) as raised:
        Journal(str(path))
    assert str(raised.value) == (
        f"JsonStorage: {path} is in use by process {os.getpid()}; one process at a time "
        f"may open a journal (share one JsonStorage between the workers of one process instead)"
    )
    first.close()
    opened(path).close()


def test_a_journal_dropped_unclosed_releases_its_lock(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    journal = opened(path)
    del journal
    gc.collect()
    opened(path).close()


# -- group commit ----------------------------------------------------------------------------


async def test_apply_runs_once_the_records_are_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    journal = opened(tmp_path / "j.jsonl")
    order: list[str] = []
    sync = CountingSync(monkeypatch)
    real = sync.__call__

    def noting(fd: int) -> None:
        order.append("fsync")
        real(fd)

    monkeypatch.setattr(os, "fdatasync", noting)
    await journal.commit([{"n": 1}], lambda: order.append("apply"))
    assert order == ["fsync", "apply"]
    journal.close()


@pytest.fixture(params=["virtual", "real"])
def either_clock(request: pytest.FixtureRequest) -> object:
    """An autojump MockClock (fsync inline), or not a clock at all (trio's real clock)."""
    if request.param == "virtual":
        return trio.testing.MockClock(autojump_threshold=0)
    return "real clock"


async def test_concurrent_commits_share_one_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, either_clock: object
) -> None:
    path = tmp_path / "j.jsonl"
    journal = opened(path)
    sync = CountingSync(monkeypatch)
    applied: list[int] = []
    async with trio.open_nursery() as nursery:
        for n in range(50):
            nursery.start_soon(journal.commit, [{"n": n}], lambda n=n: applied.append(n))
    assert sync.calls == 1
    assert sorted(applied) == list(range(50))
    journal.close()
    # trio starts the tasks in any order: the file's order is the order applied.
    assert replayed(path) == [{"n": n} for n in applied]


async def test_commits_during_an_fsync_form_the_next_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the real clock the fsync runs in a thread: commits arriving meanwhile form the next."""
    journal = opened(tmp_path / "j.jsonl")
    sync = CountingSync(monkeypatch, gated=True)
    sync.started = trio.Event()
    applied: list[str] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(journal.commit, [{"n": "first"}], lambda: applied.append("first"))
        await sync.started.wait()
        sync.started = None
        for name in ("a", "b", "c"):
            nursery.start_soon(
                journal.commit, [{"n": name}], lambda name=name: applied.append(name)
            )
        await trio.testing.wait_all_tasks_blocked()  # all three wait for the next fsync
        sync.open_gate()
    assert sync.calls == 2
    assert applied[0] == "first"
    assert sorted(applied[1:]) == ["a", "b", "c"]
    journal.close()


async def test_a_cancelled_committer_still_learns_the_outcome(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "j.jsonl"
    journal = opened(path)
    applied: list[int] = []
    with trio.CancelScope() as scope:
        scope.cancel()
        await journal.commit([{"n": 1}], lambda: applied.append(1))
        reached = True
    assert reached and applied == [1], "written, so waited for and applied (shielded)"
    journal.close()
    assert replayed(path) == [{"n": 1}]


# -- failures ----------------------------------------------------------------------------------


async def test_a_failed_write_leaves_nothing_half_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "j.jsonl"
    journal = opened(path)
    await journal.commit([{"n": 1}])
    size = path.stat().st_size
    real_write = os.write

    def disk_full(fd: int, data: Any) -> int:
        real_write(fd, bytes(data[:5]))  # a short write, then the disk is full
        monkeypatch.setattr(os, "write", failing)
        return 5

    def failing(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", disk_full)
    applied: list[int] = []
    with pytest.raises(StorageError, match=r"write failed: \[Errno 28\] No space left"):
        await journal.commit([{"n": 2, "pad": "x" * 100}], lambda: applied.append(2))
    assert applied == []
    assert path.stat().st_size == size, "the short write was cut back off"
    monkeypatch.setattr(os, "write", real_write)
    await journal.commit([{"n": 3}])  # the journal goes on
    journal.close()
    assert replayed(path) == [{"n": 1}, {"n": 3}]


async def test_a_failed_fsync_stops_all_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "j.jsonl"
    journal = opened(path)

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", broken)
    applied: list[int] = []
    with pytest.raises(StorageError, match=r"fsync failed: \[Errno 5\] Input/output error"):
        await journal.commit([{"n": 1}], lambda: applied.append(1))
    assert applied == [], "never reported durable"
    monkeypatch.undo()
    with pytest.raises(StorageError, match=r"an earlier write failed .* close and reopen"):
        journal.append([{"n": 2}])
    with pytest.raises(StorageError, match="an earlier write failed"):
        await journal.commit([{"n": 3}])
    journal.close()
    assert replayed(path) == [{"n": 1}]


async def test_after_a_failed_fsync_a_journal_with_a_snapshot_starts_a_fresh_file(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The old file's pages are never trusted again: the owner's view goes to a new file.

    Attempts back off on trio's clock (0.1 s, then 0.2 s...) while they fail.
    """
    caplog.set_level(logging.WARNING)
    path = tmp_path / "j.jsonl"
    journal = opened(path)
    view: list[dict[str, Any]] = []
    journal.snapshot = lambda: list(view)
    await journal.commit([{"n": 1}], lambda: view.append({"n": 1}))
    inode = path.stat().st_ino

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", broken)
    with pytest.raises(StorageError, match=r"fsync failed"):
        await journal.commit([{"n": 2}], lambda: view.append({"n": 2}))
    monkeypatch.undo()
    monkeypatch.setattr(os, "fsync", broken)  # the fresh file cannot be synced either
    with pytest.raises(StorageError, match=r"no fresh copy of the journal can be written yet"):
        journal.append([{"n": 3}])
    assert "next attempt in 0.1 s" in caplog.records[-1].getMessage()
    with pytest.raises(StorageError, match=r"until a fresh copy of the journal can be written"):
        journal.append([{"n": 3}])  # not tried again before 0.1 s
    await trio.sleep(0.1)
    with pytest.raises(StorageError, match=r"no fresh copy"):
        await journal.commit([{"n": 3}])
    assert "next attempt in 0.2 s" in caplog.records[-1].getMessage()
    monkeypatch.undo()
    await trio.sleep(0.2)
    await journal.commit([{"n": 3}], lambda: view.append({"n": 3}))
    assert path.stat().st_ino != inode
    assert "recovered from a failed write" in caplog.records[-1].getMessage()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j.jsonl"]
    journal.close()
    assert replayed(path) == [{"n": 1}, {"n": 3}], "the failed commit is not in the new file"


async def test_a_closed_journal_refuses_writes(tmp_path: Path) -> None:
    journal = opened(tmp_path / "j.jsonl")
    journal.close()
    journal.close()  # idempotent
    assert journal.closed
    with pytest.raises(StorageError, match=r"j\.jsonl is closed"):
        journal.append([{"n": 1}])
    with pytest.raises(StorageError, match="is closed"):
        await journal.commit([{"n": 1}])


async def test_closing_during_an_fsync_releases_the_file_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "j.jsonl"
    journal = opened(path)
    sync = CountingSync(monkeypatch, gated=True)
    sync.started = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(journal.commit, [{"n": 1}])
        await sync.started.wait()
        journal.close()
        with pytest.raises(StorageError, match="in use by process"):
            Journal(str(path))  # still held: the fsync is running
        sync.open_gate()
    assert replayed(path) == [{"n": 1}]


# -- compaction ----------------------------------------------------------------------------------


async def test_rewrite_replaces_the_content_atomically(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "j.jsonl"
    journal = opened(path)
    for n in range(5):
        await journal.commit([{"n": n}])
    inode = path.stat().st_ino
    await journal.exclusive(lambda: journal.rewrite([{"sum": 10}]))
    assert journal.lines == 1
    assert path.stat().st_ino != inode, "a new file renamed over the old one"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert snapshots(tmp_path) == []
    await journal.commit([{"n": 5}])  # appends go to the new file
    journal.close()
    assert replayed(path) == [{"sum": 10}, {"n": 5}]


async def test_a_failed_rewrite_leaves_the_journal_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "j.jsonl"
    journal = opened(path)
    await journal.commit([{"n": 1}])
    before = path.read_bytes()

    def crash(source: str, target: str) -> None:
        raise OSError(errno.EIO, "rename failed")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(StorageError, match=r"cannot write the compacted journal .*rename failed"):
        await journal.exclusive(lambda: journal.rewrite([{"other": 1}]))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert snapshots(tmp_path) == []
    await journal.commit([{"n": 2}])
    journal.close()
    assert replayed(path) == [{"n": 1}, {"n": 2}]


async def test_compaction_carries_over_commits_not_yet_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snapshot taken between two fsyncs keeps the bytes of the next batch."""
    path = tmp_path / "j.jsonl"
    journal = opened(path)
    applied: list[dict[str, Any]] = []
    waiting_at_compaction: list[int] = []

    contents: list[list[dict[str, Any]]] = []

    def compact() -> None:
        waiting_at_compaction.append(len(journal._batch.commits))
        journal.rewrite([{"snapshot": [r["n"] for r in applied]}])
        contents.append([orjson.loads(x) for x in path.read_bytes().splitlines()[1:]])
        assert journal.lines == len(contents[-1])

    journal.on_quiet = compact
    sync = CountingSync(monkeypatch, gated=True)
    sync.started = trio.Event()
    async with trio.open_nursery() as nursery:
        first = {"n": 0}
        nursery.start_soon(journal.commit, [first], lambda: applied.append(first))
        await sync.started.wait()
        sync.started = None
        for n in (1, 2):
            record = {"n": n}
            nursery.start_soon(journal.commit, [record], lambda r=record: applied.append(r))
        await trio.testing.wait_all_tasks_blocked()  # both written, waiting for the disk
        sync.open_gate()
    assert waiting_at_compaction == [2, 0]
    first_snapshot, *carried = contents[0]
    assert first_snapshot == {"snapshot": [0]}
    assert sorted(r["n"] for r in carried) == [1, 2], "unsynced commits kept in the new file"
    journal.close()
    # After the first batch: snapshot [0] + the two unsynced records; then the
    # second batch's quiet point compacts again with all three applied.
    [snapshot] = replayed(path)
    assert snapshot["snapshot"][0] == 0
    assert sorted(snapshot["snapshot"]) == [0, 1, 2]


async def test_exclusive_waits_for_a_quiet_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = opened(tmp_path / "j.jsonl")
    assert await journal.exclusive(lambda: "idle") == "idle"
    events: list[str] = []
    sync = CountingSync(monkeypatch, gated=True)
    sync.started = trio.Event()

    def action() -> str:
        events.append(f"action busy={journal.busy}")
        return "done"

    results: list[str] = []

    async def exclusive() -> None:
        results.append(await journal.exclusive(action))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(journal.commit, [{"n": 1}], lambda: events.append("apply"))
        await sync.started.wait()
        assert journal.busy
        nursery.start_soon(exclusive)
        await trio.testing.wait_all_tasks_blocked()
        assert events == [], "the action waits while the fsync runs"
        sync.open_gate()
    assert results == ["done"]
    assert events == ["apply", "action busy=True"]
    with pytest.raises(ZeroDivisionError):
        await journal.exclusive(lambda: 1 // 0)
    journal.close()


@pytest.mark.parametrize("inline", [True, False, None])
async def test_where_the_fsync_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, either_clock: object, inline: bool | None
) -> None:
    """In a worker thread on the real clock, inline under a virtual one, unless told."""
    journal = opened(tmp_path / "j.jsonl")
    journal.inline_sync = inline
    threads: list[int] = []
    real = os.fdatasync

    def noting(fd: int) -> None:
        threads.append(threading.get_ident())
        real(fd)

    monkeypatch.setattr(os, "fdatasync", noting)
    await journal.commit([{"n": 1}])
    journal.close()
    virtual = isinstance(either_clock, trio.testing.MockClock)
    expected_inline = inline if inline is not None else virtual
    assert (threads == [threading.get_ident()]) is expected_inline
