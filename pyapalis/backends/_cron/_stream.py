"""CronStream: the ticks of a cron schedule, awaited on trio's clock.

One object, three uses (as apalis-cron's ``CronStream``):

* an async iterable of ticks: ``async for tick in CronStream("*/5 * * * *"):``
  yields each tick as an aware datetime in the schedule's time zone;
* a backend: ``WorkerBuilder(...).backend(CronStream(...))`` runs the handler
  once per tick, the handler receiving the tick's datetime (ticks go through
  a private :class:`MemoryStorage`, so retries and timeouts work as on any
  backend);
* a task source for a pipe: ``Pipe(CronStream(...), storage)`` makes every
  tick a task of ``storage`` whose id derives from the schedule's identity
  and the tick (:meth:`CronStream.tick_id`), so that however many processes
  run the schedule, each tick is stored once (``push_task`` of an id that
  exists stores nothing). Its args are the tick as ISO 8601 text with its UTC
  offset (``datetime.fromisoformat(args)`` gives it back), the same on every
  backend, persistent or not.

Missed ticks. A tick is *missed* when nothing was waiting for it: the stream
was not being iterated yet (the process was down), or the consumer was still
busy with the previous tick when it came. ``missed="skip"`` (the default, as in
apalis-cron) drops them and waits for the next tick; ``missed="last"`` yields
the latest missed tick at once (one, however many were missed), then goes on
with the schedule. For a pipe, "last" makes a process that starts push the
schedule's previous tick: if it was pushed before (by this process before a
restart, or by another one), the backend stores nothing, so a restart catches
up on a tick missed while nothing ran and never runs one twice. A pipe or a
backend waits for the next tick while the worker runs, so ticks are missed
only while no worker runs.

Time. Ticks are computed in wall-clock time (``time.time()``) and awaited on
trio's clock through the run clock (:func:`pyapalis.backends._kit._clock.run_clock`),
so a test in virtual time (``autojump_clock``, with
:class:`pyapalis.testing.WallClock`) sees ``* * * * *`` tick exactly 60 seconds
apart and runs instantly.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal, Protocol, runtime_checkable

import trio

from ..._implementation import Task, TaskBuilder, TaskId
from ..._status import Status
from .._kit._args import check_name
from .._kit._clock import DeadlineConverter, run_clock
from .._memory._storage import MemoryStorage
from ._schedule import Schedule

__all__ = ["CronStream", "MissedTicks", "NamedQueue"]

logger = logging.getLogger("pyapalis.cron")

MissedTicks = Literal["skip", "last"]
"""What a :class:`CronStream` does with ticks nothing waited for (see the module docs)."""

_MISSED: tuple[MissedTicks, ...] = ("skip", "last")

WAKE_EVERY = 60.0
"""While waiting for a tick, the wall clock is read again at least this often (seconds)."""
_DEFAULT_QUEUE = "default"


@runtime_checkable
class NamedQueue(Protocol):
    """A backend handle serving one named queue (``JsonStorage``, the shared backends)."""

    @property
    def queue_name(self) -> str: ...


class CronStream:
    """The ticks of ``expression`` in time zone ``tz``; see the module docs.

    ``expression``: five fields (minute hour day month weekday), six with the
    seconds first (``*/15 * * * * *``), or an alias (``@yearly``,
    ``@annually``, ``@monthly``, ``@weekly``, ``@daily``, ``@midnight``,
    ``@hourly``). ``tz``: a zone name (``"Europe/Berlin"``) or a tzinfo;
    UTC by default. ``name``: the schedule's identity for tick ids (otherwise
    its expression, time zone and the queue it feeds); give one to keep the
    ids when the expression changes, or to tell apart two schedules that would
    otherwise share them. ``missed``: ``"skip"`` or ``"last"``.

    A stream is its own iterator and keeps its place: iterate it from one
    task at a time (a second task waiting at once raises
    ``trio.BusyResourceError``). Cancelling ``__anext__`` loses nothing: the
    tick it was waiting for is still the next one.
    """

    __slots__ = ("_cursor", "_held", "_missed", "_name", "_schedule", "_storage", "_waiting")

    def __init__(
        self,
        expression: str,
        *,
        tz: str | _dt.tzinfo = "UTC",
        name: str | None = None,
        missed: MissedTicks = "skip",
    ) -> None:
        if name is not None:
            check_name(name, "CronStream: name")
        if missed not in _MISSED:
            raise ValueError(
                f"CronStream: missed must be 'skip' or 'last', got {type(missed).__name__} "
                f"{missed!r}"
            )
        self._schedule = Schedule(expression, tz)
        self._name = name
        self._missed: MissedTicks = missed
        # The last tick yielded (UNIX seconds), None before the first.
        self._cursor: int | None = None
        self._waiting = False
        # As a backend: the storage ticks wait in, and a tick task taken from
        # the stream whose push was interrupted (pushed first next time).
        self._storage: MemoryStorage | None = None
        self._held: Task | None = None

    # -- the schedule ----------------------------------------------------------------

    @property
    def expression(self) -> str:
        """The cron expression, as given (whitespace collapsed)."""
        return self._schedule.expression

    @property
    def tz(self) -> _dt.tzinfo:
        """The time zone ticks are computed in."""
        return self._schedule.tz

    @property
    def name(self) -> str | None:
        """The schedule's name, if given."""
        return self._name

    @property
    def missed(self) -> MissedTicks:
        """What happens to missed ticks: ``"skip"`` or ``"last"``."""
        return self._missed

    def next_after(self, when: _dt.datetime) -> _dt.datetime | None:
        """The first tick later than the aware datetime ``when`` (None if none is left)."""
        if not isinstance(when, _dt.datetime) or when.utcoffset() is None:
            raise TypeError(f"CronStream.next_after: when must be an aware datetime, got {when!r}")
        tick = self._schedule.first_after(math.floor(when.timestamp()))
        return None if tick is None else self._schedule.datetime_of(tick)

    def identity(self, queue: str = _DEFAULT_QUEUE) -> str:
        """What tick ids start with: the name, or a digest of expression, zone and ``queue``."""
        if self._name is not None:
            return self._name
        key = f"{self._schedule.expression}\n{self._schedule.zone}\n{queue}".encode()
        return hashlib.blake2b(key, digest_size=8).hexdigest()

    def tick_id(self, tick: _dt.datetime, queue: str = _DEFAULT_QUEUE) -> TaskId:
        """The task id of ``tick`` fed into ``queue``: ``cron:<identity>:<UTC time>``.

        The same in every process that runs this schedule; distinct for the
        two passes of a local time that a fall-back change repeats.
        """
        if not isinstance(tick, _dt.datetime) or tick.utcoffset() is None:
            raise TypeError(f"CronStream.tick_id: tick must be an aware datetime, got {tick!r}")
        utc = tick.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return TaskId(f"cron:{self.identity(queue)}:{utc}")

    # -- iterating ---------------------------------------------------------------------

    def __aiter__(self) -> CronStream:
        return self

    async def __anext__(self) -> _dt.datetime:
        """Wait for the next tick (see ``missed``) and return it."""
        return self._schedule.datetime_of(await self._next_tick())

    async def _next_tick(self) -> int:
        """The next tick to yield, in UNIX seconds, once it is due."""
        if self._waiting:
            raise trio.BusyResourceError(
                "CronStream: another task is already waiting for this stream's next tick"
            )
        self._waiting = True
        try:
            clock = run_clock()
            wall = clock.wall_now()
            tick = self._catch_up(wall)
            if tick is None:
                after = math.ceil(wall) - 1
                if self._cursor is not None:
                    after = max(after, self._cursor)
                tick = self._schedule.first_after(after)
                if tick is None:
                    raise StopAsyncIteration
                await _sleep_until_wall(clock, tick)
            else:
                await trio.lowlevel.checkpoint()
            # Only a tick returned moves the stream on: a cancelled wait changes nothing.
            self._cursor = tick
            return tick
        finally:
            self._waiting = False

    def _catch_up(self, wall: float) -> int | None:
        """A tick to yield at once: the latest one due by ``wall`` not yielded yet, if
        ``missed="last"`` (a tick exactly at ``wall`` counts: it is due, not missed)."""
        cursor = self._cursor
        if self._missed == "skip":
            if cursor is not None:
                self._report_skipped(cursor, math.ceil(wall))
            return None
        last = self._schedule.last_before(math.floor(wall) + 1)
        if last is None or (cursor is not None and last <= cursor):
            return None
        return last

    def _report_skipped(self, cursor: int, before: int) -> None:
        """Log the ticks later than ``cursor`` and earlier than ``before``, if any."""
        last = self._schedule.last_before(before)
        if last is None or last <= cursor:
            return
        logger.warning(
            "CronStream %s: ticks after %s up to %s came while nothing waited for them; "
            "skipped (missed='skip')",
            self,
            self._schedule.datetime_of(cursor).isoformat(),
            self._schedule.datetime_of(last).isoformat(),
        )

    # -- a source of tasks for a Pipe ------------------------------------------------------

    def tasks_for(self, backend: object) -> AsyncIterator[Task]:
        """The ticks as tasks for ``backend`` (what ``Pipe(stream, backend)`` pushes).

        Each task's id is :meth:`tick_id` for the backend's queue (its
        ``queue_name``, ``"default"`` for a backend without one), its
        ``run_at`` the tick, its args the tick as ISO 8601 text.
        """
        queue = backend.queue_name if isinstance(backend, NamedQueue) else _DEFAULT_QUEUE
        return _TickTasks(self._next_tick, functools.partial(self._task, queue=queue, as_text=True))

    def _task(self, tick: int, queue: str, *, as_text: bool) -> Task:
        when = self._schedule.datetime_of(tick)
        args: Any = when.isoformat() if as_text else when
        return TaskBuilder(args).id(self.tick_id(when, queue)).run_at_timestamp(tick).build()

    # -- a backend: the ticks wait in a private MemoryStorage ------------------------------

    def _backing(self) -> MemoryStorage:
        storage = self._storage
        if storage is None:
            storage = self._storage = MemoryStorage()
        return storage

    def bind(self) -> None:
        """Called when a worker starts consuming (see ``Backend.bind``)."""
        self._backing().bind()

    def take_nowait(self) -> Task | None:
        """The next tick task due, or None."""
        return self._backing().take_nowait()

    async def take(self) -> Task:
        """Wait for the next tick task."""
        return await self._backing().take()

    async def ack(
        self, task: Task, status: Status, result: Any, error: BaseException | None
    ) -> None:
        """Record a tick's outcome (kept as MemoryStorage keeps results)."""
        await self._backing().ack(task, status, result, error)

    async def retry(self, task: Task, delay: float, error: BaseException) -> None:
        """Run a failed tick again after ``delay`` seconds."""
        await self._backing().retry(task, delay, error)

    async def release(self, task: Task) -> None:
        """Take back a tick whose execution was interrupted."""
        await self._backing().release(task)

    async def run_alongside(self) -> None:
        """Push each tick into the private storage, as a worker consuming this stream runs it.

        The args of these tasks are the tick's datetime itself (they never
        leave the process).
        """
        storage = self._backing()
        ticks = _TickTasks(
            self._next_tick, functools.partial(self._task, queue=_DEFAULT_QUEUE, as_text=False)
        )
        while True:
            if self._held is None:
                self._held = await anext(ticks)
            await storage.push_task(self._held)
            self._held = None

    def __repr__(self) -> str:
        name = "" if self._name is None else f", name={self._name!r}"
        return f"CronStream({self.expression!r}, tz={self._schedule.zone!r}{name})"


async def _sleep_until_wall(clock: DeadlineConverter, wall: int) -> None:
    """Sleep until the wall-clock time ``wall``, looking at the wall clock every
    :data:`WAKE_EVERY` seconds: trio's clock is monotonic, and a wall clock that
    jumps meanwhile (a suspended machine, an NTP step) would otherwise make a
    tick hours away come late by the jump."""
    while True:
        now = trio.current_time()
        deadline = clock.deadline(wall, now)
        if deadline <= now + WAKE_EVERY:
            await trio.sleep_until(deadline)
            return
        await trio.sleep_until(now + WAKE_EVERY)


class _TickTasks:
    """The ticks of a stream as tasks; an iterator that survives a cancelled ``__anext__``.

    (An async generator would not: a cancellation inside it finishes it.)
    """

    __slots__ = ("_make", "_next_tick")

    def __init__(
        self, next_tick: Callable[[], Awaitable[int]], make: Callable[[int], Task]
    ) -> None:
        self._next_tick = next_tick
        self._make = make

    def __aiter__(self) -> _TickTasks:
        return self

    async def __anext__(self) -> Task:
        return self._make(await self._next_tick())
