"""A crash-safe append-only file of JSON records: the storage under JsonStorage.

One record per line, after a header line; the records of one commit share a
line (a batch record), so a commit is all-or-nothing. Every write happens on
the trio thread, in call order, as one ``write``; a write that fails is cut
back off the file, so a line is in the file whole or not at all, and a crash
can only tear the last line (which :meth:`Journal.replay` tolerates,
reports and cuts off). :meth:`Journal.commit` returns once its records are on
disk: concurrent commits share one fsync (group commit), run in a worker
thread (inline under a virtual clock, see :mod:`pyapalis.backends._kit._clock`).

A commit may carry an ``apply`` callback, run by the task doing the fsync as
soon as the records are durable, before anything else can happen. The caller's
in-memory view therefore changes exactly when the file does, and at every
*quiet point* (between two fsyncs) memory holds every durable record: that is
where compaction runs. Compaction writes a snapshot, plus the bytes of commits
written but not yet synced, to a new file ``<path>.compact-<random>``, fsyncs
it and renames it over the journal (then fsyncs the directory), so a crash at any instant leaves
either the old file or the new one, never a mixture.

One process holds a journal at a time: an exclusive ``flock`` on the
journal file itself (its inode, which no rename or unlink of a side file can
take away) refuses a second process however it names the file (another path, a
hard link, a symlink). A compaction locks the new file before renaming it over
the journal, and an opener checks, once it holds the lock, that the file it
locked is still the one at the path (else it opens again). Within a process,
callers share one :class:`Journal` per file. Side files are never followed
through links: a snapshot is a new file with a fresh name (``O_EXCL``,
``O_NOFOLLOW``) in the journal's directory.

A failed write is cut back off the file and raises :class:`WriteError`; the
journal goes on. A failed fsync (or a cut-back that failed) leaves the file's
tail in doubt: the journal then refuses writes, and, if its owner gave it a
:attr:`Journal.snapshot`, starts afresh as soon as it can: it writes the
owner's view into a new file, fsyncs it and renames it over the journal (what
a compaction does), never trusting the old file's pages again. Those attempts
back off on trio's clock.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import logging
import math
import os
import re
import secrets
import stat
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, TypeVar

import orjson
import outcome
import trio

from ..._errors import StorageError
from .._kit._clock import run_clock

__all__ = ["HEADER", "Backoff", "Journal", "ReplayReport", "WriteError"]

log = logging.getLogger("pyapalis.journal")

T = TypeVar("T")

HEADER = {"pyapalis": "journal", "version": 1}
"""The first line of every journal: what the file is, and its format version."""
_HEADER_LINE = orjson.dumps(HEADER) + b"\n"
_APPEND_NEWLINE = orjson.OPT_APPEND_NEWLINE


@dataclasses.dataclass(frozen=True, slots=True)
class ReplayReport:
    """What opening a journal found: how many records, and a torn last line if any."""

    path: str
    records: int
    torn_tail: bytes | None = None
    """The bytes of an incomplete last line (a crash mid-write), cut off on open."""


class _Commit:
    """One caller's records in a batch: what to run once durable, and its error."""

    __slots__ = ("apply", "error")

    def __init__(self, apply: Callable[[], None] | None) -> None:
        self.apply = apply
        self.error: BaseException | None = None


class _Waiters:
    """Tasks waiting, uncancellably, for something to be done.

    Cheaper than a shielded cancel scope around an event wait (one per
    commit): the wait refuses cancellation itself, and a cancellation
    requested meanwhile is delivered at the caller's next checkpoint.
    """

    __slots__ = ("done", "tasks")

    def __init__(self) -> None:
        self.tasks: list[trio.lowlevel.Task] = []
        self.done = False

    async def wait(self) -> None:
        if self.done:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        self.tasks.append(trio.lowlevel.current_task())
        await trio.lowlevel.wait_task_rescheduled(_refuse_cancellation)

    def wake(self) -> None:
        self.done = True
        for task in self.tasks:
            trio.lowlevel.reschedule(task)
        self.tasks.clear()


