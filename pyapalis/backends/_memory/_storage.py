"""MemoryStorage: the in-process backend, a compiled deque plus trio waiting.

Three parts, each in its own module: the queue itself (``TaskQueue``,
compiled) owns the tasks; :class:`~._handoff.Handoff` is its trio side, the
whole wake protocol (parking idle consumers and producers, waking them on
push from any thread, scheduled tasks on trio's clock); the backend kit's
:class:`~pyapalis.backends._kit._results.ResultStore` keeps a bounded record
of finished tasks, result waiters (``WaitForCompletion``) and outcome
listeners behind the compiled synchronous ack. This module is the backend's
API over the three: pushing, the Backend protocol, and the capabilities.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import trio

from ..._errors import AbortError
from ..._implementation import (
    Task,
    TaskId,
    TaskQueue,
    set_status,
    undo_attempt,
)
from ..._status import Status
from .._capabilities import TaskResult
from .._kit._args import (
    check_count,
    check_delay,
    check_limit,
    check_page,
    check_status_filter,
    check_task,
    check_task_id,
    check_task_ids,
)
from .._kit._results import OutcomeListener, ResultStore
from .._kit._sink import push_each
from ._handoff import Handoff
from ._ids import RememberedIds

__all__ = ["MemoryStorage", "MemoryStorageStatistics", "OutcomeListener"]

logger = logging.getLogger("pyapalis.memory")

_DONE = Status.Done


@dataclass(frozen=True, slots=True)
class MemoryStorageStatistics:
    """A snapshot of a :class:`MemoryStorage` (see :meth:`MemoryStorage.statistics`)."""

    ready: int
    """Tasks that can be handed out now."""
    scheduled: int
    """Tasks waiting for their ``run_at``."""
    maxsize: int | None
    """The bound that makes ``push`` wait, or None."""
    consumers_waiting: int
    """Worker loops parked until a task arrives."""
    producers_waiting: int
    """``push`` calls waiting for room (``maxsize``)."""
    pushed_total: int
    """Tasks queued since creation (retries included)."""
    taken_total: int
    """Tasks handed to workers since creation."""
    results_kept: int = 0
    """Finished tasks whose outcome is kept (see ``results``)."""
    results_limit: int = 10_000
    """How many finished tasks are kept at most (``results``)."""
    results_detailed: int = 0
    """Kept outcomes that carry a result or a failure message (counted: O(results))."""
    results_waited_for: int = 0
    """Task ids that callers of ``wait_for`` / ``wait_for_single`` wait for."""
    outcome_listeners: int = 0
    """Outcome listeners registered (``add_outcome_listener``; a runtime's ``submit`` adds one)."""
    fast_acks: bool = True
    """True while ``Done`` acks are recorded in C (outcome listeners are called from
    there); false while someone waits for a result and every ack takes the Python path."""


class MemoryStorage:
    """A fast in-process backend: FIFO, honours ``run_at``, wakes workers on push.

    ``push_nowait`` is synchronous and safe to call from any thread; a task
    scheduled in the future is never handed out early (its ``run_at`` becomes a
    trio deadline, so tests run in virtual time). Keep a handle to push while
    workers consume. ``MemoryStorage(maxsize=n)`` makes ``push`` wait, and
    ``push_nowait`` raise ``trio.WouldBlock``, while ``n`` tasks are queued.

    Retries and tasks handed back at shutdown re-enter even when full: a task
    is never dropped. Tasks live in this process only; use a persistent backend
    to survive restarts.

    Results: ``MemoryStorage(results=10_000)`` keeps the most recent
    ``results`` finished tasks (Done, Failed or Killed) with their outcome,
    for :meth:`check_status`, :meth:`wait_for`, :meth:`fetch_by_id` and
    :meth:`list_tasks`; older ones are forgotten, one for each that finishes,
    and :meth:`vacuum` forgets them all. ``results=0`` keeps none. A kept task
    keeps its args alive, so the bound is also a memory bound. Whoever is
    already waiting in :meth:`wait_for` or :meth:`wait_for_single` gets the
    result as the task finishes, whatever the bound.

    Tasks in flight (taken by a worker, not yet finished) are not tracked:
    that would cost every take. So :meth:`fetch_by_id` and :meth:`list_tasks`
    do not see them, and an id that is neither queued nor among the kept
    results is reported ``Running`` by :meth:`check_status` and waited for by
    :meth:`wait_for`: it may be running, unknown, or finished and forgotten.
    Look-ups scan the queue or the kept results (O(n)): they are management
    calls, not meant for a hot loop. They may run in another trio run (thread)
    than the worker's, as with a ``BackgroundRuntime``.

    ======================  =============  ===========================================
    capability              support        notes
    ======================  =============  ===========================================
    TaskSink                supported      push, push_bulk, push_task, push_stream
    push_nowait             supported      any thread; also push_task_nowait
    FetchById               limited        queued and kept finished tasks (O(n) scan)
    Update                  not supported
    Reschedule              supported      a queued task moves; also worker retries
    Vacuum                  supported      forgets the kept finished tasks
    ResumeById              not supported
    kill                    limited        queued tasks (in-flight ones are untracked)
    count_tasks             limited        queued and kept finished; not in-flight
    delete                  not supported
    ResumeAbandoned         not supported  tasks live and die with the process
    RegisterWorker          not supported
    ListWorkers             not supported
    ListTasks               limited        queued and kept finished; not in-flight
    WaitForCompletion       limited        last ``results`` kept; in-flight untracked
    ======================  =============  ===========================================
    """

    def __init__(
        self, maxsize: int | None = None, *, results: int = 10_000, pushed_ids: int = 100_000
    ) -> None:
        maxsize = check_limit(maxsize, "MemoryStorage: maxsize")
        results = check_count(results, "MemoryStorage: results")
        # The ids given to push_task: a second push of one stores nothing.
        self._pushed_ids = RememberedIds(check_count(pushed_ids, "MemoryStorage: pushed_ids"))
        self._queue = TaskQueue(trio.current_time, maxsize or 0)
        self._maxsize = maxsize
        # Who waits on the queue, and how a push wakes them (the wake protocol).
        self._handoff = Handoff(self._queue, f"MemoryStorage is full (maxsize={maxsize})")
        # Finished tasks, result waiters and outcome listeners (the kit's
        # result store); its ack_nowait is the worker's hot path.
        self._results = ResultStore(results, "MemoryStorage")
        self._room_listener: OutcomeListener | None = None

    # -- producer side -----------------------------------------------------

    @property
    def push_nowait(self) -> Callable[[Any], TaskId]:
        """``push_nowait(args)``: queue ``args`` as a new task now; safe from any thread.

        Raises ``trio.WouldBlock`` if ``maxsize`` is reached. This is the
        compiled queue's own method: on the trio thread with a worker idle,
        the task is handed to it in C.
        """
        return self._queue.push_nowait

    @property
    def push_new_nowait(self) -> Callable[[Any, TaskId], None]:
        """``push_new_nowait(args, task_id)``: :attr:`push_nowait` under an id the caller chose.

        ``task_id`` must be new: from ``TaskId.generate()``, never given to a
        task before (this is not checked; the rule of :meth:`push_task`, that a
        known id stores nothing, does not apply). What it is for: the caller
        files the id, say with a future that waits for the task's outcome
        (:meth:`add_outcome_listener`), before the task can run and finish.
        The embedding runtime's ``submit`` does. Safe from any thread.
        """
        return self._queue.push_new_nowait

    @property
    def wake_fileno(self) -> int | None:
        """The file descriptor a push from another thread makes readable to wake
        this storage's consumers, once the first such wake has happened (else None).

        The embedding runtime's ``spin`` option polls it before its thread parks.
        """
        return self._handoff.signal_fileno

    async def push(self, args: Any) -> TaskId:
        """Queue ``args`` as a new task, waiting for room if ``maxsize`` is reached."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            task_id = self._queue.push_args(args)
            if task_id is not None:
                break
            await self._park_producer()
        self._handoff.pushed()
        await trio.lowlevel.cancel_shielded_checkpoint()
        return task_id

    async def push_bulk(self, items: Iterable[Any]) -> list[TaskId]:
        """Queue every item of ``items`` as a task; returns their ids in order."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._maxsize is None:
            ids: list[TaskId] = self._queue.push_args_bulk(items)
        else:
            ids = []
            for args in items:
                while (task_id := self._queue.push_args(args)) is None:
                    self._handoff.wake()
                    await self._park_producer()
                ids.append(task_id)
                if self._queue.consumer_waiting:
                    self._handoff.wake()
        self._handoff.pushed()
        await trio.lowlevel.cancel_shielded_checkpoint()
        return ids

    async def push_task(self, task: Task) -> TaskId:
        """Queue a prepared task, keeping its id (one is generated if unset),
        ``run_at``, attempts, data and metadata."""
        await trio.lowlevel.checkpoint_if_cancelled()
        task_id, new = self._prepare_pushed(task, "push_task")
        if not new:  # an id pushed before: nothing is stored
            await trio.lowlevel.cancel_shielded_checkpoint()
            return task_id
        try:
            while not self._handoff.enqueue(task, force=False):
                await self._park_producer()
        except BaseException:
            self._pushed_ids.discard(task_id)  # not stored: it may be pushed again
            raise
        self._handoff.pushed()
        await trio.lowlevel.cancel_shielded_checkpoint()
        return task_id

    def _prepare_pushed(self, task: Task, method: str) -> tuple[TaskId, bool]:
        """Check a task given to ``method`` and make it a new Pending one with an id.

        Returns its id, and False if that id was pushed before (see
        ``pushed_ids``): then the task is left as it is and nothing may be stored.
        """
        parts = check_task(task, f"{method}: task").parts
        task_id = parts.task_id
        if task_id is None:
            task_id = parts.task_id = TaskId.generate()
        if not self._pushed_ids.add(task_id):
            return task_id, False
        parts.status = Status.Pending  # if it ran here before, that outcome is over
        return task_id, True

    def push_task_nowait(self, task: Task) -> TaskId:
        """Queue a prepared task now, as :meth:`push_task` does; safe from any thread.

        Keeps the task's id (one is generated if unset), ``run_at``, attempts,
        data and metadata, and wakes a parked consumer (from another thread
        too; pushes made while a wake is pending share it).
        Raises ``trio.WouldBlock`` if ``maxsize`` is reached.
        """
        task_id, new = self._prepare_pushed(task, "push_task_nowait")
        if not new:  # an id pushed before: nothing is stored
            return task_id
        if not self._handoff.enqueue(task, force=False):
            self._pushed_ids.discard(task_id)  # not stored: it may be pushed again
            raise trio.WouldBlock(f"MemoryStorage is full (maxsize={self._maxsize})")
        if self._queue.consumer_waiting:
            self._handoff.wake()
        return task_id

    async def push_stream(self, items: AsyncIterable[Any]) -> int:
        """Queue every item an async iterable yields, as it yields; returns the count."""
        return await push_each(self.push, items)

    # -- consumer side (the Backend protocol) -------------------------------

    def bind(self) -> None:
        """Remember the trio run of the calling worker (call on its thread)."""
        self._handoff.bind()

    @property
    def take_nowait(self) -> Callable[[], Task | None]:
        """The next due task, or None, without waiting (the compiled queue's pop)."""
        return self._queue.pop

    async def take(self) -> Task:
        """Wait for the next due task (a cancelled wait takes nothing)."""
        return await self._handoff.take()

    @property
    def take_or_wake(self) -> Callable[[], Awaitable[Task | None]]:
        """Wait for the next due task; None if :meth:`wake_takers` interrupted the wait.

        A worker uses this (``Wakeable``) so that stopping or pausing it needs
        no cancel scope per idle wait; other consumers treat None as a
        spurious wake-up.
        """
        return self._handoff.take_or_wake

    def wake_takers(self) -> None:
        """Make every parked :meth:`take_or_wake` return None now."""
        self._handoff.wake_takers()

    async def _park_producer(self) -> None:
        handoff = self._handoff
        if not handoff.producers_waiting:
            # The worker's hot path (take_nowait, ack_nowait) does not unpark
            # producers: while one waits, every ack makes room for it.
            self._room_listener = self._make_room
            self._results.add_listener(self._room_listener)
        try:
            await handoff.park_producer()
        finally:
            if not handoff.producers_waiting and self._room_listener is not None:
                self._results.remove_listener(self._room_listener)
                self._room_listener = None

    def _make_room(
        self, task: Task, status: Status, result: Any, error: BaseException | None
    ) -> None:
        self._handoff.unpark_producer()

    def add_outcome_listener(self, listener: OutcomeListener) -> None:
        """Call ``listener(task, status, result, error)`` for every final outcome.

        Called from :meth:`ack_nowait` (and so :meth:`ack`) on the acking
        thread, after the outcome is recorded, for ``Done``, ``Failed`` and
        ``Killed``; never for a retry. ``result`` is the handler's return value
        of a ``Done`` task, ``error`` the exception of a failed one (may be
        None). Safe to call from any thread, also while a worker acks. The
        listener must be quick and should not raise (an exception it raises is
        logged and dropped). A ``Done`` outcome is recorded in C and the
        listeners are called from there; with none, nothing more is done.
        """
        self._results.add_listener(listener)

    def remove_outcome_listener(self, listener: OutcomeListener) -> None:
        """Stop calling ``listener`` (one registration of it); unknown ones are ignored."""
        self._results.remove_listener(listener)

    async def ack(
        self, task: Task, status: Status, result: Any, error: BaseException | None
    ) -> None:
        """Record a final outcome (the task leaves the storage; its outcome is kept)."""
        self.ack_nowait(task, status, result, error)
        await trio.lowlevel.checkpoint()

    @property
    def ack_nowait(self) -> Callable[[Task, Status, Any, BaseException | None], None]:
        """Record a final outcome without awaiting (the worker's hot path, ``SyncAck``).

        The task is kept among the finished ones (see ``results``); whoever
        waits for it gets its :class:`TaskResult` now, then outcome listeners
        (:meth:`add_outcome_listener`) are called. This is the result store's
        compiled recorder: a task Done with no result, while nobody waits or
        listens, is recorded in C.
        """
        return self._results.ack_nowait

    async def retry(self, task: Task, delay: float, error: BaseException) -> None:
        """Queue ``task`` again, due ``delay`` seconds from now."""
        self.reschedule_nowait(task, delay)
        await trio.lowlevel.checkpoint()

    async def reschedule(self, task: Task, delay: float) -> None:
        """Queue ``task`` again, due ``delay`` seconds from now (never refused).

        A queued task with the same id is taken out first (a task is not
        queued twice); a finished one runs again, its attempts kept.
        """
        check_task(task, "reschedule: task")
        seconds = check_delay(delay, "reschedule: delay")
        self._unqueue(task)
        self.reschedule_nowait(task, seconds)
        await trio.lowlevel.checkpoint()

    def _unqueue(self, task: Task) -> None:
        """Take the queued task with ``task``'s id, if any, out of the queue (O(n))."""
        task_id = task.parts.task_id
        if task_id is None:
            return
        self._handoff.remove(task_id)

    def reschedule_nowait(self, task: Task, delay: float) -> None:
        """Queue ``task`` again, due ``delay`` seconds from now (trio thread)."""
        set_status(task, Status.Pending)
        self._handoff.requeue(task, delay)

    async def release(self, task: Task) -> None:
        """Take back an interrupted task: it goes to the front, its attempt un-counted."""
        undo_attempt(task)
        set_status(task, Status.Pending)
        self._handoff.push_front(task)
        await trio.lowlevel.checkpoint()

    async def kill_by_id(self, task_id: TaskId | str, reason: str = "killed") -> bool:
        """Take a queued task out of the queue as Killed, ``reason`` its error.

        It is kept among the finished tasks and whoever waits for it gets the
        outcome. False for an id that is not queued: finished, unknown, or in
        flight (not tracked, so it cannot be stopped from here).
        """
        key = check_task_id(task_id, "kill_by_id: task_id")
        if not isinstance(reason, str):
            raise TypeError(f"kill_by_id: reason must be a str, got {reason!r}")
        await trio.lowlevel.checkpoint()
        for task in self._queued_tasks():
            if task.parts.task_id == key:
                self._unqueue(task)
                self._results.record_outcome(task, Status.Killed, None, AbortError(reason))
                return True
        return False

    # -- capabilities: FetchById, ListTasks, Vacuum, WaitForCompletion -----

    async def fetch_by_id(self, task_id: TaskId | str) -> Task | None:
        """The queued or kept finished task with this id, or None (O(n)).

        None also for a task in flight (not tracked) or finished and forgotten.
        The task returned is the stored object itself, not a copy.
        """
        key = check_task_id(task_id, "fetch_by_id: task_id")
        await trio.lowlevel.checkpoint()
        for kept_id, task in self._results.finished.newest_first():
            if kept_id == key:
                return task
        for task in self._queued_tasks():
            if task.parts.task_id == key:
                return task
        return None

    async def list_tasks(
        self, status: Status | None = None, page: int = 1, page_size: int = 10
    ) -> list[Task]:
        """Tasks a page at a time (pages start at 1), optionally of one status.

        Queued tasks come first, in the order they will be handed out (ready
        ones, then scheduled ones by due time), then the kept finished tasks,
        oldest first. Tasks in flight are not tracked, so never listed.
        """
        wanted = check_status_filter(status, "list_tasks: status")
        check_page(page, "list_tasks: page")
        check_page(page_size, "list_tasks: page_size")
        await trio.lowlevel.checkpoint()
        start = (page - 1) * page_size
        return list(itertools.islice(self._listed(wanted), start, start + page_size))

    def _listed(self, status: Status | None) -> Iterator[Task]:
        if status is None or not status.is_final:
            for task in self._queued_tasks():
                if status is None or task.parts.status is status:
                    yield task
        if status is None or status.is_final:
            kept = list(self._results.finished.newest_first())
            for _task_id, task in reversed(kept):
                if status is None or task.parts.status is status:
                    yield task

    async def count_tasks(self) -> dict[Status, int]:
        """Queued and kept finished tasks by status (in-flight ones are not tracked)."""
        await trio.lowlevel.checkpoint()
        counts = dict.fromkeys(Status, 0)
        for task in self._listed(None):
            counts[task.parts.status] += 1
        return counts

    async def vacuum(self) -> int:
        """Forget every kept finished task; returns how many were forgotten.

        Callers already waiting for a task are not affected.
        """
        count = self._results.finished.clear()
        await trio.lowlevel.checkpoint()
        return count

    async def check_status(self, task_ids: Iterable[TaskId | str]) -> list[TaskResult]:
        """Each task's status (and outcome, once final), in the order asked.

        A queued task is ``Pending``; an id that is neither queued nor among
        the kept finished tasks is reported ``Running``: in flight, as far as
        this storage can tell (it may also be unknown, or finished and forgotten).
        """
        keys = check_task_ids(task_ids, "check_status: task_ids")
        await trio.lowlevel.checkpoint()
        found = self._results.finished.results(set(keys))
        missing = {key for key in keys if key not in found}
        queued: dict[TaskId, Status] = {}
        if missing:
            for task in self._queued_tasks():
                queued_id = task.parts.task_id
                if queued_id in missing and queued_id not in queued:
                    queued[queued_id] = task.parts.status
        return [
            found[key] if key in found else TaskResult(key, queued.get(key, Status.Running))
            for key in keys
        ]

    async def wait_for_single(self, task_id: TaskId | str) -> TaskResult:
        """Wait until the task is final and return its result.

        A task already finished and kept is answered at once. Any other id is
        waited for, as it may be in flight: an id this storage never sees
        finish waits forever (wrap the call in ``trio.fail_after``).
        """
        key = check_task_id(task_id, "wait_for_single: task_id")
        return await self._results.wait_for_single(key)

    async def wait_for(self, task_ids: Iterable[TaskId | str]) -> AsyncIterator[TaskResult]:
        """Yield each task's result once it is final: kept ones first, in the
        order asked, then the others as they finish (each id once).

        An id this storage never sees finish is waited for forever, as in
        :meth:`wait_for_single`. Results arriving while the caller is busy
        with an earlier one are not lost.
        """
        keys = check_task_ids(task_ids, "wait_for: task_ids")
        async with contextlib.aclosing(self._results.wait_for(keys)) as results:
            async for result in results:
                yield result

    def _queued_tasks(self) -> list[Task]:
        """Every queued task: ready, then scheduled by deadline, then unconverted."""
        return self._handoff.tasks()

    # -- introspection -----------------------------------------------------

    @property
    def handoff(self) -> Handoff:
        """Low-level: what parks and wakes this storage's consumers and producers
        (its waker task, wake count...), for diagnostics and tests."""
        return self._handoff

    def __len__(self) -> int:
        return len(self._handoff)

    def statistics(self) -> MemoryStorageStatistics:
        """Counts of queued, scheduled and waiting parties."""
        return MemoryStorageStatistics(
            ready=self._queue.ready_count,
            scheduled=self._queue.scheduled_count + len(self._handoff.unconverted),
            maxsize=self._maxsize,
            consumers_waiting=len(self._handoff.waiters),
            producers_waiting=self._handoff.producers_waiting,
            pushed_total=self._queue.pushed_total,
            taken_total=self._queue.popped_total,
            results_kept=len(self._results.finished),
            results_limit=self._results.finished.limit,
            results_detailed=self._results.finished.details_kept,
            results_waited_for=len(self._results.waiters),
            outcome_listeners=len(self._results.listeners),
            fast_acks=not self._results.attention,
        )

    def __repr__(self) -> str:
        return (
            f"MemoryStorage(len={len(self)}, maxsize={self._maxsize}, "
            f"results={self._results.finished.limit})"
        )
