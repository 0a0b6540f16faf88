"""JsonStorage: files next to the journal, and errors about the place (issue 12, points 7, 8).

Compaction writes its snapshot to a new file of a fresh name, created with
``O_EXCL | O_NOFOLLOW``: nothing planted next to the journal is followed,
truncated or overwritten. Real symlinks and directories are planted here.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

import pyapalis.backends._json._journal
from pyapalis._errors import StorageError
from pyapalis.backends._json._storage import JsonStorage

CRASH_WORKER = str(Path(__file__).with_name("_crash_worker.py"))
REPO = str(Path(__file__).resolve().parent.parent)
NOBODY = 65534


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "tasks.jsonl"


def snapshots(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.glob(path.name + ".compact*"))


async def test_a_symlink_planted_at_the_snapshot_name_is_not_followed(
    path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    victim = path.with_name("victim.txt")
    victim.write_bytes(b"precious")
    with JsonStorage(path) as storage:
        planted = path.with_name("tasks.jsonl.compact")
        planted.symlink_to(victim)  # after the open, which tidies stale snapshots
        await storage.push_bulk(range(3))
        assert await storage.vacuum() == 0  # a compaction
        await storage.push("after")
    assert victim.read_bytes() == b"precious"
    assert planted.is_symlink() and os.readlink(planted) == str(victim)
    assert path.is_file() and not path.is_symlink()
    with JsonStorage(path) as storage:
        assert len(storage) == 4


async def test_a_symlink_at_the_fresh_snapshot_name_is_not_followed_either(
    path: Path, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """Even at the very name compaction picks (made predictable here), O_EXCL refuses it."""
    victim = path.with_name("victim.txt")
    victim.write_bytes(b"precious")
    planted = path.with_name("tasks.jsonl.compact-" + "0" * 16)
    planted.symlink_to(victim)
    names = iter(["0" * 16, "1" * 16])
    with JsonStorage(path) as storage:
        await storage.push_bulk(range(3))
        monkeypatch.setattr(
            pyapalis.backends._json._journal.secrets, "token_hex", lambda n: next(names)
        )
        await storage.vacuum()
        monkeypatch.undo()
    assert victim.read_bytes() == b"precious"
    assert planted.is_symlink()
    assert snapshots(path) == [planted.name], "the compaction used the next fresh name"
    with JsonStorage(path) as storage:  # opening leaves a planted symlink alone too
        assert len(storage) == 3
    assert planted.is_symlink() and victim.read_bytes() == b"precious"


async def test_a_directory_at_the_snapshot_name_is_no_obstacle(
    path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    blocker = path.with_name("tasks.jsonl.compact")
    blocker.mkdir()
    (blocker / "inside").write_bytes(b"kept")
    with JsonStorage(path) as storage:
        await storage.push_bulk(range(3))
        await storage.vacuum()
    with JsonStorage(path) as storage:
        assert len(storage) == 3
    assert (blocker / "inside").read_bytes() == b"kept"


async def test_a_compaction_that_cannot_create_its_snapshot_raises_storage_error(
    path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    real_open = os.open

    def refusing(name: str, flags: int, mode: int = 0o777) -> int:
        if ".compact-" in str(name):
            raise PermissionError(13, "Permission denied", name)
        return real_open(name, flags, mode)

    with JsonStorage(path) as storage:
        await storage.push("x")
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(os, "open", refusing)  # as root, a mode cannot refuse it
            with pytest.raises(
                StorageError, match=r"cannot create a snapshot to compact into: .*denied"
            ):
                await storage.vacuum()
        await storage.push("y")  # the journal goes on
    with JsonStorage(path) as storage:
        assert len(storage) == 2


# -- what is wrong with the place (point 8) ---------------------------------------------------


@pytest.fixture
def unreachable(tmp_path: Path) -> Iterator[Path]:
    """A journal path whose directory's parent cannot be entered by user ``nobody``."""
    locked = tmp_path / "locked"
    (locked / "inner").mkdir(parents=True)
    locked.chmod(0o700)  # owned by root: nobody cannot enter it
    yield locked / "inner" / "tasks.jsonl"
    locked.chmod(0o700)


@pytest.mark.skipif(
    not hasattr(os, "setuid") or os.geteuid() != 0,
    reason="needs root to run the opener as another user (as root, permissions are ignored)",
)
async def test_a_directory_that_cannot_be_entered_is_reported_as_such(
    unreachable: Path,
) -> None:
    result = await trio.run_process(
        [sys.executable, CRASH_WORKER, "probe", str(unreachable), "--user", str(NOBODY)],
        capture_stdout=True,
        env=dict(os.environ, PYTHONPATH=REPO),
    )
    output = result.stdout.decode().strip()
    directory = str(unreachable.parent)
    assert output.startswith(
        f"refused JsonStorage: cannot reach the directory {directory!r}: permission denied"
    ), output
    assert "does not exist" not in output


def test_the_errors_about_the_directory_name_their_cause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nope" / "tasks.jsonl"
    with pytest.raises(StorageError, match=r"directory '.*nope' does not exist$"):
        JsonStorage(missing)
    afile = tmp_path / "afile"
    afile.write_bytes(b"")
    with pytest.raises(StorageError, match=r"'.*afile' is not a directory$"):
        JsonStorage(afile / "tasks.jsonl")
    real_stat = os.stat

    def denied(name: str, *args: object, **kwargs: object) -> os.stat_result:
        if str(name) == str(tmp_path / "walled"):
            raise PermissionError(13, "Permission denied", name)
        return real_stat(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "stat", denied)
    with pytest.raises(
        StorageError, match=r"cannot reach the directory '.*walled': permission denied"
    ):
        JsonStorage(tmp_path / "walled" / "tasks.jsonl")


def test_a_journal_path_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "tasks.jsonl"
    directory.mkdir()
    with pytest.raises(StorageError, match=r"cannot open '.*tasks\.jsonl': .*Is a directory"):
        JsonStorage(directory)
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(StorageError, match=r"fifo\.jsonl' is not a regular file"):
        JsonStorage(fifo)