def _refuse_cancellation(_raise_cancel: Any) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.FAILED


class _Batch:
    """Commits written since the last fsync, and the tasks waiting for it."""

    __slots__ = ("commits", "data", "done", "records")

    def __init__(self) -> None:
        self.commits: list[_Commit] = []
        # The bytes these commits wrote, and how many records: a compaction
        # before their fsync carries them over into the new file.
        self.data: list[bytes] = []
        self.records = 0
        self.done = _Waiters()

    def finish(self, error: BaseException | None) -> None:
        """Run each commit's apply (or hand it the error), then wake the callers."""
        for commit in self.commits:
            if error is not None:
                commit.error = error
            elif commit.apply is not None:
                try:
                    commit.apply()
                except Exception as apply_error:
                    commit.error = apply_error
        self.done.wake()


class _Request(Generic[T]):
    """An action waiting for the next quiet point (see :meth:`Journal.exclusive`)."""

    __slots__ = ("action", "done", "result")

    def __init__(self, action: Callable[[], T]) -> None:
        self.action = action
        self.done = _Waiters()
        self.result: outcome.Outcome[T] | None = None

    def run(self) -> None:
        self.result = outcome.capture(self.action)
        self.done.wake()

    def fail(self, error: BaseException) -> None:
        self.result = outcome.Error(error)
        self.done.wake()


class WriteError(StorageError):
    """The journal could not write or sync a record: maybe for a while only (a full disk).

    Nothing the failed call wrote is reported durable; a later call may succeed.
    """


class Backoff:
    """When to try again after failures: exponential steps on trio's clock.

    The first failure waits ``first`` seconds, each further one twice as long,
    up to ``most``; a success starts over. A new trio run (whose clock starts
    afresh) may try at once.
    """

    __slots__ = ("_at", "_run", "delay", "first", "most")

    def __init__(self, first: float, most: float) -> None:
        self.first = first
        self.most = most
        self.delay = 0.0
        """The current step (0 while nothing failed)."""
        self._at = -math.inf
        self._run: object = None

    def due(self) -> bool:
        """True if an attempt may be made now."""
        if not self.delay:
            return True
        try:
            run = trio.lowlevel.current_trio_token()
        except RuntimeError:
            return True
        return run is not self._run or trio.current_time() >= self._at

    def deadline(self) -> float:
        """When the next attempt is due, as a trio deadline of the current run."""
        if not self.due():
            return self._at
        return -math.inf

    def failed(self) -> float:
        """Note a failure; the seconds until the next attempt is due."""
        self.delay = self.first if not self.delay else min(self.delay * 2, self.most)
        try:
            self._run = trio.lowlevel.current_trio_token()
            self._at = trio.current_time() + self.delay
        except RuntimeError:
            self._run = None
        return self.delay

    def succeeded(self) -> None:
        self.delay = 0.0


class _Files:
    """The journal's descriptors; closed by :meth:`Journal.close` or, if the
    journal is dropped unclosed, by a finalizer (which releases the locks).

    ``stale`` holds earlier journal files that compaction replaced while they
    had another name (a hard link): they stay locked while the journal is
    open, so no process opens that outdated copy meanwhile.
    """

    __slots__ = ("fd", "stale")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.stale: list[int] = []

    def close(self) -> None:
        fds, self.fd, self.stale = [self.fd, *self.stale], -1, []
        errors: list[OSError] = []
        for fd in fds:
            if fd >= 0:
                try:
                    os.close(fd)  # closing the descriptor releases its flock
                except OSError as error:
                    errors.append(error)
        if errors:
            raise errors[0]


