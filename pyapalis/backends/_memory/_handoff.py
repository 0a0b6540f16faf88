"""The trio side of a compiled ``TaskQueue``: who waits on it, and how a push wakes them.

This module is the whole wake protocol of :class:`~pyapalis.MemoryStorage`:

- consumers park in :meth:`Handoff.take_or_wake` (oldest first in
  ``waiters``); a push hands its task straight to the oldest one (as a trio
  channel does). The compiled queue does that itself for ``push_nowait`` on
  the trio thread (no Python frame on the idle push-to-handler path) and
  calls :meth:`Handoff.wake` (the queue's declared ``Waker``) in every other
  case;
- from another thread, a wake goes to the consumers' run through its token
  the first time, then through a waker task watching an eventfd
  (:meth:`Handoff._schedule_wake`);
- tasks scheduled for later wait in the queue's heap with a trio deadline; a
  future-dated task pushed where trio's clock cannot be read (another thread,
  before any run) waits in ``unconverted`` until the trio thread converts it;
- producers wait for room (``maxsize``) in :meth:`Handoff.park_producer`.

Three flags live on the compiled queue, where producers on any thread read
them without a Python call: ``consumer_waiting`` (set by a consumer before it
parks), ``wake_pending`` (a wake is on its way to the consumers' thread) and
``consumer_thread`` (set by :meth:`Handoff.bind`). Only this module writes them.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import socket
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import outcome
import trio

from ..._implementation import OneShotValue, Task, TaskId, TaskQueue
from .._kit._clock import run_clock, seconds_until

__all__ = ["Handoff"]

# What a parked consumer is resumed with (trio's reschedule takes an Outcome):
# a one-use value, several times cheaper to make and unwrap than outcome.Value.
outcome.Outcome.register(OneShotValue)
_resume_with = cast("Callable[[object], outcome.Outcome[Any]]", OneShotValue)


class Handoff:
    """Parks the consumers and producers of one :class:`TaskQueue` and wakes them.

    ``full_message`` is what ``push_nowait`` raises with (``trio.WouldBlock``)
    when the queue is full.
    """

    def __init__(self, queue: TaskQueue, full_message: str) -> None:
        self._queue = queue
        # Parked consumer tasks, oldest first. A push hands its task straight
        # to the oldest one (as a trio channel does): no second pop, no lot.
        self.waiters: deque[trio.lowlevel.Task] = deque()
        # Future-dated tasks pushed where trio's clock cannot be read (another
        # thread, or before any run): converted on the trio thread.
        self.unconverted: deque[Task] = deque()
        # The queue's push_nowait hands a task to a parked consumer in C when
        # it can, and calls wake() otherwise (this object is its Waker).
        queue.connect_consumers(
            self.waiters,
            self.unconverted,
            trio.lowlevel.reschedule,
            self,
            trio.WouldBlock,
            full_message,
        )
        # Counts wake_takers() calls: a consumer re-arming its wait (rearm)
        # was not in waiters at that moment, and checks this instead.
        self._takers_woken = 0
        self._producers = trio.lowlevel.ParkingLot()
        self.producers_waiting = 0
        """Producers parked for room (ParkingLot's len() is a Python-level call)."""
        self._token: trio.lowlevel.TrioToken | None = None
        # The run whose waker task (_run_waker) producers signal through
        # _signal, or None; and every run where such a task is alive.
        self._waker_token: trio.lowlevel.TrioToken | None = None
        self._waker_runs: set[trio.lowlevel.TrioToken] = set()
        self._signal: _WakeSignal | None = None
        self.wakes = 0
        """How many times parked consumers were woken from Python (diagnostics, tests)."""

    def enqueue(self, task: Task, *, force: bool, delay: float | None = None) -> bool:
        """Put ``task`` in the ready ring or, if it is not due, the schedule.

        ``delay`` (seconds on trio's clock) overrides the task's ``run_at``.
        """
        if self._on_trio_thread():
            now = trio.current_time()
            if delay is None:
                deadline = run_clock().deadline(task.parts.run_at, now)
            else:
                deadline = now + delay
            if deadline <= now:
                queued: bool = self._queue.push(task, force)
                return queued
            queued = self._queue.schedule(task, deadline, force)
            if queued and self.waiters:
                self.rearm()
            return queued
        if delay is None:
            delay = seconds_until(task.parts.run_at)
        if delay <= 0:
            queued = self._queue.push(task, force)
            return queued
        if not force and self._queue.is_full():
            return False
        self.unconverted.append(task)
        if self._token is not None:
            self._schedule_wake()
        return True

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
            queue.consumer_waiting = bool(self.waiters)
            if self.producers_waiting:
                self._producers.unpark()
            await trio.lowlevel.cancel_shielded_checkpoint()
            return task
        me = trio.lowlevel.current_task()
        waiters = self.waiters
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
        if self.producers_waiting and task is not None:
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
        waiters = self.waiters
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
                            self.rearm()
                    if self.producers_waiting:
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
                if self.producers_waiting and task is not None:
                    self._producers.unpark()
                return task

    def rearm(self) -> None:
        """Make one parked consumer look again and re-arm its wait with the
        earliest deadline: a task was scheduled, or the consumer that was
        waiting for the earliest deadline left (trio thread)."""
        waiters = self.waiters
        if waiters:
            trio.lowlevel.reschedule(waiters.pop(), _resume_with(_REARM))
            self._queue.consumer_waiting = bool(waiters)

    def wake_takers(self) -> None:
        """Make every parked :meth:`take_or_wake` return None now."""
        self._takers_woken += 1
        while self.waiters:
            trio.lowlevel.reschedule(self.waiters.popleft(), _resume_with(None))
        self._queue.consumer_waiting = False

    async def park_producer(self) -> None:
        """Wait until a take makes room (``maxsize``), or :meth:`unpark_producer` is called."""
        self.producers_waiting += 1
        try:
            await self._producers.park()
        finally:
            self.producers_waiting -= 1

    def unpark_producer(self) -> None:
        """Let one producer waiting for room look again."""
        if self.producers_waiting:
            self._producers.unpark()

    # -- inspection (diagnostics, tests) ---------------------------------

    @property
    def waker_token(self) -> trio.lowlevel.TrioToken | None:
        """The run whose waker task other threads signal, or None."""
        return self._waker_token

    @property
    def waker_runs(self) -> frozenset[trio.lowlevel.TrioToken]:
        """Every run where a waker task of this handoff is alive."""
        return frozenset(self._waker_runs)

    @property
    def signal_fileno(self) -> int | None:
        """The file descriptor other threads make readable, once the first waker started."""
        return None if self._signal is None else self._signal.fileno

    # -- tasks handed back, looked up, removed ----------------------------

    def requeue(self, task: Task, delay: float) -> None:
        """Queue ``task`` again, due ``delay`` seconds from now, even if full (trio thread)."""
        queue = self._queue
        if delay <= 0:
            queue.push(task, True)
        else:
            queue.schedule(task, trio.current_time() + delay, True)
            if self.waiters:
                self.rearm()
        if queue.consumer_waiting:
            self.wake()

    def push_front(self, task: Task) -> None:
        """Put an interrupted task back at the front, even if full."""
        self._queue.push_front(task)
        if self._queue.consumer_waiting:
            self.wake()

    def remove(self, task_id: TaskId) -> None:
        """Take the queued task with this id, if any, out of the queue (O(n))."""
        # A snapshot: producer threads may append to unconverted meanwhile.
        for waiting in list(self.unconverted):
            if waiting.parts.task_id == task_id:
                self.unconverted.remove(waiting)
                return
        self._queue.remove(task_id)

    def tasks(self) -> list[Task]:
        """Every queued task: ready, then scheduled by deadline, then unconverted."""
        tasks: list[Task] = self._queue.tasks()
        tasks.extend(self.unconverted)
        return tasks

    def __len__(self) -> int:
        """Queued tasks, unconverted ones included."""
        return len(self._queue) + len(self.unconverted)

    # -- waking ------------------------------------------------------------

    def _on_trio_thread(self) -> bool:
        return self._queue.consumer_thread == threading.get_ident() and _in_trio_run()

    def pushed(self) -> None:
        """After a push from trio code: learn the run (if none yet), wake a parked consumer."""
        self.bind_if_unbound()
        if self._queue.consumer_waiting:
            self.wake()

    def bind_if_unbound(self) -> None:
        if self._token is None:
            self.bind()

    def wake(self) -> None:
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
        self.wakes += 1
        self._queue.wake_pending = False
        if self.unconverted:
            self._convert_unconverted()
        waiters = self.waiters
        while waiters:
            task = self._queue.pop()
            if task is None:
                break
            trio.lowlevel.reschedule(waiters.popleft(), _resume_with(task))
        if waiters and self._queue.scheduled_count:
            # The consumer handed a task may have been the one waiting for the
            # earliest deadline: make sure one that stays parked waits for it.
            self.rearm()
        self._queue.consumer_waiting = bool(waiters)

    def _convert_unconverted(self) -> None:
        """Queue the tasks pushed where trio's clock could not be read (trio thread)."""
        if not self.unconverted:  # the usual case, at every take: nothing to read
            return
        scheduled = False
        now = trio.current_time()
        deadline_of = run_clock().deadlines(now)
        while self.unconverted:
            task = self.unconverted.popleft()
            deadline = deadline_of(task.parts.run_at)
            if deadline <= now:
                self._queue.push(task, True)
            else:
                self._queue.schedule(task, deadline, True)
                scheduled = True
        if scheduled and self.waiters:
            self.rearm()


_get_ident = threading.get_ident


class _WakeSignal:
    """A file descriptor other threads make readable to wake a :class:`Handoff`'s
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
"""Handed to a parked consumer to make it look again (see :meth:`Handoff.rearm`)."""


def _in_trio_run() -> bool:
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True
