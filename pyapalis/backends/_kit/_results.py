"""The result store: finished tasks, result waiters and outcome listeners, for any backend.

Three parts, usable alone or together:

- :class:`ResultWaiters` — callers of ``wait_for`` / ``wait_for_single`` parked
  by task id until a backend :meth:`~ResultWaiters.deliver`\\ s an outcome,
  from any thread (a waiter in another trio run is woken through its run's
  token). A backend shared with other processes passes ``poll``, an async
  look-up of its database, so a result that another process recorded is seen
  too.
- :class:`FinishedTasks` — a bounded record of finished tasks and their
  outcomes (the newest ``limit`` kept), scanned by look-ups: nothing is
  indexed, so recording costs one ``deque.append`` on the hot path.
- :class:`ResultStore` — both, plus outcome listeners, behind one
  synchronous ack: its ``ack_nowait`` is the compiled
  :class:`~pyapalis._core.AckRecorder`, which records the common outcome (a
  task Done, with or without a result, while nobody waits for a result) in C,
  calls the outcome listeners from there, and calls
  :meth:`ResultStore.record_outcome` for every other outcome.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import trio

from ..._implementation import Task, TaskId, execution_module, set_status
from ..._status import Status
from .._capabilities import TaskResult

if TYPE_CHECKING:
    from ..._twin._execution import AckRecorder
else:
    AckRecorder = execution_module.AckRecorder

__all__ = ["FinishedTasks", "OutcomeListener", "ResultStore", "ResultWaiters", "describe"]

logger = logging.getLogger("pyapalis.results")

T = TypeVar("T")

_DONE = Status.Done

OutcomeListener = Callable[[Task, Status, Any, "BaseException | None"], object]
"""``listener(task, status, result, error)``: see :meth:`ResultStore.add_listener`."""

Lookup = Callable[[set[TaskId]], "dict[TaskId, T]"]
"""The outcomes already known of some task ids (those without one are left out)."""


def describe(error: BaseException | None, status: Status) -> str:
    """The message a failed or killed task's result carries."""
    if error is None:
        return status.value
    return f"{type(error).__name__}: {error}"


# -- waiters ---------------------------------------------------------------------


class _Waiter(Generic[T]):
    """One caller of ``wait``: what arrived for it, and where it parks."""

    __slots__ = ("arrived", "lot", "token")

    def __init__(self) -> None:
        self.arrived: deque[tuple[TaskId, T]] = deque()
        self.lot = trio.lowlevel.ParkingLot()
        # The run it waits in: a delivery from another thread wakes it through this.
        self.token = trio.lowlevel.current_trio_token()


class ResultWaiters(Generic[T]):
    """Callers waiting for tasks to finish, by task id.

    ``T`` is what a backend delivers (a :class:`TaskResult`, or its own record
    the caller turns into one). ``changed()``, if given, is called whenever
    there starts or stops being someone waiting (under no lock: it reads
    ``bool(waiters)`` itself).
    """

    __slots__ = ("_by_id", "_changed")

    def __init__(self, changed: Callable[[], None] | None = None) -> None:
        self._by_id: dict[TaskId, list[_Waiter[T]]] = {}
        self._changed = changed

    def __bool__(self) -> bool:
        """True while anyone waits."""
        return bool(self._by_id)

    def __len__(self) -> int:
        """How many task ids are waited for."""
        return len(self._by_id)

    def deliver(self, task_id: TaskId, item: T) -> bool:
        """Hand ``item``, the outcome of ``task_id``, to whoever waits for it (any thread).

        Returns True if someone did.
        """
        waiters = self._by_id.pop(task_id, None)
        if not waiters:
            return False
        here = _current_token()
        for waiter in waiters:
            waiter.arrived.append((task_id, item))
            if waiter.token is here:
                waiter.lot.unpark_all()
            else:  # it waits in another trio run (a worker on its own thread);
                # if that run is over, nobody waits there any more.
                with contextlib.suppress(trio.RunFinishedError):
                    waiter.token.run_sync_soon(waiter.lot.unpark_all)
        if not self._by_id and self._changed is not None:
            self._changed()
        return True

    def wake_all(self) -> None:
        """Wake every waiter of this trio run without a result (it then looks again)."""
        for waiters in list(self._by_id.values()):
            for waiter in waiters:
                waiter.lot.unpark_all()

    async def wait(
        self,
        task_ids: Iterable[TaskId],
        lookup: Lookup[T],
        *,
        poll: Callable[[set[TaskId]], Awaitable[dict[TaskId, T]]] | None = None,
        every: float = 1.0,
        check: Callable[[], None] | None = None,
    ) -> AsyncGenerator[tuple[TaskId, T], None]:
        """Yield ``(task_id, outcome)`` for each of ``task_ids`` once it has one.

        Known outcomes (``lookup``) come first in the order asked, then the
        others as they are delivered; each id once. With ``poll``, outcomes
        nobody delivers here (recorded by another process) are looked up every
        ``every`` seconds. ``check()``, if given, runs after every wake and
        may raise (a closed backend). The waiter is registered before the
        first look-up, so an outcome delivered meanwhile (from another
        thread) is not missed.
        """
        keys = list(dict.fromkeys(task_ids))
        await trio.lowlevel.checkpoint()
        waiter: _Waiter[T] = _Waiter()
        pending = dict.fromkeys(keys)
        for key in keys:
            self._by_id.setdefault(key, []).append(waiter)
        if keys and self._changed is not None:
            self._changed()
        try:
            found = lookup(set(keys))
            for key in keys:
                if key in found:
                    del pending[key]
                    yield key, found[key]
            while pending:
                while waiter.arrived:
                    key, item = waiter.arrived.popleft()
                    if key in pending:
                        del pending[key]
                        yield key, item
                if not pending:
                    break
                if poll is None:
                    await waiter.lot.park()
                else:
                    with trio.move_on_after(every):
                        await waiter.lot.park()
                if check is not None:
                    check()
                if poll is not None and not waiter.arrived:
                    for key, item in (await poll(set(pending))).items():
                        waiter.arrived.append((key, item))
        finally:
            self._forget(waiter, keys)

    async def wait_single(self, task_id: TaskId, lookup: Lookup[T], **options: Any) -> T:
        """The outcome of ``task_id``, once it has one (see :meth:`wait`)."""
        async with contextlib.aclosing(self.wait([task_id], lookup, **options)) as results:
            async for _key, item in results:
                return item
        raise AssertionError("unreachable: wait() yields every id it is given")

    def _forget(self, waiter: _Waiter[T], keys: Iterable[TaskId]) -> None:
        for key in keys:
            waiters = self._by_id.get(key)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._by_id[key]
        if self._changed is not None:
            self._changed()


