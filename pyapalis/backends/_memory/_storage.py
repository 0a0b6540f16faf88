"""MemoryStorage: the in-process backend, a compiled deque plus trio waiting.

The queue itself (``TaskQueue``, compiled) owns the tasks; this module adds
what needs trio: parking idle consumers, waking them on push (from the trio
thread directly, from any other thread through a waker task: see
``_schedule_wake``), converting wall-clock schedules into trio deadlines, and
backpressure with ``maxsize``. It also keeps a bounded record of finished
tasks, so results can be looked up and waited for (``WaitForCompletion``)
without slowing the worker's hot path, and calls outcome listeners
(``add_outcome_listener``) as tasks finish.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import math
import os
import socket
import threading
import time
import weakref
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import outcome
import trio

from ..._implementation import (
    OneShotValue,
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

__all__ = ["MemoryStorage", "MemoryStorageStatistics", "OutcomeListener"]

logger = logging.getLogger("pyapalis.memory")

_DONE = Status.Done

# What a parked consumer is resumed with (trio's reschedule takes an Outcome):
# a one-use value, several times cheaper to make and unwrap than outcome.Value.
outcome.Outcome.register(OneShotValue)
_resume_with = cast("Callable[[object], outcome.Outcome[Any]]", OneShotValue)


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
    """Kept outcomes that carry a result or a failure message (at most ``2 * results + 64``)."""
    results_waited_for: int = 0
    """Task ids that callers of ``wait_for`` / ``wait_for_single`` wait for."""
    fast_acks: bool = True
    """True while a plain ``Done`` ack is recorded in C alone (nobody waits, listens,
    or waits for room); false while every ack takes the Python path."""


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
    ResumeAbandoned         not supported  tasks live and die with the process
    RegisterWorker          not supported
    ListWorkers             not supported
    ListTasks               limited        queued and kept finished; not in-flight
    WaitForCompletion       limited        last ``results`` kept; in-flight untracked
    ======================  =============  ===========================================
    """

    def __init__(self, maxsize: int | None = None, *, results: int = 10_000) -> None:
        maxsize = check_limit(maxsize, "MemoryStorage: maxsize")
        results = check_count(results, "MemoryStorage: results")
        self._queue = TaskQueue(trio.current_time, maxsize or 0)
        self._maxsize = maxsize
        # The worker's hot path calls this bound C method directly.
        self.take_nowait = self._queue.pop
        # Parked consumer tasks, oldest first. A push hands its task straight
        # to the oldest one (as a trio channel does): no second pop, no lot.
        self._waiters: deque[trio.lowlevel.Task] = deque()
        # Future-dated tasks pushed where trio's clock cannot be read (another
        # thread, or before any run): converted on the trio thread.
        self._unconverted: deque[Task] = deque()
        # push_nowait is the queue's own: on the trio thread with a consumer
        # parked it hands the task over in C (the idle push-to-handler
        # latency); otherwise it calls _wake(). The queue's consumer_waiting
        # flag is set by a consumer before it parks (producer threads read
        # it) and consumer_thread by bind().
        self._queue.connect_consumers(
            self._waiters,
            self._unconverted,
            trio.lowlevel.reschedule,
            self,
            trio.WouldBlock,
            f"MemoryStorage is full (maxsize={maxsize})",
        )
        if type(self).push_nowait is MemoryStorage.push_nowait:
            self.push_nowait = self._queue.push_nowait  # type: ignore[method-assign]
        # Counts wake_takers() calls: a consumer re-arming its wait (_rearm)
        # was not in _waiters at that moment, and checks this instead.
        self._takers_woken = 0
        self._producers = trio.lowlevel.ParkingLot()
        # ParkingLot's len() is a Python-level call: the hot path reads this instead.
        self._producers_waiting = 0
        self._token: trio.lowlevel.TrioToken | None = None
        # The run whose waker task (_run_waker) producers signal through
        # _signal, or None; and every run where such a task is alive.
        self._waker_token: trio.lowlevel.TrioToken | None = None
        self._waker_runs: set[trio.lowlevel.TrioToken] = set()
        self._signal: _WakeSignal | None = None
        # Wall clock minus trio's clock, re-read only when trio's clock has
        # moved: see _deadline_for.
        self._clock_offset = 0.0
        self._offset_read_at: float | None = None
        # Finished tasks, result waiters and outcome listeners (the kit's
        # result store); its ack_nowait is the worker's hot path.
        self._results = ResultStore(results, "MemoryStorage")
        self._room_listener: OutcomeListener | None = None

    # -- producer side -----------------------------------------------------

    def push_nowait(self, args: Any) -> TaskId:
        """Queue ``args`` as a new task now; safe from any thread.

        Raises ``trio.WouldBlock`` if ``maxsize`` is reached.
        """
        # Instances call the queue's method directly (see __init__), so a
        # patch of this class method does not reach existing instances.
        task_id: TaskId = self._queue.push_nowait(args)
        return task_id

    async def push(self, args: Any) -> TaskId:
        """Queue ``args`` as a new task, waiting for room if ``maxsize`` is reached."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            task_id = self._queue.push_args(args)
            if task_id is not None:
                break
            await self._park_producer()
        self._bind_if_unbound()
        if self._queue.consumer_waiting:
            self._wake()
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
                    self._wake()
                    await self._park_producer()
                ids.append(task_id)
                if self._queue.consumer_waiting:
                    self._wake()
        self._bind_if_unbound()
        if self._queue.consumer_waiting:
            self._wake()
        await trio.lowlevel.cancel_shielded_checkpoint()
        return ids

    async def push_task(self, task: Task) -> TaskId:
        """Queue a prepared task, keeping its id (one is generated if unset),
        ``run_at``, attempts, data and metadata."""
        await trio.lowlevel.checkpoint_if_cancelled()
        task_id = self._prepare_pushed(task, "push_task")
        while not self._enqueue(task, force=False):
            await self._park_producer()
        self._bind_if_unbound()
        if self._queue.consumer_waiting:
            self._wake()
        await trio.lowlevel.cancel_shielded_checkpoint()
        return task_id

    def _prepare_pushed(self, task: Task, method: str) -> TaskId:
        """Check a task given to ``method`` and make it a new Pending one with an id."""
        parts = check_task(task, f"{method}: task").parts
        task_id = parts.task_id
        if task_id is None:
            task_id = parts.task_id = TaskId.generate()
        parts.status = Status.Pending
        self._results.finished.forget(task)  # it ran here before: that outcome is over
        return task_id

    def push_task_nowait(self, task: Task) -> TaskId:
        """Queue a prepared task now, as :meth:`push_task` does; safe from any thread.

        Keeps the task's id (one is generated if unset), ``run_at``, attempts,
        data and metadata, and wakes a parked consumer (from another thread
        too; pushes made while a wake is pending share it).
        Raises ``trio.WouldBlock`` if ``maxsize`` is reached.
        """
        task_id = self._prepare_pushed(task, "push_task_nowait")
        if not self._enqueue(task, force=False):
            raise trio.WouldBlock(f"MemoryStorage is full (maxsize={self._maxsize})")
        if self._queue.consumer_waiting:
            self._wake()
        return task_id

    async def push_stream(self, items: AsyncIterable[Any]) -> int:
        """Queue every item an async iterable yields, as it yields; returns the count."""
        count = 0
        async for args in items:
            await self.push(args)
            count += 1
        return count

    def _enqueue(self, task: Task, *, force: bool, delay: float | None = None) -> bool:
        """Put ``task`` in the ready ring or, if it is not due, the schedule.

        ``delay`` (seconds on trio's clock) overrides the task's ``run_at``.
        """
        if self._on_trio_thread():
            now = trio.current_time()
            deadline = self._deadline_for(task.parts.run_at, now) if delay is None else now + delay
            if deadline <= now:
                queued: bool = self._queue.push(task, force)
                return queued
            queued = self._queue.schedule(task, deadline, force)
            if queued and self._waiters:
                self._rearm()
            return queued
        if delay is None:
            delay = task.parts.run_at - time.time()
        if delay <= 0:
            queued = self._queue.push(task, force)
            return queued
        if not force and self._queue.is_full():
            return False
        self._unconverted.append(task)
        if self._token is not None:
            self._schedule_wake()
        return True

    # -- consumer side (the Backend protocol) -------------------------------

    def bind(self) -> None:
        """Remember the trio run of the calling worker (call on its thread)."""
        token = trio.lowlevel.current_trio_token()
        if token is not self._token:
            self._token = token
            self._queue.consumer_thread = threading.get_ident()
            # A wake requested for an earlier run is not coming here.
            self._queue.wake_pending = False
        self._convert_unconverted()

    async def take(self) -> Task:
        """Wait for the next due task (a cancelled wait takes nothing)."""
        while True:
            task = await self.take_or_wake()
            if task is not None:
                return task

    async def take_or_wake(self) -> Task | None:
        """Wait for the next due task; None if :meth:`wake_takers` interrupted the wait.

        A worker uses this so that stopping or pausing it needs no cancel scope
        per idle wait; other consumers treat None as a spurious wake-up.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        self.bind()
        queue = self._queue
        task: Task | None = queue.pop()
        if task is None:
            # Publish that we are about to park before the last look, so a
            # producer thread that pushes after that look sees the flag.
            queue.consumer_waiting = True
            task = queue.pop()
        if task is not None:
            queue.consumer_waiting = bool(self._waiters)
            if self._producers_waiting:
                self._producers.unpark()
            await trio.lowlevel.cancel_shielded_checkpoint()
            return task
        me = trio.lowlevel.current_task()
        waiters = self._waiters
        generation = self._takers_woken

        def abort(_raise_cancel: object) -> trio.lowlevel.Abort:
            waiters.remove(me)
            queue.consumer_waiting = bool(waiters)
            return trio.lowlevel.Abort.SUCCEEDED

        if queue.scheduled_count:
            return await self._park(me, abort, generation, looked=True)
        # Nothing scheduled (the usual case): wait for a push right here, one
        # coroutine frame less between a push and the handler.
        waiters.append(me)
        task = await trio.lowlevel.wait_task_rescheduled(abort)
        if task is _REARM:  # a task was scheduled meanwhile (_rearm)
            return await self._park(me, abort, generation, looked=False)
        # Handed a task by a push (or None by wake_takers()).
        if self._producers_waiting and task is not None:
            self._producers.unpark()
        return task

    async def _park(
        self,
        me: trio.lowlevel.Task,
        abort: Callable[[object], trio.lowlevel.Abort],
        generation: int,
        *,
        looked: bool,
    ) -> Task | None:
        """Park ``me`` until a push hands it a task, wake_takers() hands it None
        (or has run since ``generation``), or the earliest scheduled task is due.

        ``looked``: the queue was just found empty; otherwise look again first.
        """
        waiters = self._waiters
        queue = self._queue
        task: Task | None
        while True:
            if not looked:
                # A scheduled task's deadline came, or a new one was scheduled
                # (_rearm): look again, then wait with the earliest deadline.
                if self._takers_woken != generation:
                    return None  # wake_takers() ran meanwhile and missed us
                queue.consumer_waiting = True
                task = queue.pop()
                if task is not None:
                    queue.consumer_waiting = bool(waiters)
                    if waiters:
                        if queue.ready_count:
                            # Others came due at the same time: hand them out too
                            # (this also re-arms a waiter for the next deadline).
                            self._wake_consumers()
                        elif queue.scheduled_count:
                            self._rearm()
                    if self._producers_waiting:
                        self._producers.unpark()
                    return task
            looked = False
            waiters.append(me)
            deadline = queue.next_deadline()
            if deadline == math.inf:
                task = await trio.lowlevel.wait_task_rescheduled(abort)
            else:
                with trio.move_on_at(deadline) as scope:
                    task = await trio.lowlevel.wait_task_rescheduled(abort)
                if scope.cancelled_caught:
                    task = _REARM
            if task is not _REARM:
                # Handed a task by a push (or None by wake_takers()).
                if self._producers_waiting and task is not None:
                    self._producers.unpark()
                return task

    def _rearm(self) -> None:
        """Make one parked consumer look again and re-arm its wait with the
        earliest deadline: a task was scheduled, or the consumer that was
        waiting for the earliest deadline left (trio thread)."""
        waiters = self._waiters
        if waiters:
            trio.lowlevel.reschedule(waiters.pop(), _resume_with(_REARM))
            self._queue.consumer_waiting = bool(waiters)

    def wake_takers(self) -> None:
        """Make every parked :meth:`take_or_wake` return None now."""
        self._takers_woken += 1
        while self._waiters:
            trio.lowlevel.reschedule(self._waiters.popleft(), _resume_with(None))
        self._queue.consumer_waiting = False

    async def _park_producer(self) -> None:
        if not self._producers_waiting:
            # The worker's hot path (take_nowait, ack_nowait) does not unpark
            # producers: while one waits, every ack makes room for it.
            self._room_listener = self._make_room
            self._results.add_listener(self._room_listener)
        self._producers_waiting += 1
        try:
            await self._producers.park()
        finally:
            self._producers_waiting -= 1
            if not self._producers_waiting and self._room_listener is not None:
                self._results.remove_listener(self._room_listener)
                self._room_listener = None

    def _make_room(
        self, task: Task, status: Status, result: Any, error: BaseException | None
    ) -> None:
        if self._producers_waiting:
            self._producers.unpark()

    def add_outcome_listener(self, listener: OutcomeListener) -> None:
        """Call ``listener(task, status, result, error)`` for every final outcome.

        Called from :meth:`ack_nowait` (and so :meth:`ack`) on the acking
        thread, after the outcome is recorded, for ``Done``, ``Failed`` and
        ``Killed``; never for a retry. ``result`` is the handler's return value
        of a ``Done`` task, ``error`` the exception of a failed one (may be
        None). Safe to call from any thread, also while a worker acks. The
        listener must be quick and should not raise (an exception it raises is
        logged and dropped). While any is registered, every ack takes the
        Python path; with none, the compiled fast path costs nothing more.
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
        self._results.finished.forget(task)
        self.reschedule_nowait(task, seconds)
        await trio.lowlevel.checkpoint()

    def _unqueue(self, task: Task) -> None:
        """Take the queued task with ``task``'s id, if any, out of the queue (O(n))."""
        task_id = task.parts.task_id
        if task_id is None:
            return
        # A snapshot: producer threads may append to _unconverted meanwhile.
        for waiting in list(self._unconverted):
            if waiting.parts.task_id == task_id:
                self._unconverted.remove(waiting)
                return
        self._queue.remove(task_id)

    def reschedule_nowait(self, task: Task, delay: float) -> None:
        set_status(task, Status.Pending)
        if delay <= 0:
            self._queue.push(task, True)
        else:
            self._queue.schedule(task, trio.current_time() + delay, True)
            if self._waiters:
                self._rearm()
        if self._queue.consumer_waiting:
            self._wake()

    async def release(self, task: Task) -> None:
        """Take back an interrupted task: it goes to the front, its attempt un-counted."""
        undo_attempt(task)
        set_status(task, Status.Pending)
        self._queue.push_front(task)
        if self._queue.consumer_waiting:
            self._wake()
        await trio.lowlevel.checkpoint()

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
        tasks: list[Task] = self._queue.tasks()
        tasks.extend(self._unconverted)
        return tasks

    # -- waking ------------------------------------------------------------

    def _on_trio_thread(self) -> bool:
        return self._queue.consumer_thread == threading.get_ident() and _in_trio_run()

    def _bind_if_unbound(self) -> None:
        if self._token is None:
            self.bind()

    def _wake(self) -> None:
        if self._queue.consumer_thread == _get_ident():
            self._wake_consumers()
        else:
            self._schedule_wake()

    def _schedule_wake(self) -> None:
        """Have the trio thread run :meth:`_wake_consumers` soon (any other thread).

        One wake at a time: pushes made while one is pending share it (the
        trio thread clears the queue's ``wake_pending`` before it pops). The first wake
        of a run goes through the run's token (``run_sync_soon``) and starts a
        waker task there; later ones make that task's file descriptor readable
        (an eventfd write), which gets the parked consumer going sooner than
        ``run_sync_soon`` does: cross-thread push to handler start measured
        about 30 µs at the median against 45 (``benchmarks/runtime_latency.py``).
        """
        token = self._token
        if token is None or self._queue.wake_pending:
            return
        self._queue.wake_pending = True
        if self._waker_token is token:
            signal = self._signal
            if signal is not None:
                signal.set()
                return
        try:
            token.run_sync_soon(self._wake_by_token)
        except trio.RunFinishedError:
            # The run this storage was bound to is over: nobody waits there.
            self._queue.wake_pending = False

    def _wake_by_token(self) -> None:
        """A wake sent with ``run_sync_soon``: wake, and start this run's waker task."""
        self._wake_consumers()
        token = trio.lowlevel.current_trio_token()
        if self._waker_token is not token and token is self._token:
            # (A waker of another run, if still there, leaves at its next wake.)
            if token in self._waker_runs:  # this run's waker is still there
                self._waker_token = token
                return
            if self._signal is None:
                self._signal = _WakeSignal.create(self)
            try:
                trio.lowlevel.spawn_system_task(
                    self._run_waker, token, name="pyapalis.MemoryStorage waker"
                )
            except RuntimeError:  # the run is shutting down: keep using the token
                return
            self._waker_runs.add(token)
            self._waker_token = token

    async def _run_waker(self, token: trio.lowlevel.TrioToken) -> None:
        """The trio-thread end of :meth:`_schedule_wake`'s fast path; lives as long as
        the run, or until this storage is bound to another run."""
        signal = self._signal
        assert signal is not None
        try:
            while True:
                await trio.lowlevel.wait_readable(signal.fileno)
                signal.clear()
                if self._token is not token:
                    # Bound to another run meanwhile: hand the wake over to it
                    # (and leave _waker_token alone: it may name that run's waker).
                    self._queue.wake_pending = False
                    self._schedule_wake()
                    return
                self._wake_consumers()
        finally:
            self._waker_runs.discard(token)
            if self._waker_token is token:
                self._waker_token = None

    def _wake_consumers(self) -> None:
        """Hand ready tasks to parked consumers, oldest consumer first (trio thread).

        The task goes straight to the consumer, as a trio channel hands over an
        item: the queue was empty when it parked, so FIFO order holds.
        """
        self._queue.wake_pending = False
        if self._unconverted:
            self._convert_unconverted()
        waiters = self._waiters
        while waiters:
            task = self._queue.pop()
            if task is None:
                break
            trio.lowlevel.reschedule(waiters.popleft(), _resume_with(task))
        if waiters and self._queue.scheduled_count:
            # The consumer handed a task may have been the one waiting for the
            # earliest deadline: make sure one that stays parked waits for it.
            self._rearm()
        self._queue.consumer_waiting = bool(waiters)

    def _convert_unconverted(self) -> None:
        scheduled = False
        now = trio.current_time()
        while self._unconverted:
            task = self._unconverted.popleft()
            deadline = self._deadline_for(task.parts.run_at, now)
            if deadline <= now:
                self._queue.push(task, True)
            else:
                self._queue.schedule(task, deadline, True)
                scheduled = True
        if scheduled and self._waiters:
            self._rearm()

    def _deadline_for(self, run_at: float, now: float) -> float:
        """The trio deadline of a wall-clock ``run_at``, read at trio time ``now``.

        The offset between the two clocks is re-read only when trio's clock
        has moved since the last read, so tasks converted in one instant (as
        under a virtual clock, which stands still while wall time runs on)
        keep the order of their ``run_at``; tasks with equal deadlines leave
        in the order they were queued.
        """
        if now != self._offset_read_at:
            self._offset_read_at = now
            self._clock_offset = time.time() - now
        return run_at - self._clock_offset

    # -- introspection -----------------------------------------------------

    def __len__(self) -> int:
        return len(self._queue) + len(self._unconverted)

    def statistics(self) -> MemoryStorageStatistics:
        """Counts of queued, scheduled and waiting parties."""
        return MemoryStorageStatistics(
            ready=self._queue.ready_count,
            scheduled=self._queue.scheduled_count + len(self._unconverted),
            maxsize=self._maxsize,
            consumers_waiting=len(self._waiters),
            producers_waiting=len(self._producers),
            pushed_total=self._queue.pushed_total,
            taken_total=self._queue.popped_total,
            results_kept=len(self._results.finished),
            results_limit=self._results.finished.limit,
            results_detailed=self._results.finished.details_kept,
            results_waited_for=len(self._results.waiters),
            fast_acks=not self._results.attention,
        )

    def __repr__(self) -> str:
        return (
            f"MemoryStorage(len={len(self)}, maxsize={self._maxsize}, "
            f"results={self._results.finished.limit})"
        )


_get_ident = threading.get_ident


class _WakeSignal:
    """A file descriptor other threads make readable to wake a :class:`MemoryStorage`'s
    waker task: an eventfd on Linux, a socket pair elsewhere.

    It stays open as long as its storage lives (producers may write to it at
    any time); a finalizer closes it, though not at interpreter exit (a daemon
    thread may still watch it then: the process's end closes it).
    """

    __slots__ = ("clear", "fileno", "set")

    fileno: int
    set: Callable[[], None]
    clear: Callable[[], None]

    @classmethod
    def create(cls, owner: object) -> _WakeSignal:
        self = cls()
        eventfd = getattr(os, "eventfd", None)
        if eventfd is not None:
            fd = eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self.fileno = fd
            self.set = functools.partial(os.eventfd_write, fd, 1)
            self.clear = functools.partial(_clear_eventfd, fd)
            weakref.finalize(owner, os.close, fd).atexit = False
        else:  # pragma: no cover - not Linux
            reader, writer = socket.socketpair()
            reader.setblocking(False)
            writer.setblocking(False)
            self.fileno = reader.fileno()
            self.set = functools.partial(_send_byte, writer)
            self.clear = functools.partial(_drain_socket, reader)
            weakref.finalize(owner, _close_all, reader, writer).atexit = False
        return self


def _clear_eventfd(fd: int) -> None:
    with contextlib.suppress(BlockingIOError):
        os.eventfd_read(fd)


def _send_byte(sock: socket.socket) -> None:  # pragma: no cover - not Linux
    with contextlib.suppress(BlockingIOError):  # full: it is readable anyway
        sock.send(b"\0")


def _drain_socket(sock: socket.socket) -> None:  # pragma: no cover - not Linux
    with contextlib.suppress(BlockingIOError):
        while sock.recv(4096):
            pass


def _close_all(*socks: socket.socket) -> None:  # pragma: no cover - not Linux
    for sock in socks:
        sock.close()


_REARM: Any = object()
"""Handed to a parked consumer to make it look again (see ``MemoryStorage._rearm``)."""


def _in_trio_run() -> bool:
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True
