"""JsonStorage: one process per file, however the file is named (issue 12, point 1).

The lock is an exclusive flock on the journal file itself (its inode), so a
hard link, a symlink or a deleted side file cannot let a second process in.
The second processes here are real ones (``tests/_crash_worker.py``).
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import orjson
import pytest
import trio
import trio.testing

import pyapalis.backends._json._journal
from pyapalis._errors import StorageError
from pyapalis.backends._json._journal import HEADER
from pyapalis.backends._json._storage import JsonStorage

CRASH_WORKER = str(Path(__file__).with_name("_crash_worker.py"))
REPO = str(Path(__file__).resolve().parent.parent)
HEADER_LINE = orjson.dumps(HEADER) + b"\n"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "tasks.jsonl"


@asynccontextmanager
async def holder(path: Path) -> AsyncIterator[int]:
    """A second process holding the storage at ``path`` open; yields its pid."""
    process = await trio.lowlevel.open_process(
        [sys.executable, CRASH_WORKER, "hold", str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=REPO),
    )
    assert process.stdout is not None and process.stdin is not None
    output = b""
    try:
        with trio.fail_after(30):
            while b"\n" not in output:
                chunk = await process.stdout.receive_some()
                assert chunk, "the holder exited"
                output += chunk
        assert output == f"ready {process.pid}\n".encode()
        yield process.pid
    finally:
        await process.stdin.aclose()  # the holder closes the storage and exits
        with trio.fail_after(30):
            assert await process.wait() == 0
        await process.stdout.aclose()


async def probe(path: Path) -> str:
    """What a second process gets opening ``path``: ``opened <n>`` or ``refused <message>``."""
    result = await trio.run_process(
        [sys.executable, CRASH_WORKER, "probe", str(path)],
        capture_stdout=True,
        env=dict(os.environ, PYTHONPATH=REPO),
    )
    return str(result.stdout.decode().strip())


def in_use_by(path: Path, pid: int) -> str:
    return f"JsonStorage: {path} is in use by process {pid}; one process at a time"


# -- a second process ----------------------------------------------------------------------


async def test_a_hard_link_does_not_let_a_second_process_in(path: Path) -> None:
    link = path.with_name("link.jsonl")
    JsonStorage(path).close()
    os.link(path, link)
    async with holder(path) as pid:
        with pytest.raises(StorageError) as raised:
            JsonStorage(link)
        assert str(raised.value).startswith(in_use_by(link, pid))
    async with holder(link) as pid:  # and the other way round
        with pytest.raises(StorageError) as raised:
            JsonStorage(path)
        assert str(raised.value).startswith(in_use_by(path, pid))


async def test_deleting_side_files_does_not_let_a_second_process_in(path: Path) -> None:
    async with holder(path) as pid:
        for side in path.parent.iterdir():
            if side != path:
                side.unlink()  # whatever the holder keeps next to the journal
        with pytest.raises(StorageError) as raised:
            JsonStorage(path)
        assert str(raised.value).startswith(in_use_by(path, pid))
    with JsonStorage(path) as storage:  # released when the holder closed it
        assert len(storage) == 0


async def test_the_file_a_compaction_renames_in_is_locked(
    path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    early_link = path.with_name("early.jsonl")
    with JsonStorage(path) as storage:
        await storage.push_bulk(range(3))
        os.link(path, early_link)
        inode = path.stat().st_ino
        await storage.vacuum()  # a compaction: a new file renamed over the journal
        assert path.stat().st_ino != inode
        late_link = path.with_name("late.jsonl")
        os.link(path, late_link)
        mine = f"in use by process {os.getpid()}"
        for name in (path, late_link):
            assert (await probe(name)).startswith(f"refused JsonStorage: {name} is {mine}")
        # The name that still points at the replaced file: an outdated copy,
        # kept locked while the journal is open.
        assert (await probe(early_link)).startswith(f"refused JsonStorage: {early_link} is {mine}")
        await storage.push("after")
    assert await probe(path) == "opened 4"


def test_an_opener_that_locked_a_replaced_file_opens_the_new_one(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between an opener's open and its lock, a compaction renames a new file in."""
    old_record = {"op": "push", "id": "old", "queue": "default", "args": "1", "run_at": 1.0}
    new_record = {"op": "push", "id": "new", "queue": "default", "args": "2", "run_at": 1.0}
    path.write_bytes(HEADER_LINE + orjson.dumps(old_record) + b"\n")
    replacement = path.with_name("replacement")
    replacement.write_bytes(HEADER_LINE + orjson.dumps(new_record) + b"\n")
    real_flock = fcntl.flock
    locked: list[int] = []

    def racing_flock(fd: int, operation: int) -> None:
        if not locked:
            os.replace(replacement, path)  # what another process's compaction does
        locked.append(os.fstat(fd).st_ino)
        real_flock(fd, operation)

    monkeypatch.setattr(pyapalis.backends._json._journal.fcntl, "flock", racing_flock)
    with JsonStorage(path) as storage:
        monkeypatch.undo()
        assert sorted(storage._store.entries) == ["new"]
        assert storage._store.journal.identity[1] == path.stat().st_ino
    assert len(locked) == 2 and locked[0] != locked[1], "locked the old file, then the new"


# -- one process: every name of the file shares one store ----------------------------------------


async def test_handles_through_a_hard_link_share_the_store(
    path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    link = path.with_name("link.jsonl")
    first = JsonStorage(path)
    os.link(path, link)
    second = JsonStorage(link)
    assert second._store is first._store
    task_id = await second.push("shared")
    fetched = await first.fetch_by_id(task_id)
    assert fetched is not None and fetched.args == "shared"
    await first.vacuum()  # compaction: the journal is a new file, the link an outdated copy
    third = JsonStorage(path)
    assert third._store is first._store, "found by the new file's inode"
    with pytest.raises(StorageError) as raised:
        JsonStorage(link)
    assert str(raised.value) == (
        f"JsonStorage: {link} is an outdated copy of {path}: it was a hard link to that "
        f"journal, which compaction replaced; open {path}"
    )
    for handle in (first, second, third):
        handle.close()
    with JsonStorage(path) as reopened:
        assert len(reopened) == 1


# -- side files (point 7) -----------------------------------------------------------------------


async def test_a_symlink_planted_at_the_lock_name_is_not_followed(
    path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    victim = path.with_name("victim.txt")
    victim.write_bytes(b"precious")
    planted = path.with_name("tasks.jsonl.lock")
    planted.symlink_to(victim)
    with JsonStorage(path) as storage:
        await storage.push("x")
    assert victim.read_bytes() == b"precious"
    assert planted.is_symlink() and os.readlink(planted) == str(victim)