# -- finished tasks --------------------------------------------------------------


class FinishedTasks:
    """The newest ``limit`` finished tasks (Done, Failed or Killed) and their outcomes.

    One bounded deque of entries, newest last. An entry is the task itself
    when its status says all (``Done`` with no result; ``Failed`` or
    ``Killed`` with no error), else ``(task, status, detail)``: the
    result of a ``Done`` task, or a failure's message. The compiled recorder
    (``AckRecorder``) appends these same two shapes; a result kept with its
    task leaves with it, so nothing needs pruning. A task queued again is
    skipped until it is final again; then its newest entry counts. Look-ups
    scan (O(n)): they are management calls. ``limit=0`` keeps none.
    """

    __slots__ = ("_entries", "append", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._entries: deque[Task | tuple[Task, Status, Any]] = deque(maxlen=limit)
        self.append: Callable[[Task | tuple[Task, Status, Any]], None] = self._entries.append
        """Keep an entry (the recorder's hot path)."""

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def details_kept(self) -> int:
        """How many kept outcomes carry a result or message (counted: O(n))."""
        return sum(1 for entry in list(self._entries) if type(entry) is tuple)

    def record(self, task: Task, status: Status, result: Any, error: BaseException | None) -> None:
        """Keep ``task`` as finished with ``status`` (set on it) and its outcome."""
        set_status(task, status)
        if result is None and error is None:
            self.append(task)
        else:
            self.append((task, status, result if status is _DONE else describe(error, status)))

    def clear(self) -> int:
        """Forget every finished task; returns how many were kept."""
        count = sum(1 for _ in self._newest())
        self._entries.clear()
        return count

    def _newest(self) -> Iterator[tuple[TaskId, Task, Task | tuple[Task, Status, Any]]]:
        """``(id, task, entry)`` of each kept final task, newest first, each task once."""
        seen: set[int] = set()
        # A snapshot (one C call): a worker on another thread may ack meanwhile.
        for entry in reversed(list(self._entries)):
            task = entry[0] if type(entry) is tuple else entry
            task_id = task.parts.task_id
            if task_id is not None and task.parts.status.is_final and id(task) not in seen:
                seen.add(id(task))
                yield task_id, task, entry

    def newest_first(self) -> Iterator[tuple[TaskId, Task]]:
        """The kept finished tasks, newest first, each once, as ``(id, task)``.

        A task queued again since it finished (its status is no longer
        final) is skipped.
        """
        for task_id, task, _entry in self._newest():
            yield task_id, task

    def results(self, keys: set[TaskId]) -> dict[TaskId, TaskResult]:
        """The kept outcomes of those of ``keys`` that have one (the newest wins)."""
        found: dict[TaskId, TaskResult] = {}
        if not keys:
            return found
        for task_id, task, entry in self._newest():
            if task_id in keys and task_id not in found:
                found[task_id] = _result_of(task_id, task, entry)
                if len(found) == len(keys):
                    break
        return found


def _result_of(task_id: TaskId, task: Task, entry: Task | tuple[Task, Status, Any]) -> TaskResult:
    """The result of a kept finished task: its status, and the detail kept with it if any."""
    status = task.parts.status
    if type(entry) is tuple and entry[1] is status:
        value = entry[2]
    else:
        value = None if status is _DONE else status.value
    if status is _DONE:
        return TaskResult.done(task_id, value)
    return TaskResult.failed(task_id, status, value)


# -- the store -------------------------------------------------------------------


class ResultStore:
    """Finished tasks, result waiters and outcome listeners behind one synchronous ack.

    ``store.ack_nowait(task, status, result, error)`` records a final
    outcome: a backend exposes it as its own ``ack_nowait`` (``SyncAck``).
    ``owner`` names the backend in logged errors.
    """

    __slots__ = (
        "__weakref__",
        "_lock",
        "_owner",
        "ack_nowait",
        "finished",
        "recorder",
        "waiters",
    )

    def __init__(self, limit: int, owner: str) -> None:
        self._owner = owner
        self.finished = FinishedTasks(limit)
        self.waiters: ResultWaiters[TaskResult] = ResultWaiters(self._update_attention)
        # Serializes recomputing the recorder's attention and replacing its
        # listeners: a change made on another thread must not be overwritten
        # by a stale one.
        self._lock = threading.Lock()
        self.recorder = AckRecorder(self.finished.append, self)
        self.ack_nowait: Callable[[Task, Status, Any, BaseException | None], None] = (
            self.recorder.ack
        )

    @property
    def attention(self) -> bool:
        """True while every ack goes through :meth:`record_outcome` (someone waits)."""
        return bool(self.recorder.attention)

    @property
    def listeners(self) -> tuple[OutcomeListener, ...]:
        """The outcome listeners, in the order added (the recorder calls them)."""
        listeners: tuple[OutcomeListener, ...] = self.recorder.listeners
        return listeners

    def _update_attention(self) -> None:
        with self._lock:
            self.recorder.attention = bool(self.waiters)

    def record_outcome(
        self, task: Task, status: Status, result: Any, error: BaseException | None
    ) -> None:
        """Record an outcome the compiled recorder leaves to Python (any but the plainest).

        Keeps it, hands it to whoever waits for the task, then calls the
        outcome listeners (through the recorder, which calls them for the
        outcomes it records itself).
        """
        self.finished.record(task, status, result, error)
        task_id = task.parts.task_id
        if self.waiters and task_id is not None:
            if status is _DONE:
                task_result = TaskResult.done(task_id, result)
            else:
                task_result = TaskResult.failed(task_id, status, describe(error, status))
            self.waiters.deliver(task_id, task_result)
        recorder = self.recorder
        if recorder.listeners:
            recorder.tell(task, status, result, error)

    def listener_failed(self, listener: OutcomeListener, error: BaseException) -> None:
        """An outcome listener raised ``error``: log it (the ack goes on)."""
        logger.error("%s: outcome listener %r failed", self._owner, listener, exc_info=error)

    def add_listener(self, listener: OutcomeListener) -> None:
        """Call ``listener(task, status, result, error)`` for every outcome recorded."""
        if not callable(listener):
            raise TypeError(f"add_outcome_listener: listener must be callable, got {listener!r}")
        with self._lock:
            self.recorder.listeners = (*self.recorder.listeners, listener)

    def remove_listener(self, listener: OutcomeListener) -> None:
        """Stop calling ``listener`` (one registration of it); unknown ones are ignored."""
        with self._lock:
            listeners = list(self.recorder.listeners)
            if listener in listeners:
                listeners.remove(listener)
                self.recorder.listeners = tuple(listeners)

    async def wait_for(self, task_ids: Iterable[TaskId]) -> AsyncGenerator[TaskResult, None]:
        """Each task's result once it is final: kept ones first, then as they finish."""
        waiting = self.waiters.wait(task_ids, self.finished.results)
        async with contextlib.aclosing(waiting) as results:
            async for _key, result in results:
                yield result

    async def wait_for_single(self, task_id: TaskId) -> TaskResult:
        """The task's result once it is final."""
        return await self.waiters.wait_single(task_id, self.finished.results)


def _current_token() -> trio.lowlevel.TrioToken | None:
    try:
        return trio.lowlevel.current_trio_token()
    except RuntimeError:
        return None
