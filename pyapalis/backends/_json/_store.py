"""The state of one JsonStorage file in a process, shared by every handle on it.

:class:`Store` owns the journal (:mod:`pyapalis.backends._json._journal`) and the view rebuilt
from it: one :class:`Entry` per task, the queues takers pull from, the tasks
abandoned by dead processes, the waiters of ``wait_for``. Handles
(:class:`pyapalis.backends._json._storage.JsonStorage`) encode and decode payloads with
their codec and call the store to change state.

How state changes, so that memory and file never disagree:

* A durable change goes through :meth:`Store.commit`: the record is written at
  once, and its effect on memory is applied when the record is on disk (by the
  task that ran the fsync, before anything else runs). Meanwhile the entry is
  *busy*: takers skip it and lease expiry leaves it alone, so nothing can act
  on a state the pending record is about to replace.
* A change that need not be durable (a take, a resumption, a payload found
  undecodable) is written with :meth:`Journal.append` and applied at once;
  the next fsync carries it to disk.
* A delete is a durable change whose effect removes the entry. From the
  moment its record is written the entry is *deleting*: nothing more is
  written about it (a record after the delete would name a task the replay
  no longer knows, and the file could not be opened).
* Compaction runs at the journal's quiet points, when memory holds every
  record written (see :mod:`pyapalis.backends._json._journal`).

Times: ``run_at`` and leases are stored as wall-clock seconds and converted to
trio deadlines with the run's :class:`~pyapalis.backends._kit._clock.DeadlineConverter`.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import os
import shutil
import uuid
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import trio

from ..._errors import StorageError
from ..._implementation import TaskId
from ..._status import Status
from .._capabilities import WorkerInfo
from .._kit._clock import DeadlineConverter, run_clock
from .._kit._results import ResultWaiters
from ._journal import Backoff, Journal, WriteError

__all__ = ["FAR_FUTURE", "Entry", "Queue", "Store", "open_store"]

PENDING = Status.Pending
RUNNING = Status.Running
FAILED = Status.Failed

FAR_FUTURE = 1e15
"""A wall-clock time ~31 million years away: an infinite delay, as JSON can store it."""

COMPACT_RETRY_FIRST = 1.0
COMPACT_RETRY_MOST = 300.0
"""A compaction that failed is tried again after 1 s, then 2, 4... up to 5 minutes."""

RESUME_RETRY_FIRST = 0.1
RESUME_RETRY_MOST = 10.0
"""An expired lease whose resumption cannot be written is tried again after
0.1 s, then 0.2, 0.4... up to 10 s."""

VACUUMED_IDS = 100_000
"""How many ids of vacuumed tasks a store remembers (the most recent): a push
of one stores nothing, so vacuum never reopens a periodic tick."""

log = logging.getLogger("pyapalis.journal")


class Entry:
    """One stored task: what the journal knows of it."""

    __slots__ = (
        "args",
        "attempts",
        "busy",
        "deleting",
        "error",
        "lease_until",
        "max_attempts",
        "meta",
        "owner",
        "priority",
        "queue",
        "result",
        "run_at",
        "status",
        "task_id",
        "timeout",
    )

    def __init__(self, record: dict[str, Any]) -> None:
        # Every value is checked against what a Task accepts: a record that
        # could not become a Task is reported at open (with its line), not
        # met by a worker.
        self.task_id: str = _text(record, "id")
        self.queue: str = _text(record, "queue")
        self.args: str = _field(record, "args", str)
        self.meta: str | None = _optional(record, "meta", str)
        self.run_at: float = _timestamp(record, "run_at")
        self.attempts: int = _attempts(record) if record.get("attempts") is not None else 0
        self.max_attempts: int | None = _max_attempts(record)
        self.timeout: float | None = _timeout(record)
        self.priority: int = _priority(record)
        self.status = _stored_status(_optional(record, "status", str) or "Pending", _STORED)
        self.result: str | None = _optional(record, "result", str)
        self.error: str | None = _optional(record, "error", str)
        self.lease_until: float | None = _optional_number(record, "lease")
        self.owner: str | None = _optional(record, "owner", str)
        self.busy = 0
        """Commits on this entry waiting for the disk."""
        self.deleting = False
        """A delete record for it is written: nothing more may be written about it."""

    @classmethod
    def pushed(cls, record: dict[str, Any]) -> Entry:
        """The entry of a push record this process built (no need to check its fields)."""
        entry = cls.__new__(cls)
        entry.task_id = record["id"]
        entry.queue = record["queue"]
        entry.args = record["args"]
        entry.meta = record.get("meta")
        entry.run_at = record["run_at"]
        entry.attempts = record.get("attempts", 0)
        entry.max_attempts = record.get("max")
        entry.timeout = record.get("timeout")
        entry.priority = record.get("priority", 0)
        entry.status = PENDING
        entry.result = entry.error = entry.lease_until = entry.owner = None
        entry.busy = 0
        entry.deleting = False
        return entry

    def repair(self) -> list[str]:
        """Reset the values no stored record may hold (an entry that cannot
        become a Task is failed with them); the names of those reset."""
        repaired = []
        for key, value, check, default in (
            ("attempts", self.attempts, _attempts, 0),
            ("run_at", self.run_at, _run_at, 0.0),
            ("max", self.max_attempts, _max_attempts, None),
            ("timeout", self.timeout, _timeout, None),
            ("priority", self.priority, _priority, 0),
        ):
            try:
                check({key: value})
            except (KeyError, TypeError, ValueError):
                repaired.append(f"{key}={value!r:.40}")
                setattr(self, _ATTRIBUTES.get(key, key), default)
        return repaired

    def snapshot(self) -> dict[str, Any]:
        """The record that recreates this entry (compaction writes these)."""
        record: dict[str, Any] = {
            "op": "put",
            "id": self.task_id,
            "queue": self.queue,
            "args": self.args,
            "run_at": self.run_at,
            "attempts": self.attempts,
            "status": self.status.value,
        }
        for key, value in (
            ("meta", self.meta),
            ("max", self.max_attempts),
            ("timeout", self.timeout),
            ("priority", self.priority or None),
            ("result", self.result),
            ("error", self.error),
            ("lease", self.lease_until),
            ("owner", self.owner),
        ):
            if value is not None:
                record[key] = value
        return record


class Queue:
    """The Pending tasks of one named queue, and the takers waiting for them."""

    __slots__ = ("lot", "ready", "scheduled", "unconverted")

    def __init__(self) -> None:
        self.ready: deque[Entry] = deque()
        # (trio deadline, sequence, entry): the sequence keeps equal deadlines FIFO.
        self.scheduled: list[tuple[float, int, Entry]] = []
        # Entries whose deadline is not known yet: loaded before any trio run
        # used the store, or queued under an earlier run.
        self.unconverted: list[Entry] = []
        self.lot = trio.lowlevel.ParkingLot()


class Store:
    """Everything one journal file holds, shared by every handle on it in a process."""

    def __init__(self, path: str, lease: float, compact_min: int) -> None:
        self.journal = Journal(path)
        self.path = self.journal.path
        self.lease = lease
        self.compact_min = compact_min
        self.owner = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.entries: dict[str, Entry] = {}
        self.queues: dict[str, Queue] = {}
        self.workers: dict[str, WorkerInfo] = {}
        # Running entries of earlier processes (or earlier stores of this one),
        # and a heap of their leases (wall time) for expiry.
        self.abandoned: dict[str, Entry] = {}
        self.leases: list[tuple[float, int, Entry]] = []
        self.in_flight: dict[str, Entry] = {}
        self.waiters: ResultWaiters[tuple[Entry, bool]] = ResultWaiters()
        """Callers of ``wait_for`` on any handle: handed ``(entry, deleted)``."""
        self.reserved: set[str] = set()
        """Ids whose push is waiting for the disk."""
        self.vacuumed: OrderedDict[str, None] = OrderedDict()
        """Ids of finished tasks :meth:`vacuum` dropped, the last :data:`VACUUMED_IDS`:
        a push of one stores nothing (a periodic tick is never run twice)."""
        self.sequence = itertools.count()
        self.handles = 0
        self.temp_dir: str | None = None
        self._run_token: object = None
        self._converter: DeadlineConverter | None = None
        try:
            records, self.report = self.journal.replay()
            self._load(records)
        except BaseException:
            self.journal.close()
            raise
        self.journal.on_quiet = self._maybe_compact
        self.journal.snapshot = self.snapshot
        self._compaction = Backoff(COMPACT_RETRY_FIRST, COMPACT_RETRY_MOST)
        self._resumption = Backoff(RESUME_RETRY_FIRST, RESUME_RETRY_MOST)

    # -- replay ------------------------------------------------------------

    def _load(self, records: list[tuple[int, dict[str, Any]]]) -> None:
        for number, record in records:
            try:
                self.apply(record)
            except (KeyError, TypeError, ValueError) as error:
                raise StorageError(
                    f"JsonStorage: {self.path}: line {number} is not a valid record "
                    f"({type(error).__name__}: {error}): {record!r:.160}"
                ) from error
        for entry in self.entries.values():
            if entry.status is PENDING:
                self.queue(entry.queue).unconverted.append(entry)
            elif entry.status is RUNNING:
                self.abandon(entry)

    def apply(self, record: dict[str, Any]) -> Entry | None:
        """Apply one record to the entries (the data only: queues are the caller's)."""
        op = record["op"]
        if op in ("push", "put"):
            entry = Entry(record)
            self.entries[entry.task_id] = entry
            return entry
        if op == "worker":
            info = WorkerInfo(
                _text(record, "name"),
                _field(record, "pid", int),
                _number(record, "started"),
                _number(record, "seen"),
            )
            self.workers[info.name] = info
            return None
        if op == "delete":
            key = _field(record, "id", str)
            self.vacuumed.pop(key, None)
            return self.entries.pop(key, None)
        if op == "vacuumed":
            self.remember_vacuumed(_field(record, "ids", list))
            return None
        entry = self.entries[_field(record, "id", str)]
        if op == "take":
            entry.status = RUNNING
            entry.attempts = _attempts(record)
            entry.lease_until = _number(record, "lease")
            entry.owner = _field(record, "owner", str)
        elif op in ("retry", "release", "resume"):
            entry.status = _stored_status(record.get("status", "Pending"), _REQUEUED)
            entry.attempts = _attempts(record)
            if "run_at" in record:
                entry.run_at = _timestamp(record, "run_at")
            if "error" in record:
                entry.error = _optional(record, "error", str)
            entry.result = None
            entry.lease_until = entry.owner = None
        elif op == "final":
            entry.status = _stored_status(_field(record, "status", str), _FINAL)
            entry.attempts = _attempts(record)
            entry.result = _optional(record, "result", str)
            entry.error = _optional(record, "error", str)
            entry.lease_until = entry.owner = None
        elif op == "update":
            entry.status = _stored_status(_field(record, "status", str), _UPDATED)
            entry.attempts = _attempts(record)
            entry.run_at = _timestamp(record, "run_at")
            entry.max_attempts = _max_attempts(record)
            entry.timeout = _timeout(record)
            entry.priority = _priority(record)
            entry.meta = _optional(record, "meta", str)
            if not entry.status.is_final:
                entry.result = None
        else:
            raise ValueError(f"unknown op {op!r}")
        return entry

    # -- durable changes ---------------------------------------------------------

    async def commit(
        self,
        records: Sequence[dict[str, Any]],
        apply: Callable[[], None],
        entries: Iterable[Entry] = (),
    ) -> None:
        """Write ``records`` durably; ``apply`` their effect once they are on disk.

        ``entries`` are busy meanwhile. If the commit fails, they go back to
        their queue as they were.
        """
        busy = list(entries)
        for entry in busy:
            entry.busy += 1
        applied = False

        def durable() -> None:
            nonlocal applied
            applied = True
            for entry in busy:
                entry.busy -= 1
            apply()

        try:
            await self.journal.commit(records, durable)
        except BaseException:
            if not applied:
                for entry in busy:
                    entry.busy -= 1
                    self.requeue(entry)
            raise

    def append(self, record: dict[str, Any]) -> Entry | None:
        """Write a record that need not be durable yet, and apply it now."""
        self.journal.append((record,))
        return self.apply(record)

    # -- time ----------------------------------------------------------------------

    def clock(self) -> DeadlineConverter:
        """The current trio run's clock; adopts the run if it is a new one.

        Deadlines computed under another run mean nothing in this one: they
        are recomputed from the entries' wall-clock ``run_at``.
        """
        token = trio.lowlevel.current_trio_token()
        if token is self._run_token:
            assert self._converter is not None
            return self._converter
        self._run_token = token
        converter = self._converter = run_clock()
        now = trio.current_time()
        for queue in self.queues.values():
            pending = queue.unconverted + [entry for _, _, entry in sorted(queue.scheduled)]
            queue.unconverted = []
            queue.scheduled = []
            for entry in pending:
                self._place(queue, entry, converter.deadline(entry.run_at, now), now)
        return converter

    # -- queues --------------------------------------------------------------------

    def queue(self, name: str) -> Queue:
        queue = self.queues.get(name)
        if queue is None:
            queue = self.queues[name] = Queue()
        return queue

    def enqueue(self, entry: Entry, *, due: bool = False, front: bool = False) -> None:
        """Queue a Pending entry at its ``run_at`` (``due``: now; ``front``: first)."""
        queue = self.queue(entry.queue)
        if front:
            queue.ready.appendleft(entry)
        elif due:
            queue.ready.append(entry)
        else:
            clock = self.clock()
            now = trio.current_time()
            self._place(queue, entry, clock.deadline(entry.run_at, now), now)
        self._wake(queue)

    def schedule(self, entry: Entry, deadline: float) -> None:
        """Queue a Pending entry for a trio ``deadline``."""
        queue = self.queue(entry.queue)
        self._place(queue, entry, deadline, trio.current_time())
        self._wake(queue)

    def _place(self, queue: Queue, entry: Entry, deadline: float, now: float) -> None:
        if deadline <= now:
            queue.ready.append(entry)
        else:
            heapq.heappush(queue.scheduled, (deadline, next(self.sequence), entry))

    @staticmethod
    def _wake(queue: Queue) -> None:
        if queue.lot:
            queue.lot.unpark()

    def unqueue(self, entry: Entry) -> None:
        """Forget every place ``entry`` holds in its queue."""
        queue = self.queue(entry.queue)
        if entry in queue.ready:
            queue.ready = deque(item for item in queue.ready if item is not entry)
        if entry in queue.unconverted:
            queue.unconverted.remove(entry)
        kept = [item for item in queue.scheduled if item[2] is not entry]
        if len(kept) != len(queue.scheduled):
            heapq.heapify(kept)
            queue.scheduled = kept

    def requeue(self, entry: Entry) -> None:
        """Put an entry where its current status says (after a change or a failed one)."""
        if self.entries.get(entry.task_id) is not entry:
            return
        self.unqueue(entry)
        if entry.status is PENDING:
            self.enqueue(entry)

    def refresh(self, queue: Queue) -> float:
        """Release due tasks into ``queue.ready`` and expired leases; the next deadline."""
        self.clock()
        now = trio.current_time()
        scheduled = queue.scheduled
        while scheduled and scheduled[0][0] <= now:
            queue.ready.append(heapq.heappop(scheduled)[2])
        next_deadline = scheduled[0][0] if scheduled else math.inf
        if self.leases:
            next_deadline = min(next_deadline, self._expire_leases())
        return next_deadline

    # -- taking and settling ----------------------------------------------------

    def take(self, entry: Entry) -> None:
        """Mark a Pending entry Running here, counting the execution (written, not synced).

        The record is in the file before the task is handed out, so if this
        process dies the execution counts when the task is resumed.
        """
        attempts = entry.attempts + 1
        lease = min(self.clock().wall_now() + self.lease, FAR_FUTURE)
        record = {
            "op": "take",
            "id": entry.task_id,
            "attempts": attempts,
            "lease": lease,
            "owner": self.owner,
        }
        self.journal.append((record,))
        # What apply() does for a take, without re-validating our own record.
        entry.status = RUNNING
        entry.attempts = attempts
        entry.lease_until = lease
        entry.owner = self.owner
        self.in_flight[entry.task_id] = entry

    def settle(self, entry: Entry, record: dict[str, Any]) -> None:
        """Apply a record that ends an execution (or a dead one): final, retry, release."""
        self.in_flight.pop(entry.task_id, None)
        self.abandoned.pop(entry.task_id, None)
        self.apply(record)
        if entry.status.is_final:
            self.finished(entry)

    def finished(self, entry: Entry) -> None:
        """Tell the waiters of ``entry`` that it is final."""
        if self.waiters:
            self.waiters.deliver(TaskId(entry.task_id), (entry, False))

    def forget(self, entry: Entry) -> None:
        """Apply a durable delete: the entry leaves every index; its waiters learn it.

        Waiters still registered for it never saw it final (a final entry has
        none): they are handed ``(entry, True)``.
        Stale places in the lease heap are skipped when they come up.
        """
        key = entry.task_id
        if self.entries.get(key) is entry:
            del self.entries[key]
        self.unqueue(entry)
        self.abandoned.pop(key, None)
        self.in_flight.pop(key, None)
        if self.waiters:
            self.waiters.deliver(TaskId(key), (entry, True))

    # -- abandoned tasks ---------------------------------------------------------

    def abandon(self, entry: Entry) -> None:
        """Note a Running entry no live worker of this store owns."""
        self.abandoned[entry.task_id] = entry
        lease = entry.lease_until if entry.lease_until is not None else -math.inf
        heapq.heappush(self.leases, (lease, next(self.sequence), entry))

    def _expire_leases(self) -> float:
        """Resume abandoned entries whose lease ran out; the next expiry as a deadline."""
        clock = self.clock()
        now = trio.current_time()
        leases = self.leases
        while leases:
            lease, _, entry = leases[0]
            if self.abandoned.get(entry.task_id) is not entry:
                heapq.heappop(leases)  # resumed, settled or vacuumed meanwhile
                continue
            deadline = clock.deadline(lease, now)
            if deadline > now:
                return deadline
            if entry.busy:
                # A resume_by_id or reschedule of it is on its way to the disk.
                heapq.heappop(leases)
                continue
            if not self._resumption.due():
                return self._resumption.deadline()
            try:
                self.resume(entry)
            except WriteError as error:
                # The disk refuses writes (full?): the task stays abandoned,
                # its lease in the heap; try again after a back-off instead
                # of failing the taker that happened to notice the expiry.
                delay = self._resumption.failed()
                log.warning(
                    "JsonStorage: %s: cannot resume task %s (%s); next attempt in %.3g s",
                    self.path,
                    entry.task_id,
                    error,
                    delay,
                )
                return now + delay
            self._resumption.succeeded()
            heapq.heappop(leases)
        return math.inf

    def resume(self, entry: Entry) -> None:
        """Make an abandoned entry Pending again, or Failed if its attempts are used up.

        The dead execution was counted when it was taken. Written, not synced.
        """
        record: dict[str, Any] = {"op": "resume", "id": entry.task_id, "attempts": entry.attempts}
        exhausted = entry.max_attempts is not None and entry.attempts >= entry.max_attempts
        if exhausted:
            record["status"] = FAILED.value
            record["error"] = (
                "StorageError: its worker died while running it and no attempts remain"
            )
        self.append(record)  # a failed write raises with the entry still abandoned
        self.abandoned.pop(entry.task_id, None)
        if exhausted:
            self.finished(entry)
        else:
            self.enqueue(entry, due=True)

    def hand_back(self, entry: Entry) -> None:
        """Make a task running here abandoned, its lease expired, when its outcome
        cannot be written: it comes back (counted, like a dead worker's) with the
        next take once the journal can write again, or with resume_abandoned."""
        if self.in_flight.get(entry.task_id) is not entry or entry.status is not RUNNING:
            return
        del self.in_flight[entry.task_id]
        entry.lease_until = self.clock().wall_now()
        self.abandon(entry)
        self._wake(self.queue(entry.queue))

    # -- compaction ------------------------------------------------------------------

    def snapshot(self, skip: set[str] | frozenset[str] = frozenset()) -> list[dict[str, Any]]:
        """The records that recreate the store (without the entries in ``skip``)."""
        records: list[dict[str, Any]] = []
        if self.vacuumed:
            records.append({"op": "vacuumed", "ids": list(self.vacuumed)})
        records.extend(entry.snapshot() for key, entry in self.entries.items() if key not in skip)
        records.extend(
            {
                "op": "worker",
                "name": info.name,
                "pid": info.pid,
                "started": info.started_at,
                "seen": info.last_seen,
            }
            for info in self.workers.values()
        )
        return records

    def _maybe_compact(self) -> None:
        """Rewrite the journal once dead records outnumber live ones.

        A failed compaction (a full disk) is not tried again at every fsync
        (each try serialises the whole store) but after a back-off on trio's
        clock, logged once per step; the journal grows meanwhile.
        """
        live = len(self.entries) + len(self.workers)
        if self.journal.lines <= max(self.compact_min, 2 * live):
            return
        backoff = self._compaction
        if not backoff.due():
            return
        try:
            self.journal.rewrite(self.snapshot())
        except StorageError as error:
            delay = backoff.failed()
            log.warning(
                "JsonStorage: %s: compaction failed, the journal keeps growing (%s); "
                "next attempt in %.3g s",
                self.path,
                error,
                delay,
            )
            return
        backoff.succeeded()

    def vacuum(self) -> int:
        """Drop every final entry and compact (call at a quiet point); how many."""
        finished = {
            key for key, entry in self.entries.items() if entry.status.is_final and not entry.busy
        }
        kept = self.vacuumed.copy()
        self.remember_vacuumed(key for key in self.entries if key in finished)
        try:
            self.journal.rewrite(self.snapshot(skip=finished))
        except BaseException:
            self.vacuumed = kept
            raise
        self._compaction.succeeded()
        for key in finished:
            del self.entries[key]
        return len(finished)

    def remember_vacuumed(self, keys: Iterable[str]) -> None:
        """Add ``keys`` to :attr:`vacuumed`, forgetting the oldest beyond the bound."""
        vacuumed = self.vacuumed
        for key in keys:
            if not isinstance(key, str):
                raise TypeError(f"a vacuumed id must be a str, got {key!r}")
            vacuumed[key] = None
            vacuumed.move_to_end(key)
        while len(vacuumed) > VACUUMED_IDS:
            vacuumed.popitem(last=False)

    # -- lifetime ------------------------------------------------------------------

    def close(self) -> None:
        self.journal.close()
        # Takers and waiters parked on this store wake up and find it closed.
        for queue in self.queues.values():
            queue.lot.unpark_all()
        self.waiters.wake_all()
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)


