"""Uniqueness of background tasks: one unfinished task per ``(TASK_NAME, TaskHash)``.

backie enforces ``uniq()`` with a unique database index: a duplicate insert
returns a raw database error, and because the index also covers finished
tasks, a hash whose task failed is blocked forever. Here a duplicate enqueue
returns the id of the task that is still pending or running, and a hash whose
task is finished (Done, Failed or Killed, or removed) is free again.

The hash is stored with the task (in its metadata), so it survives a restart:
the first unique enqueue on a queue in a process scans the queue's unfinished
tasks (``list_tasks``) into an index; later ones look the hash up there and ask
the backend whether that task is still unfinished (``check_status``).
Enqueues of the same hash are serialized by a lock, so concurrent enqueues in
one trio run push one task. A backend without ``check_status`` can only be used
for unique tasks if it runs the very Task object pushed (``MemoryStorage``),
whose status then tells.

The index lives in this process. It is shared by every handle on the same
JsonStorage file and queue, and rebuilt when the file is opened again (another
process may have changed it meanwhile). The proper home of this index is the
backend itself (a uniqueness key column with a partial unique index in a SQL
backend); this module needs only the public capabilities.
"""

from __future__ import annotations

import logging
import sys
import weakref
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import trio

from .._errors import CodecError
from .._implementation import Task, TaskId
from .._status import Status
from ..backends._capabilities import ListTasks, WaitForCompletion
from ..backends._kit._names import TYPED_INFO_KEY
from ..backends._memory._storage import MemoryStorage

__all__ = ["INFO_KEY", "push_unique"]

log = logging.getLogger("pyapalis.background")

INFO_KEY = TYPED_INFO_KEY
"""The task-metadata key under which a background task keeps its name, hash and creation time."""

Key = tuple[str, str]

_UNFINISHED = (Status.Pending, Status.Queued, Status.Running)
_SWEEP_MIN = 64


@dataclass(slots=True)
class _Record:
    task_id: TaskId
    task: Task | None
    """The pushed Task object, when its status is how we learn the outcome."""


class _KeyLocks:
    """One trio.Lock per key, dropped once nobody holds or waits for it."""

    __slots__ = ("_locks",)

    def __init__(self) -> None:
        self._locks: dict[Key, tuple[trio.Lock, list[int]]] = {}

    def acquire_context(self, key: Key) -> _Held:
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = (trio.Lock(), [0])
        return _Held(self, key, entry)

    def drop_if_unused(self, key: Key) -> None:
        entry = self._locks.get(key)
        if entry is not None and entry[1][0] == 0:
            del self._locks[key]


class _Held:
    __slots__ = ("_entry", "_key", "_owner")

    def __init__(self, owner: _KeyLocks, key: Key, entry: tuple[trio.Lock, list[int]]) -> None:
        self._owner = owner
        self._key = key
        self._entry = entry

    async def __aenter__(self) -> None:
        lock, users = self._entry
        users[0] += 1
        try:
            await lock.acquire()
        except BaseException:
            users[0] -= 1
            self._owner.drop_if_unused(self._key)
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        lock, users = self._entry
        lock.release()
        users[0] -= 1
        self._owner.drop_if_unused(self._key)


class _Index:
    """The unfinished unique tasks of one queue, by key."""

    __slots__ = ("generation", "locks", "records", "scan_lock", "scanned", "sweep_at")

    def __init__(self, generation: object) -> None:
        self.generation = generation
        self.records: dict[Key, _Record] = {}
        self.locks = _KeyLocks()
        self.scan_lock = trio.Lock()
        self.scanned = False
        self.sweep_at = _SWEEP_MIN


# Indexes of queues known by file and name (JsonStorage handles), and of
# backends known only as objects (MemoryStorage), which die with them.
_BY_PATH: dict[tuple[str, str, str], _Index] = {}
_BY_OBJECT: weakref.WeakKeyDictionary[Any, _Index] = weakref.WeakKeyDictionary()


@runtime_checkable
class _QueueOnFile(Protocol):
    """A handle on a named queue of a file (JsonStorage, SqliteStorage): handles on
    the same file and queue share one index."""

    @property
    def path(self) -> str: ...

    @property
    def queue_name(self) -> str: ...


@runtime_checkable
class _Replayed(Protocol):
    """A file reopened with a new replay report (JsonStorage): its index is rebuilt."""

    @property
    def report(self) -> object: ...


