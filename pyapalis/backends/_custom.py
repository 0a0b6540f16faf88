"""CustomBackend: a polling backend made from a database and two functions.

apalis's ``BackendBuilder``: give it your database handle, a *fetcher* that
returns the next tasks and a *sink* that stores pushed ones, plus a config
carrying the poll strategy, and it builds a backend any worker can consume.
The backend does the rest: pacing polls (:mod:`pyapalis.backends._poll`), handing the
fetched tasks out in order, honouring ``run_at``, holding retries until their
delay has passed (on trio's clock) and taking back interrupted tasks.

:func:`dequeue_backend` is apalis's in-memory VecDeque backend built this way.
"""

from __future__ import annotations

import heapq
import inspect
import itertools
import math
import time
from collections import deque
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic, TypeVar

import trio

from .._errors import BuildError
from .._implementation import Task, TaskId, set_status, undo_attempt
from .._status import Status
from ._kit._args import check_delay, check_positive_int, check_task
from ._kit._clock import run_clock
from ._kit._sink import push_each
from ._poll import IntervalStrategy, PollStrategy, PollTicker, close_ticker

__all__ = [
    "BackendBuilder",
    "CustomBackend",
    "CustomConfig",
    "Fetcher",
    "Sink",
    "dequeue_backend",
]

DB = TypeVar("DB")

Fetcher = Callable[[Any, "CustomConfig"], "Awaitable[Iterable[Any] | None] | Iterable[Any] | None"]
"""``fetcher(db, config)``: the next tasks (``Task`` objects or plain args), or None.

May be a plain or an ``async`` function. Return an iterable even for one item
(``[args]``); None or an empty iterable means the poll found nothing.
"""

Sink = Callable[[Any, "CustomConfig", list[Task]], "Awaitable[None] | None"]
"""``sink(db, config, tasks)``: store pushed tasks (ids already assigned).

May be a plain or an ``async`` function; ``push_bulk`` calls it once for all.
"""


@dataclass(frozen=True, slots=True)
class CustomConfig:
    """A :class:`CustomBackend`'s settings, also handed to the fetcher and the sink.

    ``poll`` paces polls after one that found nothing; ``buffer_size`` is the
    most tasks a fetcher should return per poll (a hint the fetcher reads:
    :func:`dequeue_backend`'s does). Subclass it to carry settings of your own.
    """

    poll: PollStrategy
    buffer_size: int = 10

    def __post_init__(self) -> None:
        if not isinstance(self.poll, PollStrategy):
            raise TypeError(
                f"CustomConfig: poll must be a poll strategy (with .ticker()), got {self.poll!r}"
            )
        check_positive_int(self.buffer_size, "CustomConfig: buffer_size")


_UNSET: Any = object()


class BackendBuilder(Generic[DB]):
    """Builds a :class:`CustomBackend`; every part is required.

    ``BackendBuilder().database(db).fetcher(fetch).sink(store).config(cfg).build()``.
    ``config`` takes a :class:`CustomConfig` or just a poll strategy. A missing
    part raises :class:`BuildError` at :meth:`build`, its ``kind`` naming the
    part: ``MissingDb``, ``MissingFetcher``, ``MissingSink``, ``MissingConfig``.
    """

    def __init__(self) -> None:
        self._db: Any = _UNSET
        self._fetcher: Fetcher | None = None
        self._sink: Sink | None = None
        self._config: CustomConfig | None = None

    def database(self, db: DB) -> BackendBuilder[DB]:
        """The handle the fetcher and the sink work on (any object)."""
        self._db = db
        return self

    def fetcher(self, fetcher: Fetcher) -> BackendBuilder[DB]:
        """``fetcher(db, config)`` returns the next tasks, or None (see :data:`Fetcher`)."""
        if not callable(fetcher):
            raise TypeError(f"fetcher: expected a function (db, config), got {fetcher!r}")
        self._fetcher = fetcher
        return self

    def sink(self, sink: Sink) -> BackendBuilder[DB]:
        """``sink(db, config, tasks)`` stores pushed tasks (see :data:`Sink`)."""
        if not callable(sink):
            raise TypeError(f"sink: expected a function (db, config, tasks), got {sink!r}")
        self._sink = sink
        return self

    def config(self, config: CustomConfig | PollStrategy) -> BackendBuilder[DB]:
        """A :class:`CustomConfig`, or a poll strategy (``CustomConfig(poll=strategy)``)."""
        if not isinstance(config, CustomConfig):
            if not isinstance(config, PollStrategy):
                raise TypeError(
                    "config: expected a CustomConfig or a poll strategy, "
                    f"got {type(config).__name__}"
                )
            config = CustomConfig(poll=config)
        self._config = config
        return self

    def build(self) -> CustomBackend[DB]:
        """The backend; raises :class:`BuildError` naming the first missing part."""
        if self._db is _UNSET:
            raise BuildError("MissingDb", "the backend has no database; call .database(db)")
        if self._fetcher is None:
            raise BuildError("MissingFetcher", "the backend has no fetcher; call .fetcher(fn)")
        if self._sink is None:
            raise BuildError("MissingSink", "the backend has no sink; call .sink(fn)")
        if self._config is None:
            raise BuildError(
                "MissingConfig", "the backend has no config; call .config(CustomConfig(...))"
            )
        return CustomBackend(self._db, self._fetcher, self._sink, self._config)