_STORES: weakref.WeakSet[Store] = weakref.WeakSet()


def open_store(path: str, lease: float, compact_min: int) -> Store:
    """The store of the file at ``path`` in this process, opened if no open one exists.

    Stores are known by the journal file's device and inode, so every name of
    one file (a hard link, a symlink) gives the same store.
    """
    try:
        info = os.stat(path)
    except OSError:
        info = None  # a new file, or one the journal will report it cannot open
    if info is not None:
        identity = (info.st_dev, info.st_ino)
        for store in list(_STORES):
            journal = store.journal
            if journal.closed:
                continue
            if journal.identity == identity:
                return store
            if identity in journal.stale_identities:
                raise StorageError(
                    f"JsonStorage: {path} is an outdated copy of {store.path}: it was a hard "
                    f"link to that journal, which compaction replaced; open {store.path}"
                )
    store = Store(path, lease, compact_min)
    _STORES.add(store)
    return store


# -- record fields -------------------------------------------------------------------
# Replay checks each field it reads, so a damaged record is reported with its
# line number instead of failing later inside a worker.


def _field(record: dict[str, Any], key: str, kind: type) -> Any:
    value = record[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"{key!r} must be {kind.__name__}, got {value!r:.40}")
    return value


def _optional(record: dict[str, Any], key: str, kind: type) -> Any:
    return _field(record, key, kind) if record.get(key) is not None else None