class Journal:
    """An open journal file: replayed once, then appended to and compacted.

    Not thread-safe: use it from the trio thread of one run at a time.
    """

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        _check_directory(os.path.dirname(self.path))
        fd, info = _open_locked(self.path)
        self._files = _Files(fd)
        self._finalizer = weakref.finalize(self, _Files.close, self._files)
        self.identity = (info.st_dev, info.st_ino)
        """The journal file's device and inode (they change when compaction replaces it)."""
        self.stale_identities: set[tuple[int, int]] = set()
        """Earlier journal files still reachable by another name (see :class:`_Files`)."""
        _remove_stale_snapshots(self.path)
        self._size = 0
        self._batch = _Batch()
        self._requests: list[_Request[Any]] = []
        self._flushing = False
        self._closed = False
        self._failed: BaseException | None = None
        self._recovery = Backoff(_RECOVERY_FIRST, _RECOVERY_MOST)
        self.lines = 0
        """Records in the file now (the header excluded): compaction's yardstick."""
        self.on_quiet: Callable[[], None] | None = None
        """Called at each quiet point after an fsync (the owner's compaction policy)."""
        self.snapshot: Callable[[], Iterable[dict[str, Any]]] | None = None
        """The records that recreate the owner's view (what compaction writes).

        With it, a journal whose writes failed in a way that leaves the file in
        doubt (a failed fsync) starts afresh from that view instead of refusing
        writes until it is reopened (see the module docstring)."""
        self.inline_sync: bool | None = None
        """Fsync on the trio thread (True) or in a worker thread (False); None:
        inline under a virtual clock only. Inline blocks the event loop for the
        fsync but spares the thread hop (benchmarks compare the two)."""

    # -- open ------------------------------------------------------------

    def replay(self) -> tuple[list[tuple[int, dict[str, Any]]], ReplayReport]:
        """Every record in the file, in order, with its line number; and what was found.

        The records of a batch line come out one by one. An empty file gets
        its header. A torn last line is cut off the file
        (so appends start on a clean line), logged and reported. A line that
        does not parse anywhere else raises :class:`StorageError` naming the
        file and the line, and leaves the file as it was; so does a file that
        is not a pyapalis journal or has an unknown version.
        """
        data = _read_all(self._files.fd)
        if not data:
            self._write(_HEADER_LINE, 0)
            os.fsync(self._files.fd)
            _fsync_directory(self.path)
            return [], ReplayReport(self.path, 0)
        torn: bytes | None = None
        end = data.rfind(b"\n") + 1
        if end < len(data):
            torn = data[end:]
            if end == 0 and not _HEADER_LINE.startswith(torn):
                raise StorageError(
                    f"JsonStorage: {self.path} is not a pyapalis journal "
                    f"(it holds {len(data)} bytes and no complete line: {data[:40]!r})"
                )
        lines = data[:end].split(b"\n")
        lines.pop()  # the empty string after the last newline
        records: list[tuple[int, dict[str, Any]]] = []
        for number, line in enumerate(lines, start=1):
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as error:
                if number == 1:
                    raise StorageError(
                        f"JsonStorage: {self.path} is not a pyapalis journal "
                        f"(line 1 is not JSON: {line[:80]!r})"
                    ) from error
                if number == len(lines) and torn is None and not _complete_json(line):
                    # The last line, cut short (a crash in a write that landed
                    # after the newline of a record but before its end).
                    torn = line + b"\n"
                    end -= len(torn)
                    break
                raise StorageError(
                    f"JsonStorage: {self.path}: line {number} is corrupt ({error}); "
                    f"the file was not changed: repair or remove that line"
                ) from error
            if not isinstance(record, dict):
                raise StorageError(
                    f"JsonStorage: {self.path}: line {number} is not a JSON object: {line[:80]!r}"
                )
            if number == 1:
                _check_header(self.path, record, line)
                continue
            if record.get("op") == _BATCH:
                batch = record.get("records")
                if not isinstance(batch, list) or not all(isinstance(r, dict) for r in batch):
                    raise StorageError(
                        f"JsonStorage: {self.path}: line {number} is a batch without "
                        f"a list of records: {line[:80]!r}"
                    )
                records.extend((number, inner) for inner in batch)
            else:
                records.append((number, record))
        if torn is not None:
            log.warning(
                "JsonStorage: %s: cut off an incomplete last line of %d bytes "
                "(a crash during a write that was never acknowledged): %r",
                self.path,
                len(torn),
                torn[:80],
            )
            os.ftruncate(self._files.fd, end)
            os.fsync(self._files.fd)
        self._size = end
        if end == 0:
            self._write(_HEADER_LINE, 0)
            os.fsync(self._files.fd)
        self.lines = len(records)
        return records, ReplayReport(self.path, len(records), torn)

    # -- writes ----------------------------------------------------------

    def append(self, records: Sequence[dict[str, Any]]) -> None:
        """Write records now, without waiting for the disk.

        They survive the process being killed (they are in the kernel's page
        cache) and reach the disk with the next fsync. The caller applies them
        to its view itself.
        """
        self._check_writable()
        if records:
            self._write(_encode(records), len(records))

    async def commit(
        self, records: Sequence[dict[str, Any]], apply: Callable[[], None] | None = None
    ) -> None:
        """Write records and return once they are on disk; then ``apply`` has run.

        ``apply`` runs once the records are durable, before any other task
        runs (so before any compaction). Concurrent commits share one fsync.
        Records that cannot be written raise :class:`StorageError` with nothing
        written. Once written, the commit is not cancellable: it waits for the
        disk (an uncancellable wait) so the caller always learns the outcome.
        """
        self._check_writable()
        if records:
            data = _encode(records)
            self._write(data, len(records))
            self._batch.data.append(data)
            self._batch.records += len(records)
        commit = _Commit(apply)
        batch = self._batch
        batch.commits.append(commit)
        if self._flushing:
            await batch.done.wait()
        else:
            await self._flush()
        if commit.error is not None:
            raise commit.error

    async def exclusive(self, action: Callable[[], T]) -> T:
        """Run ``action`` at a quiet point: no fsync under way, memory matching the file.

        Now if nothing is being flushed, else at the flusher's next quiet
        point (so a steady stream of commits cannot starve it). ``action`` may
        call :meth:`rewrite`.
        """
        self._check_writable()
        if not self._flushing:
            result = action()
            await trio.lowlevel.cancel_shielded_checkpoint()
            return result
        request: _Request[T] = _Request(action)
        self._requests.append(request)
        await request.done.wait()
        assert request.result is not None
        return request.result.unwrap()

    async def _flush(self) -> None:
        """Fsync batch after batch until no commit or request is waiting."""
        self._flushing = True
        try:
            # Let the commits of tasks that are runnable now join this fsync.
            await trio.lowlevel.cancel_shielded_checkpoint()
            while self._batch.commits or self._requests:
                if self._batch.commits:
                    batch, self._batch = self._batch, _Batch()
                    batch.finish(await self._sync())
                if self._failed is not None:
                    error = WriteError(f"JsonStorage: {self.path}: an earlier write failed")
                    for request in self._requests:
                        request.fail(error)
                    self._requests.clear()
                    continue
                # A quiet point: every durable record is applied; nothing is syncing.
                requests, self._requests = self._requests, []
                for request in requests:
                    request.run()
                if self.on_quiet is not None and not self._closed:
                    try:
                        self.on_quiet()
                    except Exception:
                        log.exception("JsonStorage: %s: compaction failed", self.path)
        finally:
            self._flushing = False
            if self._closed:
                self._release()

    async def _sync(self) -> BaseException | None:
        """Fsync the file; the error (and the journal refuses writes from now on)."""
        if self._failed is not None:
            # A second fsync after a failed one may "succeed" without the lost
            # pages ever reaching the disk: never report durability of this
            # file again (a fresh file may, see _recover).
            return WriteError(f"JsonStorage: {self.path}: an earlier write failed")
        fd = self._files.fd
        try:
            inline = self.inline_sync
            if inline if inline is not None else run_clock().virtual:
                os.fdatasync(fd)
            else:
                # Shielded: waiting for a worker thread can be cancelled.
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(os.fdatasync, fd)
        except OSError as error:
            # After a failed fsync the page cache cannot be trusted (the
            # kernel may have dropped the dirty pages): stop writing.
            self._failed = error
            return WriteError(f"JsonStorage: {self.path}: fsync failed: {error}")
        return None

    def _write(self, data: bytes, lines: int) -> None:
        """Write whole lines at the end of the file, or nothing (a failed write is cut off)."""
        fd = self._files.fd
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view) :]
        except OSError as error:
            try:
                os.ftruncate(fd, self._size)
            except OSError as truncate_error:
                self._failed = truncate_error
            raise WriteError(f"JsonStorage: {self.path}: write failed: {error}") from error
        self._size += len(data)
        self.lines += lines

    # -- compaction ------------------------------------------------------

    def rewrite(self, records: Iterable[dict[str, Any]]) -> None:
        """Replace the file's content by ``records`` atomically (blocking).

        Call it only at a quiet point (from :meth:`exclusive` or
        :attr:`on_quiet`), with records describing the in-memory view. Commits
        written since the last fsync are not in that view yet: their bytes
        follow the snapshot in the new file. The snapshot goes to a new file
        of a fresh name in the same directory, locked, fsynced and renamed
        over the journal; the directory is fsynced so the rename is durable.
        A failure raises :class:`StorageError` and leaves the journal as it was.
        """
        self._check_writable()
        self._replace(records)

    def _replace(self, records: Iterable[dict[str, Any]]) -> None:
        chunks = [_HEADER_LINE]
        count = 0
        for record in records:
            chunks.append(orjson.dumps(record, option=_APPEND_NEWLINE))
            count += 1
        chunks.extend(self._batch.data)
        count += self._batch.records
        data = b"".join(chunks)
        try:
            fd, temp = _create_snapshot(self.path)
        except OSError as error:
            raise StorageError(
                f"JsonStorage: {self.path}: cannot create a snapshot to compact into: {error}"
            ) from error
        try:
            try:
                # Locked before it becomes the journal: no opener ever finds
                # the journal's name on an unlocked file.
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                _write_all(fd, data)
                os.fsync(fd)
                info = os.fstat(fd)
                os.replace(temp, self.path)
            except BaseException:
                _remove_own(temp, fd)
                os.close(fd)
                raise
        except OSError as error:
            raise StorageError(
                f"JsonStorage: {self.path}: cannot write the compacted journal ({temp}): {error}"
            ) from error
        # From here the new file is the journal.
        old, self._files.fd = self._files.fd, fd
        old_identity, self.identity = self.identity, (info.st_dev, info.st_ino)
        self._size = len(data)
        self.lines = count
        try:
            links = os.fstat(old).st_nlink
        except OSError:
            links = 0
        if links:
            # The old file has another name (a hard link): keep it locked, so
            # no process opens that outdated copy while this one runs.
            self._files.stale.append(old)
            self.stale_identities.add(old_identity)
            log.warning(
                "JsonStorage: %s: the journal had %d other name(s) (hard links); compaction "
                "replaced it with a new file, so they now name an outdated copy",
                self.path,
                links,
            )
        else:
            os.close(old)
        try:
            _fsync_directory(self.path)
        except OSError as error:
            # The rename may not survive a power loss: no durability can be
            # promised until a new file is renamed in and its directory synced.
            self._failed = error
            raise WriteError(
                f"JsonStorage: {self.path}: cannot sync the directory after compaction: {error}"
            ) from error

    # -- lifetime --------------------------------------------------------

    @property
    def busy(self) -> bool:
        """True while a commit is waiting for the disk."""
        return self._flushing

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Release the file and its lock (idempotent).

        Appended records are fsynced first. If a commit is waiting for the
        disk, the file is released when that fsync is done.
        """
        if self._closed:
            return
        self._closed = True
        if not self._flushing:
            self._release()

    def _release(self) -> None:
        try:
            if self._failed is None and self._files.fd >= 0:
                os.fsync(self._files.fd)
        finally:
            self._finalizer()

    def _check_writable(self) -> None:
        if self._closed:
            raise StorageError(f"JsonStorage: {self.path} is closed")
        if self._failed is not None:
            self._recover()

    def _recover(self) -> None:
        """Start afresh after a write left the file in doubt, or raise :class:`WriteError`.

        Writes the owner's view (:attr:`snapshot`) into a new file and renames
        it over the journal, at a quiet point, when the back-off allows.
        """
        failed = self._failed
        if self.snapshot is None:
            raise WriteError(
                f"JsonStorage: {self.path}: an earlier write failed ({failed}); "
                f"nothing more is written: close and reopen the storage"
            )
        if self._flushing or not self._recovery.due():
            raise WriteError(
                f"JsonStorage: {self.path}: an earlier write failed ({failed}); nothing "
                f"more is written until a fresh copy of the journal can be written"
            )
        try:
            self._replace(self.snapshot())
        except StorageError as error:
            delay = self._recovery.failed()
            log.warning(
                "JsonStorage: %s: cannot start a fresh journal after a failed write (%s); "
                "next attempt in %.3g s",
                self.path,
                error,
                delay,
            )
            raise WriteError(
                f"JsonStorage: {self.path}: an earlier write failed ({failed}) and no fresh "
                f"copy of the journal can be written yet: {error}"
            ) from error
        self._failed = None
        self._recovery.succeeded()
        log.warning(
            "JsonStorage: %s: recovered from a failed write (%s): the journal was "
            "rewritten from memory into a fresh file",
            self.path,
            failed,
        )


_RECOVERY_FIRST = 0.1
_RECOVERY_MOST = 10.0
_BATCH = "batch"


def _encode(records: Sequence[dict[str, Any]]) -> bytes:
    """One line: the record, or a batch record holding them all.

    One line is all-or-nothing: a crash while it is written tears it, and
    replay drops it whole. So a multi-record commit (``push_bulk``) either
    is in the file entirely or not at all.
    """
    if len(records) == 1:
        return orjson.dumps(records[0], option=_APPEND_NEWLINE)
    return orjson.dumps({"op": _BATCH, "records": records}, option=_APPEND_NEWLINE)


def _check_header(path: str, record: dict[str, Any], line: bytes) -> None:
    if record.get("pyapalis") != "journal":
        raise StorageError(f"JsonStorage: {path} is not a pyapalis journal (line 1: {line[:80]!r})")
    if record.get("version") != HEADER["version"]:
        raise StorageError(
            f"JsonStorage: {path}: unsupported journal version {record.get('version')!r} "
            f"(this pyapalis reads version {HEADER['version']})"
        )


def _complete_json(line: bytes) -> bool:
    """False for a line cut short; a complete record always ends with ``}``."""
    return line.rstrip().endswith(b"}")


def _check_directory(directory: str) -> None:
    """Raise :class:`StorageError` saying why the journal's directory cannot be used."""
    try:
        info = os.stat(directory)
    except FileNotFoundError as error:
        raise StorageError(f"JsonStorage: directory {directory!r} does not exist") from error
    except PermissionError as error:
        raise StorageError(
            f"JsonStorage: cannot reach the directory {directory!r}: permission denied "
            f"(a directory on the way cannot be entered: {error})"
        ) from error
    except OSError as error:
        raise StorageError(
            f"JsonStorage: cannot reach the directory {directory!r}: {error}"
        ) from error
    if not stat.S_ISDIR(info.st_mode):
        raise StorageError(f"JsonStorage: {directory!r} is not a directory")