def _index_for(handle: Any) -> _Index:
    if isinstance(handle, _QueueOnFile):
        # A new opening of the file has a new replay report: rebuild then.
        generation = handle.report if isinstance(handle, _Replayed) else None
        key = (type(handle).__qualname__, handle.path, handle.queue_name)
        index = _BY_PATH.get(key)
        if index is None or index.generation is not generation:
            index = _BY_PATH[key] = _Index(generation)
        return index
    try:
        index = _BY_OBJECT.get(handle)
        if index is None:
            index = _BY_OBJECT[handle] = _Index(None)
    except TypeError as error:
        raise TypeError(
            f"uniq(): cannot track unique tasks on {type(handle).__name__} "
            f"(it cannot be weakly referenced)"
        ) from error
    return index


def info_of(task: Task) -> dict[str, Any] | None:
    """The background-task metadata of a stored task, or None."""
    ctx = task.parts.ctx
    if not isinstance(ctx, dict):
        return None
    info = ctx.get(INFO_KEY)
    return info if isinstance(info, dict) else None


def _key_of(task: Task) -> Key | None:
    info = info_of(task)
    if info is None:
        return None
    name, uniq = info.get("task_name"), info.get("uniq")
    if isinstance(name, str) and isinstance(uniq, str):
        return (name, uniq)
    return None


def check_unique_capable(handle: Any, owner: str) -> None:
    """Raise TypeError if ``handle`` cannot tell when a unique task is finished."""
    if isinstance(handle, (MemoryStorage, WaitForCompletion)):
        return
    raise TypeError(
        f"{owner}: uniq() needs a backend that reports task status (check_status), "
        f"or a MemoryStorage; {type(handle).__name__} does neither"
    )


async def push_unique(handle: Any, key: Key, task: Task) -> TaskId:
    """Push ``task`` unless an unfinished task has the same key; return the id that holds it."""
    index = _index_for(handle)
    if not index.scanned:
        async with index.scan_lock:
            if not index.scanned:
                await _scan(handle, index)
                index.scanned = True
    async with index.locks.acquire_context(key):
        record = index.records.get(key)
        if record is not None:
            if await _is_unfinished(handle, record):
                return record.task_id
            if index.records.get(key) is record:
                del index.records[key]
        task_id: TaskId = await handle.push_task(task)
        keep = task if not isinstance(handle, WaitForCompletion) else None
        index.records[key] = _Record(task_id, keep)
        if len(index.records) >= index.sweep_at:
            await _sweep(handle, index)
        return task_id


async def _scan(handle: Any, index: _Index) -> None:
    """Load the unfinished unique tasks a backend already holds (from an earlier run)."""
    if not isinstance(handle, ListTasks):
        return
    list_tasks = handle.list_tasks
    for status in _UNFINISHED:
        try:
            # One page holding everything: a snapshot, not pages that shift
            # while workers take tasks between two calls.
            tasks = await list_tasks(status, 1, sys.maxsize)
        except CodecError:
            tasks = await _scan_one_by_one(list_tasks, status)
        for task in tasks:
            key = _key_of(task)
            task_id = task.parts.task_id  # a stored task always has one
            if key is not None and task_id is not None and key not in index.records:
                index.records[key] = _Record(task_id, None)


async def _scan_one_by_one(list_tasks: Any, status: Status) -> list[Task]:
    """Page by single tasks, skipping the ones that cannot be decoded."""
    tasks: list[Task] = []
    page = 1
    while True:
        try:
            found = await list_tasks(status, page, 1)
        except CodecError as error:
            log.warning("uniqueness scan skips a stored task it cannot decode: %s", error)
        else:
            if not found:
                return tasks
            tasks.extend(found)
        page += 1


async def _is_unfinished(handle: Any, record: _Record) -> bool:
    if record.task is not None:
        await trio.lowlevel.checkpoint()
        return not record.task.parts.status.is_final
    try:
        (result,) = await handle.check_status([record.task_id])
    except KeyError:
        return False  # removed (vacuumed, retention): finished
    return not result.status.is_final


async def _sweep(handle: Any, index: _Index) -> None:
    """Forget finished tasks; runs when the index doubled since the last sweep."""
    snapshot = list(index.records.items())
    finished: list[Key] = []
    if isinstance(handle, WaitForCompletion):
        try:
            results = await handle.check_status([record.task_id for _, record in snapshot])
            finished = [key for (key, _), r in zip(snapshot, results, strict=True) if r.is_final]
        except KeyError:
            finished = [key for key, record in snapshot if not await _is_unfinished(handle, record)]
    else:
        finished = [
            key
            for key, record in snapshot
            if record.task is not None and record.task.parts.status.is_final
        ]
    records = dict(snapshot)
    for key in finished:
        if index.records.get(key) is records[key]:
            del index.records[key]
    index.sweep_at = max(_SWEEP_MIN, 2 * len(index.records))