def _text(record: dict[str, Any], key: str) -> str:
    value: str = _field(record, key, str)
    if not value:
        raise ValueError(f"{key!r} must not be empty")
    return value


def _number(record: dict[str, Any], key: str) -> float:
    value = record[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{key!r} must be a number, got {value!r:.40}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"{key!r} must be a finite number, got {value!r:.40}")
    return number


def _optional_number(record: dict[str, Any], key: str) -> float | None:
    return _number(record, key) if record.get(key) is not None else None


def _timestamp(record: dict[str, Any], key: str) -> float:
    value = _number(record, key)
    if value < 0:
        raise ValueError(f"{key!r} must be a UNIX timestamp >= 0, got {record[key]!r:.40}")
    return value


def _int_within(record: dict[str, Any], key: str, low: int, high: int, what: str) -> int:
    value: int = _field(record, key, int)
    if not low <= value <= high:
        raise ValueError(f"{key!r} ({what}) must be from {low} to {high}, got {value!r:.40}")
    return value


def _run_at(record: dict[str, Any]) -> float:
    return _timestamp(record, "run_at")


_ATTRIBUTES = {"max": "max_attempts"}
"""Entry attributes whose record key differs."""

_ATTEMPTS_MAX = 2**63 - 1
_MAX_ATTEMPTS_MAX = 2**31 - 1
_PRIORITY_MIN = -(2**63)
_PRIORITY_MAX = 2**63 - 1