_OPEN_ATTEMPTS = 100


def _open_locked(path: str) -> tuple[int, os.stat_result]:
    """Open the journal at ``path`` and lock its file; the descriptor and the file's stat.

    A process that compacts renames a new (locked) file over the path: if
    that happens between our open and our lock, we locked a file that is no
    longer the journal, so we check and open again.
    """
    for _ in range(_OPEN_ATTEMPTS):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        except OSError as error:
            raise StorageError(f"JsonStorage: cannot open {path!r}: {error}") from error
        try:
            info = _lock(path, fd)
            try:
                current = os.stat(path)
            except FileNotFoundError:
                current = None
            if current is not None and (current.st_dev, current.st_ino) == (
                info.st_dev,
                info.st_ino,
            ):
                return fd, info
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # replaced (or removed) meanwhile: open what is there now
    raise StorageError(
        f"JsonStorage: cannot open {path!r}: the file was replaced {_OPEN_ATTEMPTS} times "
        f"while it was being opened"
    )


def _lock(path: str, fd: int) -> os.stat_result:
    """Lock the open file ``fd`` (a regular file) exclusively, or raise :class:`StorageError`."""
    try:
        info = os.fstat(fd)
    except OSError as error:
        raise StorageError(f"JsonStorage: cannot open {path!r}: {error}") from error
    if not stat.S_ISREG(info.st_mode):
        raise StorageError(f"JsonStorage: {path!r} is not a regular file")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in (errno.EWOULDBLOCK, errno.EACCES):
            holder = _lock_holder(info)
            who = f"process {holder}" if holder else "another process"
            raise StorageError(
                f"JsonStorage: {path} is in use by {who}; "
                f"one process at a time may open a journal (share one JsonStorage "
                f"between the workers of one process instead)"
            ) from error
        raise StorageError(f"JsonStorage: cannot lock {path!r}: {error}") from error
    return info


