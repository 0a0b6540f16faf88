"""JsonStorage: a persistent, crash-safe task backend in one JSON-lines file.

Every state change is a record in a journal (:mod:`pyapalis.backends._json._journal`); the
state it describes lives in a :class:`~pyapalis.backends._json._store.Store` shared by
every handle on the file in a process. This module holds the handle: the
public API, and the encoding of arguments, metadata and results with the
handle's codec.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import tempfile
import time
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable
from types import TracebackType
from typing import Any

import outcome
import trio

from ..._errors import CodecError, StorageError
from ..._implementation import Attempt, Parts, Task, TaskId, set_status
from ..._status import Status
from .._capabilities import TaskResult, WorkerInfo
from .._codec import Codec, JsonCodec
from .._kit._args import (
    check_delay,
    check_final_status,
    check_name,
    check_page,
    check_positive_int,
    check_status_filter,
    check_task,
    check_task_id,
    check_task_ids,
)
from .._kit._sink import push_each
from ._journal import ReplayReport, WriteError
from ._store import FAR_FUTURE, PENDING, RUNNING, Entry, Store, open_store

__all__ = ["JsonStorage"]

_log = logging.getLogger("pyapalis.json_storage")

SETTLE_RETRY_FIRST = 0.1
SETTLE_RETRY_MOST = 10.0
"""An outcome (ack, retry) the journal cannot write is tried again after 0.1 s,
then 0.2, 0.4... up to 10 s between attempts, until it is written."""


class JsonStorage:
    """A persistent task backend in one JSON-lines file; one named queue per handle.

    ``JsonStorage(path, queue="default", codec=JsonCodec(), lease=30.0,
    compact_min=10_000)``. The file is created (mode 0600) if missing; no other
    file is kept beside it. Handles on the same file in one process share it,
    whatever name opened it (a symlink, a hard link: the file is known by its
    device and inode): ``storage.queue("emails")`` (or another
    ``JsonStorage(path, queue="emails")``) is a second typed queue in the same
    file, with its own codec, as apalis's MakeShared; the first handle's
    ``lease`` and ``compact_min`` apply to the file, and :attr:`path` is the
    name it was first opened by. A second *process* opening the file, by any
    name, is refused with :class:`StorageError` naming the holder's pid (an
    exclusive ``flock`` on the journal file itself; compaction locks the new
    file before renaming it in). A hard link made to the journal names an
    outdated copy once compaction has replaced the file: it stays locked while
    this process holds the journal, and opening it then raises
    :class:`StorageError`. Close every handle (or use ``with``) to release the
    file; the last one closed closes it.

    Delivery is at-least-once. A task taken by a worker is marked Running with
    a lease of ``lease`` seconds (wall clock); if the process dies, the next
    process finds it abandoned: :meth:`resume_abandoned` brings every such task
    back at once (the lock proves their worker is gone), and each comes back by
    itself when its lease expires. Either way the dead execution counts as an
    attempt; a task whose ``max_attempts`` is used up is marked Failed instead.
    Tasks running in this process never expire: a live worker always acks,
    retries or hands them back (a hand-back does not count the execution); see
    below for a disk that refuses those writes.

    Statuses are true: Pending, Running, Done, Failed (no attempts left) and
    Killed (aborted). Results are stored (encoded with the codec) and served by
    ``wait_for``; a result the codec cannot encode makes the task Failed with
    the :class:`CodecError` message. Arguments, metadata and results go through
    the codec (JSON by default; no pickle), which must produce UTF-8 text;
    ``Parts.data`` (Extensions) is not persisted. Arguments that cannot be
    encoded raise :class:`CodecError` at push, with nothing written; a stored
    task that cannot be rebuilt (a payload the codec cannot decode, or stored
    values a Task refuses) fails (Failed, with the error) when a worker takes
    it, and the worker goes on with the tasks behind it. Pushing a task whose
    id is already stored (or was vacuumed) stores nothing and returns that id.

    Durability: push, retry, hand-back, final statuses, :meth:`delete` and the
    capability writes are fsynced before they return. Concurrent ones share an
    fsync, done in a worker thread (inline under a virtual clock, so that
    ``autojump_clock`` does not mistake the wait for idleness). A ``push_bulk``
    (or a delete) is one line of the file: after a crash it is there entirely
    or not at all. A take is written without fsync, so a power loss (not a
    process crash) can forget that one execution started. A torn last line (a
    crash mid-write) is cut off on open and reported in :attr:`report` and the
    log; any other unreadable line raises :class:`StorageError` naming the file
    and line, leaving the file untouched; so does a record with a value no
    task can have (``max_attempts`` below 1, a timeout not above 0, a negative
    ``run_at`` or attempt count, a priority beyond 64 bits, a number that is
    not finite, an impossible status). The journal is compacted (a snapshot
    written to a new file of a fresh name beside it, never through a link,
    then renamed over it) once dead records outnumber live ones and
    ``compact_min``; a compaction that fails (a full disk) is logged and tried
    again after 1 s, then 2, 4... up to 5 minutes, not at every write.
    :meth:`vacuum` drops finished tasks and compacts (a failure raises
    :class:`StorageError`); it remembers their ids (the last 100,000), so a
    ``push_task`` of one still stores nothing: vacuum never reopens a periodic
    tick (``Pipe(CronStream(...), storage)``). :meth:`delete` forgets one task (the ``delete`` row
    below: a method, not a capability protocol); it is what ``WorkerPool``
    retention (``RemoveDone``, ``RemoveAll``) calls.

    When the disk refuses a write (full, or failing): the call that wrote
    raises :class:`StorageError` and nothing of it is reported durable, but no
    task is left Running for good. A worker's outcome (ack or retry) is tried
    again after 0.1 s, then 0.2, 0.4... up to every 10 s, until it is written;
    the worker waits meanwhile, and ``wait_for`` returns once it is. If the
    worker is cancelled meanwhile (or a hand-back cannot be written), the task
    is treated as abandoned: it comes back, its execution counted, with the
    next take once the disk takes writes again, or with
    :meth:`resume_abandoned`. A failed write is cut back off the file, and the
    journal goes on. A failed fsync leaves the file's tail in doubt (the
    kernel may have dropped the pages): that file is never trusted again;
    writes are refused until the store, from memory, has been written into a
    fresh file, fsynced and renamed over it (tried at the next write, backing
    off from 0.1 s to 10 s while it fails). Commits that were waiting for the
    failed fsync raise :class:`StorageError` and are not in the new file.

    ======================  ===========  =======================================
    capability              support      notes
    ======================  ===========  =======================================
    TaskSink                supported    push_bulk: one line, one fsync, atomic
    FetchById               supported    any queue of the file
    Update                  supported    status, attempts, run_at, limits, meta
    Reschedule              supported    not a task running in this process
    Vacuum                  supported    drops finished tasks, compacts the file
    delete                  supported    finished, Pending or abandoned tasks
    kill                    supported    Pending or abandoned tasks
    count_tasks             supported    this queue, from memory
    list_queues             supported    queues of the file holding tasks
    ResumeById              supported    Failed, Killed or abandoned tasks
    ResumeAbandoned         supported    at once, or by lease expiry
    RegisterWorker          supported
    ListWorkers             supported
    ListTasks               supported    this queue, in push order
    WaitForCompletion       supported    results kept until vacuum
    ======================  ===========  =======================================
    """

    _store: Store

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        queue: str = "default",
        codec: Codec | None = None,
        lease: float = 30.0,
        compact_min: int = 10_000,
    ) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"JsonStorage: path must be a str or os.PathLike, got {path!r}")
        check_name(queue, "JsonStorage: queue")
        if (
            isinstance(lease, bool)
            or not isinstance(lease, (int, float))
            or not 0 < lease < math.inf
        ):
            raise ValueError(
                f"JsonStorage: lease must be a finite number of seconds > 0, got {lease!r}"
            )
        check_positive_int(compact_min, "JsonStorage: compact_min")
        _check_codec(codec)
        store = open_store(os.path.realpath(os.fspath(path)), float(lease), compact_min)
        self._attach(store, queue, codec)

    def _attach(self, store: Store, queue: str, codec: Codec | None) -> None:
        self._store = store
        self._queue_name = queue
        self._queue = store.queue(queue)
        self._codec: Codec = codec if codec is not None else JsonCodec()
        self._closed = False
        store.handles += 1

    @classmethod
    def new_temp(cls, *, queue: str = "default", codec: Codec | None = None) -> JsonStorage:
        """A storage in a new private temporary directory, removed when the last handle closes."""
        directory = tempfile.mkdtemp(prefix="pyapalis-")
        try:
            storage = cls(os.path.join(directory, "tasks.jsonl"), queue=queue, codec=codec)
        except BaseException:
            os.rmdir(directory)
            raise
        storage._store.temp_dir = directory
        return storage

    def queue(self, name: str, *, codec: Codec | None = None) -> JsonStorage:
        """Another handle on the same file for the queue ``name`` (apalis's MakeShared).

        ``codec`` is the new handle's (JSON if not given); close it like any handle.
        """
        self._check_open()
        check_name(name, "JsonStorage.queue: name")
        _check_codec(codec)
        handle = JsonStorage.__new__(JsonStorage)
        handle._attach(self._store, name, codec)
        return handle

    # -- introspection -------------------------------------------------------

    @property
    def path(self) -> str:
        """The journal file (absolute, symlinks resolved)."""
        return self._store.path

    @property
    def queue_name(self) -> str:
        """The queue this handle pushes to and takes from."""
        return self._queue_name

    @property
    def report(self) -> ReplayReport:
        """What opening the file found (record count, a torn last line)."""
        return self._store.report

    def __len__(self) -> int:
        """Tasks of this queue not yet final (pending, scheduled or running)."""
        name = self._queue_name
        return sum(
            1
            for entry in self._store.entries.values()
            if entry.queue == name and not entry.status.is_final
        )

    def __repr__(self) -> str:
        return f"JsonStorage({self.path!r}, queue={self._queue_name!r})"

    # -- lifetime ------------------------------------------------------------

    def close(self) -> None:
        """Close this handle; the file is closed (and unlocked) with the last one."""
        if self._closed:
            return
        self._closed = True
        store = self._store
        store.handles -= 1
        if store.handles == 0:
            store.close()

    def __enter__(self) -> JsonStorage:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> JsonStorage:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed or self._store.journal.closed:
            raise StorageError(f"JsonStorage: {self.path} is closed")

    # -- TaskSink --------------------------------------------------------------

    async def push(self, args: Any) -> TaskId:
        """Store ``args`` as a new task, due now (durable when this returns)."""
        self._check_open()
        task_id = TaskId.generate()
        record = self._push_record(str(task_id), args, self._store.clock().wall_now())
        await self._add([record])
        return task_id

    async def push_bulk(self, items: Iterable[Any]) -> list[TaskId]:
        """Store every item as a task with one write and one fsync; all or nothing."""
        self._check_open()
        now = self._store.clock().wall_now()
        ids: list[TaskId] = []
        records = []
        for args in items:
            task_id = TaskId.generate()
            records.append(self._push_record(str(task_id), args, now))
            ids.append(task_id)
        await self._add(records)
        return ids

    async def push_task(self, task: Task) -> TaskId:
        """Store a prepared task, keeping its id, run_at, attempts, limits and metadata.

        A task without an id gets one (set on ``task``). If a task with this
        id is already stored, in any status, or was dropped by :meth:`vacuum`
        (the last 100,000 such ids are remembered), nothing is stored and its
        id is returned; after :meth:`delete` the id can be pushed again.
        """
        check_task(task, "push_task: task")
        self._check_open()
        parts = task.parts
        task_id = parts.task_id
        if task_id is None:
            task_id = parts.task_id = TaskId.generate()
        key = str(task_id)
        store = self._store
        stored = store.entries.get(key)
        if (
            (stored is not None and not stored.deleting)
            or key in store.reserved
            or key in store.vacuumed
        ):
            await trio.lowlevel.checkpoint()
            return task_id
        record = self._push_record(key, task.args, parts.run_at)
        record["attempts"] = parts.attempt.current()
        for field, value in (
            ("max", parts.max_attempts),
            ("timeout", parts.timeout),
            ("priority", parts.priority or None),
        ):
            if value is not None:
                record[field] = value
        if parts.ctx:
            record["meta"] = self._encode(parts.ctx, "metadata")
        await self._add([record])
        return task_id

    async def push_stream(self, items: AsyncIterable[Any]) -> int:
        """Store every item an async iterable yields, as it yields; returns the count."""
        return await push_each(self.push, items)

    def _push_record(self, task_id: str, args: Any, run_at: float) -> dict[str, Any]:
        return {
            "op": "push",
            "id": task_id,
            "queue": self._queue_name,
            "args": self._encode(args, "arguments"),
            "run_at": run_at,
        }

    def _encode(self, value: Any, what: str) -> str:
        try:
            data = self._codec.encode(value)
        except CodecError as error:
            raise CodecError(f"JsonStorage: cannot store the task's {what}: {error}") from error
        except Exception as error:
            raise CodecError(
                f"JsonStorage: cannot store the task's {what}: {type(error).__name__}: {error}"
            ) from error
        try:
            return data.decode("utf-8")
        except (AttributeError, UnicodeDecodeError) as error:
            raise CodecError(
                f"JsonStorage: the codec must produce UTF-8 text bytes for the {what}, "
                f"got {data!r:.40}"
            ) from error

    async def _add(self, records: list[dict[str, Any]]) -> None:
        """Store new tasks durably; they are queued once on disk."""
        store = self._store
        keys = [record["id"] for record in records]
        # Deadlines are fixed now, not when the fsync is done, so a task is
        # due exactly when its run_at says.
        now = trio.current_time()
        wall_now = store.clock().wall_now(now)
        deadlines = [now + (record["run_at"] - wall_now) for record in records]
        store.reserved.update(keys)

        def durable() -> None:
            entries = store.entries
            for record, deadline in zip(records, deadlines, strict=True):
                entry = entries[record["id"]] = Entry.pushed(record)
                store.schedule(entry, deadline)

        try:
            await store.commit(records, durable)
        finally:
            store.reserved.difference_update(keys)

    # -- the Backend protocol ------------------------------------------------------

    def bind(self) -> None:
        """Adopt the calling trio run (scheduled deadlines are computed on its clock)."""
        self._check_open()
        self._store.refresh(self._queue)

    def take_nowait(self) -> Task | None:
        """The next due task of this queue, marked Running; None if none is due."""
        self._check_open()
        store = self._store
        store.refresh(self._queue)
        ready = self._queue.ready
        entries = store.entries
        while ready:
            entry = ready.popleft()
            if entry.status is not PENDING or entry.busy or entries.get(entry.task_id) is not entry:
                # Taken, settled, vacuumed, or being changed (the change re-queues it).
                continue
            try:
                task = self._decode_task(entry)
                if task is not None:
                    store.take(entry)
                    return task
            except BaseException:
                # The journal refused the write: the task stays first in line.
                if entry.status is PENDING:
                    ready.appendleft(entry)
                raise
        return None

    async def take(self) -> Task:
        """Wait for the next due task of this queue (cancellable; nothing is lost)."""
        queue = self._queue
        while True:
            task = self.take_nowait()
            if task is not None:
                return task
            deadline = self._store.refresh(queue)
            if queue.ready:
                continue
            try:
                with trio.move_on_at(deadline):
                    await queue.lot.park()
            except trio.Cancelled:
                # We may have been woken for a task we will now not take: pass
                # the wake-up on to another taker.
                if queue.ready and queue.lot:
                    queue.lot.unpark()
                raise

    def _decode_task(self, entry: Entry) -> Task | None:
        """The task of a stored entry; a task that cannot be rebuilt is failed (None).

        A payload the codec cannot decode, or stored values a Task does not
        accept, fail the task (written, not synced) instead of the worker.
        """
        try:
            args = self._codec.decode(entry.args.encode())
            ctx = self._codec.decode(entry.meta.encode()) if entry.meta is not None else None
        except Exception as error:
            self._fail_stored(
                entry, f"CodecError: cannot decode the stored task: {_describe(error)}"
            )
            return None
        try:
            parts = Parts(
                task_id=TaskId(entry.task_id),
                attempt=Attempt(entry.attempts),
                ctx=ctx,
                run_at=entry.run_at,
                max_attempts=entry.max_attempts,
                timeout=entry.timeout,
                priority=entry.priority,
            )
            return Task.from_parts(args, parts)
        except Exception as error:
            self._fail_stored(
                entry, f"StorageError: the stored task is not a valid task: {_describe(error)}"
            )
            return None

    def _fail_stored(self, entry: Entry, message: str) -> None:
        """Mark a Pending entry Failed with ``message`` (written, not synced)."""
        _log.error("JsonStorage: %s: task %s failed: %s", self.path, entry.task_id, message)
        store = self._store
        repaired = entry.repair()
        if repaired:
            _log.error(
                "JsonStorage: %s: task %s: reset the impossible %s",
                self.path,
                entry.task_id,
                ", ".join(repaired),
            )
        store.append(
            {
                "op": "final",
                "id": entry.task_id,
                "status": Status.Failed.value,
                "attempts": entry.attempts,
                "error": message,
            }
        )
        store.finished(entry)

    async def ack(
        self, task: Task, status: Status, result: Any, error: BaseException | None
    ) -> None:
        """Record a final status durably: Done with its result, Failed or Killed.

        A result the codec cannot encode makes the task Failed with the
        :class:`CodecError` message instead.
        """
        check_final_status(status, "ack: status")
        entry = self._own(task, "ack")
        record: dict[str, Any] = {
            "op": "final",
            "id": entry.task_id,
            "status": status.value,
            "attempts": task.parts.attempt.current(),
        }
        if status is Status.Done:
            if result is not None:
                try:
                    record["result"] = self._encode(result, "result")
                except CodecError as codec_error:
                    record["status"] = Status.Failed.value
                    record["error"] = _describe(codec_error)
        elif error is not None:
            record["error"] = _describe(error)
        store = self._store

        def durable() -> None:
            store.settle(entry, record)
            # Task layers see the status the backend recorded (see _service).
            set_status(task, entry.status)

        await self._settle(entry, record, durable, "outcome")

    async def retry(self, task: Task, delay: float, error: BaseException) -> None:
        """Queue the task again ``delay`` seconds from now, its attempts kept (durable)."""
        entry = self._own(task, "retry")
        store = self._store
        clock = store.clock()
        deadline = trio.current_time() + delay
        record = {
            "op": "retry",
            "id": entry.task_id,
            "attempts": task.parts.attempt.current(),
            "run_at": min(clock.wall_time(deadline), FAR_FUTURE),
            "error": _describe(error),
        }

        def durable() -> None:
            store.settle(entry, record)
            store.schedule(entry, deadline)
            set_status(task, PENDING)

        await self._settle(entry, record, durable, "retry")

    async def release(self, task: Task) -> None:
        """Take back an interrupted task; that execution does not count (durable).

        It goes back to the front of its queue.
        """
        entry = self._own(task, "release")
        store = self._store
        # The take counted the execution: undo that count.
        attempts = max(entry.attempts - 1, 0) if entry.status is RUNNING else entry.attempts
        record = {"op": "release", "id": entry.task_id, "attempts": attempts}

        def durable() -> None:
            store.settle(entry, record)
            store.enqueue(entry, front=True)
            set_status(task, PENDING)

        try:
            await store.commit([record], durable, (entry,))
        except WriteError:
            # Not retried: a hand-back happens on the way out (shutdown,
            # cancellation), which must not wait for the disk.
            store.hand_back(entry)
            raise

    async def _settle(
        self, entry: Entry, record: dict[str, Any], durable: Callable[[], None], what: str
    ) -> None:
        """Commit the end of an execution, trying again with back-off while the
        journal cannot write (a full disk); cancelled meanwhile, the task is
        handed back (see :meth:`Store.hand_back`)."""
        store = self._store
        delay = 0.0
        while True:
            try:
                await store.commit([record], durable, (entry,))
                return
            except WriteError as error:
                delay = SETTLE_RETRY_FIRST if not delay else min(delay * 2, SETTLE_RETRY_MOST)
                _log.warning(
                    "JsonStorage: %s: cannot record the %s of task %s (%s); trying again in %.3g s",
                    self.path,
                    what,
                    entry.task_id,
                    error,
                    delay,
                )
            try:
                await trio.sleep(delay)
            except BaseException:
                store.hand_back(entry)
                raise

    def _own(self, task: Task, method: str) -> Entry:
        check_task(task, f"{method}: task")
        self._check_open()
        task_id = task.parts.task_id
        entry = self._store.entries.get(str(task_id)) if task_id is not None else None
        if entry is None:
            raise StorageError(f"JsonStorage: task {task_id} is not in {self.path}")
        if entry.deleting:
            raise StorageError(f"JsonStorage: task {task_id} is being deleted from {self.path}")
        return entry

    # -- capabilities ------------------------------------------------------------

    async def fetch_by_id(self, task_id: TaskId | str) -> Task | None:
        """The stored task with this id (any queue of the file, any status), or None."""
        key = str(check_task_id(task_id, "fetch_by_id: task_id"))
        self._check_open()
        entry = self._store.entries.get(key)
        await trio.lowlevel.checkpoint()
        if entry is None:
            return None
        return self._entry_task(entry)

    def _entry_task(self, entry: Entry) -> Task:
        try:
            args = self._codec.decode(entry.args.encode())
            ctx = self._codec.decode(entry.meta.encode()) if entry.meta is not None else None
        except Exception as error:
            raise CodecError(
                f"JsonStorage: task {entry.task_id} cannot be decoded: {error}"
            ) from error
        try:
            parts = Parts(
                task_id=TaskId(entry.task_id),
                attempt=Attempt(entry.attempts),
                ctx=ctx,
                status=entry.status,
                run_at=entry.run_at,
                max_attempts=entry.max_attempts,
                timeout=entry.timeout,
                priority=entry.priority,
            )
            return Task.from_parts(args, parts)
        except Exception as error:
            raise StorageError(
                f"JsonStorage: {self.path}: task {entry.task_id} is not a valid task: "
                f"{_describe(error)}"
            ) from error

    async def update(self, task: Task) -> None:
        """Store the task's parts: status, attempts, run_at, max_attempts, timeout, metadata.

        Making a task Pending queues it (at its ``run_at``); a final status is
        reported to ``wait_for``. A Running task cannot be updated (its worker
        owns it), nor can a task be made Running or Queued.
        """
        entry = self._own(task, "update")
        if entry.status is RUNNING:
            raise StorageError(
                f"JsonStorage.update: task {entry.task_id} is Running; its worker owns it"
            )
        parts = task.parts
        status = parts.status
        if status is RUNNING or status is Status.Queued:
            raise ValueError(
                f"update: status must be Pending, Done, Failed or Killed, got {status.value}"
            )
        record: dict[str, Any] = {
            "op": "update",
            "id": entry.task_id,
            "status": status.value,
            "attempts": parts.attempt.current(),
            "run_at": parts.run_at,
            "max": parts.max_attempts,
            "timeout": parts.timeout,
            "priority": parts.priority,
            "meta": self._encode(parts.ctx, "metadata") if parts.ctx else None,
        }
        store = self._store
        deadline = store.clock().deadline(parts.run_at)

        def durable() -> None:
            store.abandoned.pop(entry.task_id, None)
            store.apply(record)
            store.unqueue(entry)
            if entry.status is PENDING:
                store.schedule(entry, deadline)
            elif entry.status.is_final:
                store.finished(entry)

        await store.commit([record], durable, (entry,))

    async def reschedule(self, task: Task, delay: float) -> None:
        """Queue a stored task again ``delay`` seconds from now, its attempts kept.

        Works on a Pending, final or abandoned task; a task running in this
        process belongs to its worker (which retries it) and raises
        :class:`StorageError`.
        """
        check_task(task, "reschedule: task")  # the task first, as every backend checks
        seconds = check_delay(delay, "reschedule: delay")
        entry = self._own(task, "reschedule")
        store = self._store
        if entry.task_id in store.in_flight:
            raise StorageError(
                f"JsonStorage.reschedule: task {entry.task_id} is running in this process; "
                f"its worker owns it"
            )
        clock = store.clock()
        deadline = trio.current_time() + seconds
        record = {
            "op": "retry",
            "id": entry.task_id,
            "attempts": entry.attempts,
            "run_at": clock.wall_time(deadline),
        }

        def durable() -> None:
            store.settle(entry, record)
            store.unqueue(entry)
            store.schedule(entry, deadline)

        await store.commit([record], durable, (entry,))

    async def vacuum(self) -> int:
        """Forget every finished task of the file (all queues) and compact it; how many."""
        self._check_open()
        store = self._store
        return await store.journal.exclusive(store.vacuum)

    async def delete(self, task_id: TaskId | str) -> bool:
        """Forget a task for good (any queue of the file); False for an unknown id.

        Works on a finished (Done, Failed, Killed), Pending or abandoned task;
        a task running in this process belongs to its worker and raises
        :class:`StorageError`. The deletion is durable when this returns: the
        task is gone from :meth:`fetch_by_id` (None), :meth:`list_tasks` and
        ``len``, and :meth:`check_status` / :meth:`wait_for` raise ``KeyError``
        for its id, as for any id the file does not hold; whoever was already
        waiting for it gets that ``KeyError`` (it will never finish). Its id
        may be pushed again. The id of a vacuumed task (see :meth:`vacuum`)
        can be deleted too: True, and the id may be pushed again. One record
        in the journal: after a crash the task is there entirely or not at all.
        """
        key = str(check_task_id(task_id, "delete: task_id"))
        self._check_open()
        store = self._store
        entry = store.entries.get(key)
        if entry is None:
            if key not in store.vacuumed:
                await trio.lowlevel.checkpoint()
                return False
            # Vacuumed, its id remembered: forgetting the id makes it pushable again.
            await store.commit([{"op": "delete", "id": key}], lambda: store.vacuumed.pop(key, None))
            return True
        if entry.deleting:
            # Another delete of it is on its way to the disk: return once it
            # is there (applied), as if that one came first.
            await store.commit([], _nothing)
            return False
        if key in store.in_flight:
            raise StorageError(
                f"JsonStorage.delete: task {key} is running in this process; its worker owns it"
            )
        # From here nothing else may be written about it: a record after the
        # delete would name a task the replay no longer knows.
        entry.deleting = True
        try:
            await store.commit([{"op": "delete", "id": key}], lambda: store.forget(entry), (entry,))
        except BaseException:
            if store.entries.get(key) is entry:
                entry.deleting = False
            raise
        return True

    async def kill_by_id(self, task_id: TaskId | str, reason: str = "killed") -> bool:
        """Make a Pending or abandoned task Killed for good, ``reason`` its error (durable).

        False for an unknown id or a finished task; a task running in this
        process belongs to its worker and raises :class:`StorageError`.
        """
        key = str(check_task_id(task_id, "kill_by_id: task_id"))
        if not isinstance(reason, str):
            raise TypeError(f"kill_by_id: reason must be a str, got {reason!r}")
        self._check_open()
        store = self._store
        entry = store.entries.get(key)
        if entry is None or entry.deleting or entry.status.is_final:
            await trio.lowlevel.checkpoint()
            return False
        if key in store.in_flight:
            raise StorageError(
                f"JsonStorage.kill_by_id: task {key} is running in this process; its worker owns it"
            )
        record = {
            "op": "final",
            "id": key,
            "status": Status.Killed.value,
            "attempts": entry.attempts,
            "error": reason,
        }

        def durable() -> None:
            store.unqueue(entry)
            store.settle(entry, record)

        await store.commit([record], durable, (entry,))
        return True

    async def resume_by_id(self, task_id: TaskId | str) -> bool:
        """Make a Failed, Killed or abandoned task Pending again with a fresh attempt budget.

        It is due at once. False for an unknown id or a task that is Pending,
        Done or running in this process.
        """
        key = str(check_task_id(task_id, "resume_by_id: task_id"))
        self._check_open()
        store = self._store
        entry = store.entries.get(key)
        if (
            entry is None
            or entry.deleting
            or not (entry.status in (Status.Failed, Status.Killed) or key in store.abandoned)
        ):
            await trio.lowlevel.checkpoint()
            return False
        record = {"op": "resume", "id": key, "attempts": 0, "error": None}

        def durable() -> None:
            store.settle(entry, record)
            store.unqueue(entry)
            store.enqueue(entry, due=True)

        await store.commit([record], durable, (entry,))
        return True

    async def resume_abandoned(self) -> int:
        """Re-queue every task left Running by a process that is gone; returns how many.

        The lock on the file proves those processes are gone. Tasks of this
        process whose outcome could not be written (a full disk) before their
        worker was cancelled come back this way too. Each resumption
        counts the dead execution as an attempt; a task out of attempts is
        marked Failed (and counted too). Durable when this returns.
        """
        self._check_open()
        store = self._store
        abandoned = [entry for entry in store.abandoned.values() if not entry.busy]
        for entry in abandoned:
            store.resume(entry)
        await store.commit([], _nothing)
        return len(abandoned)

    async def register_worker(self, name: str) -> None:
        """Record ``name`` as a live worker of this process (its heartbeat)."""
        check_name(name, "register_worker: name")
        self._check_open()
        store = self._store
        now = time.time()
        pid = os.getpid()
        known = store.workers.get(name)
        started = known.started_at if known is not None and known.pid == pid else now
        record = {"op": "worker", "name": name, "pid": pid, "started": started, "seen": now}

        def durable() -> None:
            store.apply(record)

        await store.commit([record], durable)

    async def list_workers(self) -> list[WorkerInfo]:
        """The workers registered in this file, by name."""
        self._check_open()
        await trio.lowlevel.checkpoint()
        return sorted(self._store.workers.values(), key=lambda info: info.name)

    async def list_tasks(
        self, status: Status | str | None = None, page: int = 1, page_size: int = 10
    ) -> list[Task]:
        """This queue's tasks in push order, optionally of one status, a page at a time."""
        status = check_status_filter(status, "list_tasks: status")
        check_page(page, "list_tasks: page")
        check_page(page_size, "list_tasks: page_size")
        self._check_open()
        await trio.lowlevel.checkpoint()
        name = self._queue_name
        matching = (
            entry
            for entry in self._store.entries.values()
            if entry.queue == name and (status is None or entry.status is status)
        )
        start = (page - 1) * page_size
        return [
            self._entry_task(entry)
            for entry in itertools.islice(matching, start, start + page_size)
        ]

    async def list_queues(self) -> list[str]:
        """The file's queues that hold tasks, and this handle's own, sorted."""
        self._check_open()
        await trio.lowlevel.checkpoint()
        return sorted({self._queue_name, *(entry.queue for entry in self._store.entries.values())})

    async def count_tasks(self) -> dict[Status, int]:
        """How many of this queue's tasks are in each status (zeros included)."""
        self._check_open()
        await trio.lowlevel.checkpoint()
        counts = dict.fromkeys(Status, 0)
        name = self._queue_name
        for entry in self._store.entries.values():
            if entry.queue == name:
                counts[entry.status] += 1
        return counts

    # -- WaitForCompletion ---------------------------------------------------------

    async def check_status(self, task_ids: Iterable[TaskId | str]) -> list[TaskResult]:
        """The current status (and outcome, once final) of each task, in order.

        Raises ``KeyError`` for an id the file does not hold.
        """
        entries = self._entries_of(task_ids, "check_status")
        await trio.lowlevel.checkpoint()
        return [self._result_of(entry) for entry in entries]

    async def wait_for_single(self, task_id: TaskId | str) -> TaskResult:
        """Wait until the task is final and return its result."""
        key = check_task_id(task_id, "wait_for_single: task_id")
        async with contextlib.aclosing(self._outcomes([key], "wait_for_single")) as results:
            async for result in results:
                return result
        raise AssertionError("unreachable: _outcomes() yields every id it is given")

    async def wait_for(self, task_ids: Iterable[TaskId | str]) -> AsyncGenerator[TaskResult, None]:
        """Yield each task's result as it becomes final: already final ones first, in
        the order given, then in completion order. Each task is reported once.

        Raises ``KeyError`` (before yielding anything) for an id the file does not hold.
        """
        async with contextlib.aclosing(self._outcomes(task_ids, "wait_for")) as results:
            async for result in results:
                yield result

    async def _outcomes(
        self, task_ids: Iterable[TaskId | str], what: str
    ) -> AsyncGenerator[TaskResult, None]:
        """The store's result waiters (the kit's), fed by every handle on the file."""
        entries = {TaskId(entry.task_id): entry for entry in self._entries_of(task_ids, what)}

        def final(keys: set[TaskId]) -> dict[TaskId, tuple[Entry, bool]]:
            return {
                key: (entry, False)
                for key, entry in entries.items()
                if key in keys and entry.status.is_final
            }

        waiting = self._store.waiters.wait(entries, final, check=self._check_open)
        async with contextlib.aclosing(waiting) as outcomes:
            async for _key, (entry, deleted) in outcomes:
                if deleted:
                    raise KeyError(f"{what}: task {entry.task_id!r} was deleted from {self.path}")
                yield self._result_of(entry)

    def _entries_of(self, task_ids: Iterable[TaskId | str], what: str) -> list[Entry]:
        keys = [str(task_id) for task_id in check_task_ids(task_ids, f"{what}: task_ids")]
        self._check_open()
        entries = self._store.entries
        found = []
        for key in keys:
            entry = entries.get(key)
            if entry is None:
                raise KeyError(f"{what}: unknown task id {key!r} in {self.path}")
            found.append(entry)
        return found

    def _result_of(self, entry: Entry) -> TaskResult:
        task_id = TaskId(entry.task_id)
        status = entry.status
        if status is Status.Done:
            if entry.result is None:
                return TaskResult.done(task_id, None)
            try:
                return TaskResult.done(task_id, self._codec.decode(entry.result.encode()))
            except Exception as error:
                return TaskResult(
                    task_id,
                    status,
                    outcome.Error(StorageError(f"the stored result cannot be decoded: {error}")),
                )
        if status.is_final:
            return TaskResult.failed(task_id, status, entry.error or status.value)
        return TaskResult(task_id, status)


def _nothing() -> None:
    """The apply of a commit that only waits for the disk."""


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _check_codec(codec: object) -> None:
    if codec is not None and not isinstance(codec, Codec):
        raise TypeError(f"JsonStorage: codec must have encode() and decode(), got {codec!r}")