def _attempts(record: dict[str, Any]) -> int:
    return _int_within(record, "attempts", 0, _ATTEMPTS_MAX, "the attempt count")


def _max_attempts(record: dict[str, Any]) -> int | None:
    if record.get("max") is None:
        return None
    return _int_within(record, "max", 1, _MAX_ATTEMPTS_MAX, "max_attempts")


def _priority(record: dict[str, Any]) -> int:
    if record.get("priority") is None:
        return 0
    return _int_within(record, "priority", _PRIORITY_MIN, _PRIORITY_MAX, "a 64-bit priority")


def _timeout(record: dict[str, Any]) -> float | None:
    timeout = _optional_number(record, "timeout")
    if timeout is not None and timeout <= 0:
        raise ValueError(f"'timeout' must be > 0 seconds, got {record['timeout']!r:.40}")
    return timeout


_STATUSES = {status.value: status for status in Status}
_STORED = frozenset({Status.Pending, Status.Running, Status.Done, Status.Failed, Status.Killed})
"""What a stored task can be (Queued only exists inside a worker)."""
_REQUEUED = frozenset({Status.Pending, Status.Failed})
_FINAL = frozenset({Status.Done, Status.Failed, Status.Killed})
_UPDATED = frozenset({Status.Pending, Status.Done, Status.Failed, Status.Killed})


def _stored_status(name: str, allowed: frozenset[Status]) -> Status:
    """The Status named ``name``, if the record's op may set it (a dict lookup)."""
    status = _STATUSES.get(name)
    if status is None:
        status = Status(name)  # raises ValueError naming the valid statuses
    if status not in allowed:
        choices = ", ".join(sorted(s.value for s in allowed))
        raise ValueError(f"status {name!r} is not possible here (expected {choices})")
    return status
