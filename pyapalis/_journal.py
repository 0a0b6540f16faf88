"""A crash-safe append-only file of JSON records: the storage under JsonStorage.

One record per line, after a header line; the records of one commit share a
line (a batch record), so a commit is all-or-nothing. Every write happens on
the trio thread, in call order, as one ``write``; a write that fails is cut
back off the file, so a line is in the file whole or not at all, and a crash
can only tear the last line (which :meth:`Journal.replay` tolerates,
reports and cuts off). :meth:`Journal.commit` returns once its records are on
disk: concurrent commits share one fsync (group commit), run in a worker
thread (inline under a virtual clock, see :mod:`pyapalis._clock`).

A commit may carry an ``apply`` callback, run by the task doing the fsync as
soon as the records are durable, before anything else can happen. The caller's
in-memory view therefore changes exactly when the file does, and at every
*quiet point* (between two fsyncs) memory holds every durable record: that is
where compaction runs. Compaction writes a snapshot, plus the bytes of commits
written but not yet synced, to ``<path>.compact``, fsyncs it and renames it
over the journal (then fsyncs the directory), so a crash at any instant leaves
either the old file or the new one, never a mixture.

One process holds a journal at a time: an exclusive ``flock`` on
``<path>.lock`` (which holds the holder's pid) refuses a second process with a
clear error instead of letting two writers interleave. Within a process,
callers share one :class:`Journal` per path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import logging
import os
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, TypeVar

import orjson
import outcome
import trio

from ._clock import run_clock
from ._errors import StorageError

__all__ = ["HEADER", "Journal", "ReplayReport"]

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


class _Files:
    """The journal's two descriptors; closed by :meth:`Journal.close` or, if the
    journal is dropped unclosed, by a finalizer (which releases the lock)."""

    __slots__ = ("fd", "lock_fd")

    def __init__(self, fd: int, lock_fd: int) -> None:
        self.fd = fd
        self.lock_fd = lock_fd

    def close(self) -> None:
        fd, lock_fd, self.fd, self.lock_fd = self.fd, self.lock_fd, -1, -1
        try:
            if fd >= 0:
                os.close(fd)
        finally:
            if lock_fd >= 0:
                os.close(lock_fd)  # closing the descriptor releases the flock


class Journal:
    """An open journal file: replayed once, then appended to and compacted.

    Not thread-safe: use it from the trio thread of one run at a time.
    """

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        directory = os.path.dirname(self.path)
        if not os.path.isdir(directory):
            raise StorageError(f"JsonStorage: directory {directory!r} does not exist")
        lock_fd = _acquire_lock(self.path + ".lock")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as error:
            os.close(lock_fd)
            raise StorageError(f"JsonStorage: cannot open {self.path!r}: {error}") from error
        self._files = _Files(fd, lock_fd)
        self._finalizer = weakref.finalize(self, _Files.close, self._files)
        _remove_stale_compaction(self.path + ".compact")
        self._size = 0
        self._batch = _Batch()
        self._requests: list[_Request[Any]] = []
        self._flushing = False
        self._closed = False
        self._failed: BaseException | None = None
        self.lines = 0
        """Records in the file now (the header excluded): compaction's yardstick."""
        self.on_quiet: Callable[[], None] | None = None
        """Called at each quiet point after an fsync (the owner's compaction policy)."""
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
        with open(self.path, "rb") as file:
            data = file.read()
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
                    error = StorageError(f"JsonStorage: {self.path}: an earlier write failed")
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
            # pages ever reaching the disk: never report durability again.
            return StorageError(f"JsonStorage: {self.path}: an earlier write failed")
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
            return StorageError(f"JsonStorage: {self.path}: fsync failed: {error}")
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
            raise StorageError(f"JsonStorage: {self.path}: write failed: {error}") from error
        self._size += len(data)
        self.lines += lines

    # -- compaction ------------------------------------------------------

    def rewrite(self, records: Iterable[dict[str, Any]]) -> None:
        """Replace the file's content by ``records`` atomically (blocking).

        Call it only at a quiet point (from :meth:`exclusive` or
        :attr:`on_quiet`), with records describing the in-memory view. Commits
        written since the last fsync are not in that view yet: their bytes
        follow the snapshot in the new file. The snapshot goes to
        ``<path>.compact``, which is fsynced and renamed over the journal; the
        directory is fsynced so the rename is durable.
        """
        self._check_writable()
        temp = self.path + ".compact"
        chunks = [_HEADER_LINE]
        count = 0
        for record in records:
            chunks.append(orjson.dumps(record, option=_APPEND_NEWLINE))
            count += 1
        chunks.extend(self._batch.data)
        count += self._batch.records
        data = b"".join(chunks)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            new_fd = os.open(self.path + ".compact", os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        except BaseException:
            _remove_stale_compaction(temp)
            raise
        try:
            os.replace(temp, self.path)
        except BaseException:
            os.close(new_fd)
            _remove_stale_compaction(temp)
            raise
        # From here the new file is the journal (the descriptor opened before
        # the rename follows it); the old inode goes with its last descriptor.
        old, self._files.fd = self._files.fd, new_fd
        os.close(old)
        self._size = len(data)
        self.lines = count
        _fsync_directory(self.path)

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
            raise StorageError(
                f"JsonStorage: {self.path}: an earlier write failed ({self._failed}); "
                f"nothing more is written: close and reopen the storage"
            )


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


def _acquire_lock(lock_path: str) -> int:
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as error:
        raise StorageError(f"JsonStorage: cannot create the lock {lock_path!r}: {error}") from error
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        holder = _read_pid(fd)
        os.close(fd)
        if error.errno in (errno.EWOULDBLOCK, errno.EACCES):
            who = f"process {holder}" if holder else "another process"
            raise StorageError(
                f"JsonStorage: {lock_path[: -len('.lock')]} is in use by {who}; "
                f"one process at a time may open a journal (share one JsonStorage "
                f"between the workers of one process instead)"
            ) from error
        raise StorageError(f"JsonStorage: cannot lock {lock_path!r}: {error}") from error
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def _read_pid(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return ""


def _remove_stale_compaction(temp: str) -> None:
    """Remove a snapshot a crash left half-written (the journal itself is intact)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temp)


def _fsync_directory(path: str) -> None:
    fd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