class CustomBackend(Generic[DB]):
    """A polling backend over your database, made by :class:`BackendBuilder`.

    The first :meth:`take` polls at once; while polls find work the backend
    polls again as soon as the tasks fetched are handed out (it drains); after
    a poll that finds nothing it waits as ``config.poll`` says. Only one poll
    runs at a time, however many consumer loops wait. A push does not wake a
    waiting worker: the next poll finds the task.

    Tasks come out in the order the fetcher returns them. A fetched task whose
    ``run_at`` is in the future waits here until due. Once fetched, a task
    stays in this backend until it is final: retries wait here for their delay
    (on trio's clock) and an interrupted task comes back to the front, so
    neither goes through the sink again. A fetch, once started, runs to its
    end even if the waiting worker is stopped: its tasks wait here for the next
    :meth:`take`. An error from the fetcher stops the worker (a backend
    failure). The backend keeps no results and writes no statuses back, so
    the tasks it holds (fetched, not yet final) live as long as this object:
    a fetcher that deletes what it returns makes an at-most-once backend
    across process crashes; one that only marks rows makes recovery yours.

    ======================  =============  =====================================
    capability              support        notes
    ======================  =============  =====================================
    TaskSink                supported      push, push_bulk (one sink call),
                                           push_task, push_stream
    Reschedule              supported      held in this backend, not re-sunk
    FetchById               not supported
    Update                  not supported
    Vacuum                  not supported
    ResumeById              not supported
    ResumeAbandoned         not supported  fetched tasks live in this object
    RegisterWorker          not supported
    ListWorkers             not supported
    ListTasks               not supported
    WaitForCompletion       not supported  no result store
    ======================  =============  =====================================
    """

    def __init__(self, db: DB, fetcher: Fetcher, sink: Sink, config: CustomConfig) -> None:
        self._db = db
        self._fetcher = fetcher
        self._sink = sink
        self._config = config
        self._ticker: PollTicker = config.poll.ticker()
        # Tasks fetched (or handed back) and due now, in hand-out order.
        self._ready: deque[Task] = deque()
        # Tasks not due yet: (trio deadline, sequence, task); the sequence
        # keeps equal deadlines in arrival order.
        self._scheduled: list[tuple[float, int, Task]] = []
        self._sequence = itertools.count()
        # True before the first poll and after one that found work.
        self._poll_now = True
        # One consumer at a time polls (or waits for the ticker); the others
        # park here until it is done or the backend's contents change.
        self._polling = False
        self._lot = trio.lowlevel.ParkingLot()
        self._poller_wait: trio.CancelScope | None = None
        self._polls = 0

    @property
    def polls(self) -> int:
        """How many times the fetcher has been called."""
        return self._polls

    @property
    def database(self) -> DB:
        """The database handle given to the builder."""
        return self._db

    @property
    def config(self) -> CustomConfig:
        """The config handed to the fetcher and the sink."""
        return self._config

    async def aclose(self) -> None:
        """Release the poll strategy's resources (a stream's async generator).

        The database is yours: it is left as it is.
        """
        await close_ticker(self._ticker)

    def __repr__(self) -> str:
        return (
            f"CustomBackend(ready={len(self._ready)}, scheduled={len(self._scheduled)}, "
            f"poll={self._config.poll!r})"
        )

    # -- producer side (TaskSink) ---------------------------------------------------

    async def push(self, args: Any) -> TaskId:
        """Store ``args`` as a new task through the sink; returns its id."""
        [task_id] = await self._store([_new_task(args)])
        return task_id

    async def push_bulk(self, items: Iterable[Any]) -> list[TaskId]:
        """Store every item as a task with one sink call; returns the ids in order."""
        return await self._store([_new_task(args) for args in items])

    async def push_task(self, task: Task) -> TaskId:
        """Store a prepared task, keeping its id (one is generated if unset),
        ``run_at``, attempts, data and metadata."""
        check_task(task, "push_task: task")
        if task.parts.task_id is None:
            task.parts.task_id = TaskId.generate()
        set_status(task, Status.Pending)
        [task_id] = await self._store([task])
        return task_id

    async def push_stream(self, items: AsyncIterable[Any]) -> int:
        """Store every item an async iterable yields, as it yields; returns the count."""
        return await push_each(self.push, items)

    async def _store(self, tasks: list[Task]) -> list[TaskId]:
        # Fix this trio run's wall-clock offset now, while the tasks' run_at
        # is fresh, not at the first poll: under a virtual clock the wall time
        # spent in between would make a scheduled task come due early.
        run_clock()
        await _maybe_await(self._sink(self._db, self._config, tasks))
        await trio.lowlevel.checkpoint()
        # Every task was given an id before it reached the sink.
        return [task_id for task in tasks if (task_id := task.parts.task_id) is not None]

    # -- consumer side (the Backend protocol) -----------------------------------------

    def bind(self) -> None:
        """Fix the trio run's wall-clock offset (see :func:`run_clock`) as a worker starts."""
        run_clock()

    def take_nowait(self) -> Task | None:
        """The next fetched task that is due, or None; never polls."""
        scheduled = self._scheduled
        if scheduled:
            now = trio.current_time()
            while scheduled and scheduled[0][0] <= now:
                self._ready.append(heapq.heappop(scheduled)[2])
        if self._ready:
            return self._ready.popleft()
        return None

    async def take(self) -> Task:
        """Wait for the next task, polling as the strategy says.

        Cancelling the wait takes nothing: a fetch in progress completes and
        its tasks stay here.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            task = self.take_nowait()
            if task is not None:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return task
            if self._polling:
                with trio.move_on_at(self._next_deadline()):
                    await self._lot.park()
                continue
            self._polling = True
            try:
                await self._poll_when_due()
            finally:
                self._polling = False
                # Someone else becomes the poller, or finds the fetched tasks.
                self._lot.unpark_all()

    async def _poll_when_due(self) -> None:
        """Poll now if due; else wait for the ticker, then poll. Returns early
        (without polling) when a scheduled task comes due or a task is handed
        back, so the caller can take it."""
        if not self._poll_now:
            with trio.CancelScope(deadline=self._next_deadline()) as scope:
                self._poller_wait = scope
                try:
                    await self._ticker.wait()
                finally:
                    self._poller_wait = None
            if scope.cancelled_caught:
                return
        # Shielded: a fetcher may already have claimed rows when a cancel
        # arrives; letting it finish is what keeps them from being lost.
        with trio.CancelScope(shield=True):
            self._polls += 1
            fetched = await _maybe_await(self._fetcher(self._db, self._config))
            found = self._accept(fetched)
        self._poll_now = found
        if found:
            self._ticker.found_work()

    def _accept(self, fetched: object) -> bool:
        """Queue what the fetcher returned; True if it returned anything."""
        if fetched is None:
            return False
        if isinstance(fetched, (str, bytes, Task)) or not isinstance(fetched, Iterable):
            raise TypeError(
                "fetcher: must return an iterable of tasks or args (a list, even of one), "
                f"or None; got {type(fetched).__name__}"
            )
        clock = run_clock()
        found = False
        for item in fetched:
            found = True
            if not isinstance(item, Task):
                self._ready.append(_new_task(item))
                continue
            task = item
            if task.parts.task_id is None:
                task.parts.task_id = TaskId.generate()
            run_at = task.parts.run_at
            # Due by the run's wall clock (which leaps with a virtual clock), or
            # by the system clock (a task stamped "now" by the fetcher a moment
            # ago, read per task as the fetcher may build them lazily).
            if run_at <= clock.wall_now() or run_at <= time.time():
                self._ready.append(task)
            else:
                deadline = clock.deadline(run_at)
                heapq.heappush(self._scheduled, (deadline, next(self._sequence), task))
        return found

    def _next_deadline(self) -> float:
        return self._scheduled[0][0] if self._scheduled else math.inf

    def _changed(self) -> None:
        """A task was handed back or rescheduled: waiting consumers look again."""
        if self._poller_wait is not None:
            self._poller_wait.cancel()
        self._lot.unpark_all()

    async def ack(
        self, task: Task, status: Status, result: Any, error: BaseException | None
    ) -> None:
        """Record a final status on the task (it leaves the backend)."""
        set_status(task, status)
        await trio.lowlevel.checkpoint()

    def ack_nowait(
        self, task: Task, status: Status, result: Any, error: BaseException | None
    ) -> None:
        """Like :meth:`ack`, without awaiting (the worker's fast path)."""
        set_status(task, status)

    async def retry(self, task: Task, delay: float, error: BaseException) -> None:
        """Hold ``task`` here until ``delay`` seconds from now, then hand it out again."""
        self._reschedule(task, delay)
        await trio.lowlevel.checkpoint()

    async def reschedule(self, task: Task, delay: float) -> None:
        """Hold ``task`` here until ``delay`` seconds (or a ``timedelta``) from now."""
        check_task(task, "reschedule: task")
        seconds = check_delay(delay, "reschedule: delay")
        self._reschedule(task, seconds)
        await trio.lowlevel.checkpoint()

    def _reschedule(self, task: Task, delay: float) -> None:
        set_status(task, Status.Pending)
        if delay <= 0:
            self._ready.append(task)
        else:
            deadline = trio.current_time() + delay
            heapq.heappush(self._scheduled, (deadline, next(self._sequence), task))
        self._changed()

    async def release(self, task: Task) -> None:
        """Take back an interrupted task: it goes to the front, its attempt un-counted."""
        undo_attempt(task)
        set_status(task, Status.Pending)
        self._ready.appendleft(task)
        self._changed()
        await trio.lowlevel.checkpoint()


def _new_task(args: Any) -> Task:
    task = Task(args)
    task.parts.task_id = TaskId.generate()
    return task


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


# -- apalis's in-memory VecDeque backend ----------------------------------------------------


def _pop_front(db: deque[Task], config: CustomConfig) -> list[Task]:
    """Up to ``buffer_size`` tasks from the front of the deque."""
    count = min(len(db), config.buffer_size)
    return [db.popleft() for _ in range(count)]


def _push_back(db: deque[Task], config: CustomConfig, tasks: list[Task]) -> None:
    db.extend(tasks)


def dequeue_backend(
    poll_interval: float | timedelta, *, buffer_size: int = 10
) -> CustomBackend[deque[Task]]:
    """apalis's poll-driven in-memory backend: a ``collections.deque`` polled
    every ``poll_interval`` seconds, built with :class:`BackendBuilder`.

    Pushes append to the deque; each poll takes up to ``buffer_size`` tasks
    from its front. Unlike :class:`MemoryStorage` it does not wake a worker on
    push: a task pushed to an idle backend waits for the next poll. Its
    database is the deque (``backend.database``).
    """
    if isinstance(poll_interval, bool) or not isinstance(poll_interval, (int, float, timedelta)):
        raise TypeError(
            "dequeue_backend: poll_interval must be seconds as int, float or timedelta, "
            f"got {type(poll_interval).__name__}"
        )
    seconds = (
        poll_interval.total_seconds() if isinstance(poll_interval, timedelta) else poll_interval
    )
    if math.isnan(seconds) or math.isinf(seconds) or seconds <= 0:
        raise ValueError(
            f"dequeue_backend: poll_interval must be a finite number of seconds > 0, "
            f"got {poll_interval!r}"
        )
    check_positive_int(buffer_size, "dequeue_backend: buffer_size")
    db: deque[Task] = deque()
    return (
        BackendBuilder[deque[Task]]()
        .database(db)
        .fetcher(_pop_front)
        .sink(_push_back)
        .config(CustomConfig(poll=IntervalStrategy(seconds), buffer_size=buffer_size))
        .build()
    )