def _lock_holder(info: os.stat_result) -> int | None:
    """The pid of the process holding a flock on the file of ``info`` (Linux), if known."""
    wanted = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as file:
            table = file.read()
    except OSError:
        return None
    for row in table.splitlines():
        # "1: FLOCK  ADVISORY  WRITE 1234 fd:00:5678 0 EOF" (waiters have "->" second)
        fields = row.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == wanted:
            try:
                pid = int(fields[4])
            except ValueError:
                continue
            if pid > 0:
                return pid
    return None


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    offset = 0
    while True:
        chunk = os.pread(fd, 1 << 20, offset)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        offset += len(chunk)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


_SNAPSHOT_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_APPEND | os.O_CLOEXEC


def _create_snapshot(path: str) -> tuple[int, str]:
    """A new, empty file next to the journal, of a fresh name: its descriptor and name.

    ``O_EXCL`` with ``O_NOFOLLOW``: nothing planted at that name (a symlink)
    is ever followed, truncated or written through.
    """
    for _ in range(3):
        temp = f"{path}.compact-{secrets.token_hex(8)}"
        try:
            return os.open(temp, _SNAPSHOT_FLAGS, 0o600), temp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no fresh name for a snapshot", f"{path}.compact-*")


def _remove_own(temp: str, fd: int) -> None:
    """Remove the snapshot ``temp`` if that name still holds the file ``fd``."""
    try:
        mine = os.fstat(fd)
        there = os.lstat(temp)
        if (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino):
            os.unlink(temp)
    except OSError:
        pass


def _remove_stale_snapshots(path: str) -> None:
    """Remove snapshots a crash left half-written (the journal itself is intact).

    Only regular files of the names compaction uses (``<path>.compact-<hex>``,
    and ``<path>.compact`` of earlier versions); call it holding the lock.
    """
    directory, name = os.path.split(path)
    pattern = re.compile(re.escape(name) + r"\.compact(-[0-9a-f]{16})?")
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for entry in names:
        if pattern.fullmatch(entry) is None:
            continue
        stale = os.path.join(directory, entry)
        try:
            if stat.S_ISREG(os.lstat(stale).st_mode):
                os.unlink(stale)
        except OSError:
            pass


def _fsync_directory(path: str) -> None:
    fd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
