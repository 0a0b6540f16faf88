"""The shared-backend model, written once for SQLite, PostgreSQL and Redis.

A shared backend is one store that several worker processes consume at once.
Each backend implements the few store operations of :class:`LeaseStore` (one
round trip each, atomic on its own); :class:`LeaseSession` turns them into the
worker's side of the contract, a :class:`~pyapalis.backends.WorkerSession`,
the same for every backend::

    class MyStorage:                       # the backend: TaskSink, capabilities ...
        def session(self, worker: WorkerIdentity) -> LeaseSession:
            return LeaseSession(self._store, worker, self._leases)

The delivery model, and where each rule lives:

* **Claims** (:meth:`LeaseStore.exchange`): one call marks up to ``limit`` due
  tasks Running, owned by the run's fresh worker id, attempt + 1, lease
  deadline ``now + lease``, atomically. The session asks for its free slots
  plus a small prefetch (:attr:`LeaseConfig.prefetch`), never the whole
  queue; an idle worker claims at once, so a single task is never delayed.
  Under load, once a claim came back full and fewer than concurrency/2
  claimed tasks wait, the next claim starts in the background, so the
  consumer loops do not stall on the round trip.
  Prefetched tasks wait in the session and are handed back (not counted as
  an execution) when the run ends. A session given task ``names`` (a
  ``FiltersTaskNames`` view, what a ``WorkerPool`` consumes) claims only
  tasks stored under those names (``_names.task_name_of``).
* **Acks** are fenced and batched: every outcome (final status, retry with
  its next ``run_at``, hand-back) becomes a :class:`Settlement` carrying the
  attempt the claim set; the store applies it only while the task is still
  Running under this owner and attempt, so a late ack after a lost lease
  changes nothing. Settlements are folded into the next claim when there is
  one, else flushed after :attr:`LeaseConfig.flush_interval` or once
  :attr:`LeaseConfig.flush_max` are waiting (together with the next claim
  when the queue had more: every commit carries both). ``ack_nowait`` (the worker's hot
  path) only queues.
* **Heartbeat** (:meth:`LeaseStore.heartbeat`): records the worker (for
  ``list_workers``) and extends every lease it holds, in one call. The worker
  calls it through ``register_worker`` (emitting ``HeartBeat``); the session
  also beats whenever the last beat is older than lease/3, so a short lease
  is kept alive whatever the worker's heartbeat interval.
* **Recovery** (:meth:`LeaseStore.recover`): every lease/2 each live session
  re-queues a bounded batch of tasks whose lease expired (or fails those with
  no attempts left), with no leader; a dead worker's tasks come back within
  about 1.5 leases.
* **Wake-up** (:meth:`LeaseStore.wait_wake`): a hint that something may be
  due (an in-process push at once, another process's through the backend's
  notification), always bounded by :attr:`LeaseConfig.poll` and by the next
  scheduled task's ``run_at``, so a lost notification only delays. An idle
  worker has one consumer loop waiting on the store; the others park and are
  woken one at a time, and a claim runs only when it may find something (the
  last one came back full, a wake came since, or outcomes wait to be
  written), so one push to an idle worker costs one claim.
* **Faults**: a :class:`~pyapalis.StorageError` from the store is logged and
  the operation tried again after a backoff (0.1 s doubling to
  :attr:`LeaseConfig.backoff_max`); the worker never stops for it and no
  settlement is dropped (it stays queued until the store takes it). A claim
  runs shielded from cancellation, so the tasks it took always reach the
  session (and are handed back if the run is ending).

Times are wall-clock UNIX seconds from :func:`~pyapalis.backends._kit._clock.run_clock`
(which follows trio's virtual clock in tests); the session passes ``now`` to
every store call, so a store never reads a clock of its own for leases.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections import deque
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar, NamedTuple, Protocol, runtime_checkable

import trio

from ..._errors import StorageError
from ..._implementation import Task
from ..._status import Status
from .._worker_protocols import WorkerIdentity
from ._clock import run_clock
from ._results import describe

__all__ = [
    "Claim",
    "Claimed",
    "LeaseConfig",
    "LeaseSession",
    "LeaseStore",
    "LiveSession",
    "Settlement",
    "worker_alive",
]

logger = logging.getLogger("pyapalis.leases")


class Claimed(NamedTuple):
    """A task a claim handed to a worker, with the attempt the claim set (its fence).

    ``task.parts.attempt`` is ``attempt - 1``: the worker counts the execution
    when it starts it, as on every backend, so the handler sees ``attempt``.
    """

    task: Task
    attempt: int


@dataclass(frozen=True, slots=True)
class Claim:
    """What one :meth:`LeaseStore.exchange` returns.

    ``next_due``: when the earliest task of the queue that is not yet due comes
    due (wall seconds), or None if none is scheduled or the store cannot tell
    cheaply; an idle session wakes by then.
    """

    tasks: list[Claimed]
    next_due: float | None = None


class Settlement(NamedTuple):
    """One outcome of a claimed task, applied only if ``(task_id, owner, attempt)`` still match.

    * final: ``status`` is Done (with ``result``), Failed or Killed (with
      ``error``, a message); the task is finished.
    * retry: ``status`` Pending with ``run_at`` (wall seconds): queued again,
      its attempts kept; ``error`` is the failure's message.
    * hand-back: ``status`` Pending, ``release`` True: queued again at once,
      the execution not counted (attempt - 1), ``run_at`` unchanged.

    (A NamedTuple, as :class:`Claimed`: one is made per task, on the hot path.)
    """

    task_id: str
    attempt: int
    status: Status
    result: Any = None
    error: str | None = None
    run_at: float | None = None
    release: bool = False


@runtime_checkable
class LeaseStore(Protocol):
    """The store operations a shared backend provides, for one queue.

    Each call is one atomic round trip (a transaction, a Lua script) and
    raises :class:`~pyapalis.StorageError` when the store cannot be used;
    it must not half-apply. ``now`` is the caller's wall clock (seconds).
    """

    async def exchange(
        self,
        worker: WorkerIdentity,
        settle: Sequence[Settlement],
        limit: int,
        now: float,
        lease: float,
        *,
        names: frozenset[str] | None = None,
    ) -> Claim:
        """Apply ``settle`` (fenced), then claim up to ``limit`` due tasks for ``worker``.

        A claim takes Pending tasks whose ``run_at <= now``, priority first
        (higher first), then ``run_at``, then push order; each becomes Running,
        owned by ``worker.id``, attempt + 1, lease deadline ``now + lease``.
        ``limit`` 0 only settles. A task that cannot be decoded is failed by
        the store, not returned. With ``names``, only tasks whose stored name
        (:func:`~pyapalis.backends._kit._names.task_name_of` at push) is in
        the set are claimed, and ``next_due`` considers only them; the
        session passes ``names`` only when it was given some, so a store
        whose backend does not offer ``FiltersTaskNames`` may ignore it.
        """

    async def heartbeat(self, worker: WorkerIdentity, now: float, lease: float) -> int:
        """Record ``worker`` as seen at ``now``; extend every lease it holds to ``now + lease``.

        Returns how many leases were extended.
        """

    async def recover(self, now: float, limit: int) -> int:
        """Re-queue up to ``limit`` Running tasks whose lease expired before ``now``.

        Each counts the lost execution as an attempt: a task with attempts
        left becomes Pending (owner cleared), one without becomes Failed
        ("lease expired"). Returns how many were handled.
        """

    async def retire(self, worker: WorkerIdentity) -> None:
        """Forget ``worker`` (its run ended cleanly): ``list_workers`` stops showing it."""

    async def wait_wake(self, timeout: float) -> None:
        """Return when a task may have become due (a hint), or after ``timeout`` seconds.

        An in-process push must end the wait at once; another process's push
        within the backend's notification delay. Spurious returns are fine.
        """


@dataclass(frozen=True, slots=True)
class LeaseConfig:
    """How a :class:`LeaseSession` batches, beats and recovers.

    ``lease``: seconds a claim holds a task without a heartbeat (beats every
    lease/3, recovery every lease/2). ``prefetch``: tasks claimed beyond the
    free slots. ``batch``: most tasks per claim. ``flush_interval`` /
    ``flush_max``: settlements wait at most this long, or until this many
    are queued. ``poll``: the longest idle wait between claims (the backstop
    of the wake hint). ``recover_limit``: tasks per recovery round.
    ``backoff_first``/``backoff_max``: the wait after a :class:`StorageError`,
    doubling. ``exit_timeout``: how long the end of a run tries to flush and
    hand back before leaving it to lease expiry.
    """

    lease: float = 30.0
    prefetch: int = 8
    batch: int = 100
    flush_interval: float = 0.005
    flush_max: int = 100
    poll: float = 1.0
    recover_limit: int = 100
    backoff_first: float = 0.1
    backoff_max: float = 5.0
    exit_timeout: float = 5.0

    def __post_init__(self) -> None:
        for name in ("lease", "flush_interval", "poll", "backoff_first", "backoff_max"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        for name in ("batch", "flush_max", "recover_limit"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not (isinstance(self.prefetch, int) and self.prefetch >= 0):
            raise ValueError(f"prefetch must be an integer >= 0, got {self.prefetch!r}")
        if not (isinstance(self.exit_timeout, (int, float)) and self.exit_timeout >= 0):
            raise ValueError(f"exit_timeout must be >= 0 seconds, got {self.exit_timeout!r}")

    def claim_limit(self, concurrency: int, held: int) -> int:
        """How many tasks one claim asks for: the free slots plus the prefetch, at least one.

        ``held`` counts the tasks claimed and not settled; the caller is a
        consumer loop with nothing to run, so at least one slot is free.
        """
        return max(1, min(self.batch, concurrency + self.prefetch - held))


@dataclass(slots=True)
class _Backoff:
    """The wait before trying the store again after a StorageError, doubling."""

    first: float
    most: float
    current: float = field(default=0.0)

    def next(self) -> float:
        self.current = self.first if self.current == 0.0 else min(self.current * 2, self.most)
        return self.current

    def reset(self) -> None:
        self.current = 0.0


class LeaseSession:
    """One worker run on a shared backend: a :class:`~pyapalis.backends.WorkerSession`.

    Implements ``Backend``, ``SyncAck``, ``RegisterWorker`` (the heartbeat) and
    ``RunsAlongside`` (the flusher, heartbeat and recovery loops) over a
    :class:`LeaseStore`; see the module docstring for the model.
    """

    def __init__(
        self,
        store: LeaseStore,
        worker: WorkerIdentity,
        config: LeaseConfig,
        names: frozenset[str] | None = None,
    ) -> None:
        self._store = store
        self._worker = worker
        self._config = config
        self._names = names  # claim only these task names (None: every task)
        self._held: dict[str, int] = {}  # claimed and not settled: id -> attempt (the fence)
        self._ready: deque[Task] = deque()  # claimed, not yet handed to a consumer loop
        self._pending: list[Settlement] = []  # settled, not yet written to the store
        self._arrived = trio.Event()  # a settlement was queued (for the flusher)
        self._full = trio.Event()  # flush_max settlements are waiting
        self._claiming = trio.Lock()  # one claim at a time; the others take from _ready
        self._next_due: float | None = None
        self._last_beat = -math.inf  # trio time of the last successful heartbeat
        self._closed = False
        # Refill ahead: once a claim came back full (more may be due) and the
        # prefetched tasks run low, the refiller claims the next batch while
        # the consumer loops still have work, so they never wait on a claim.
        self._more = False
        self._low_water = max(1, worker.concurrency // 2)
        self._low = trio.Event()
        # Idle waits: one loop waits on the store (``_idling`` meanwhile), the
        # others park in ``_followers`` and are woken one at a time (each takes
        # a task and wakes the next, or becomes the one waiting on the store).
        # Each wait's end counts in ``_wakes``; a claim records the count it saw.
        self._idling = False
        self._followers = trio.lowlevel.ParkingLot()
        self._wakes = 1
        self._claimed_wakes = 0

    @property
    def worker(self) -> WorkerIdentity:
        """The run this session serves."""
        return self._worker

    @property
    def held(self) -> int:
        """Tasks claimed by this session and not yet settled (prefetched ones included)."""
        return len(self._held)

    @property
    def pending(self) -> int:
        """Settlements queued and not yet written to the store."""
        return len(self._pending)

    # -- WorkerSession -----------------------------------------------------------

    async def __aenter__(self) -> LeaseSession:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Hand back prefetched tasks, flush every settlement, retire the worker.

        Runs shielded for at most ``exit_timeout`` seconds (also when the run
        was cancelled); what the store refuses meanwhile is left to lease
        expiry (the tasks come back, their execution counted), and logged.
        """
        self._closed = True
        while self._ready:
            self._settle(self._ready.popleft(), Status.Pending, release=True)
        with trio.move_on_after(self._config.exit_timeout, shield=True) as scope:
            try:
                await self._flush()
                await self._store.retire(self._worker)
            except StorageError as error:
                logger.warning(
                    "worker %s (%s): could not write %d outcome(s) at exit (%s); "
                    "their tasks come back when their leases expire",
                    self._worker.name,
                    self._worker.id,
                    len(self._pending),
                    error,
                )
        if scope.cancelled_caught:
            logger.warning(
                "worker %s (%s): the store did not answer within %s s at exit; "
                "%d task(s) come back when their leases expire",
                self._worker.name,
                self._worker.id,
                self._config.exit_timeout,
                len(self._pending),
            )

    # -- Backend ---------------------------------------------------------------

    def bind(self) -> None:
        """Nothing to learn: the session lives inside the run it serves."""

    def take_nowait(self) -> Task | None:
        """A claimed task waiting in the session, or None (never a round trip)."""
        ready = self._ready
        if not ready:
            return None
        task = ready.popleft()
        if self._more and len(ready) < self._low_water:
            self._more = False
            self._low.set()
        return task

    async def take(self) -> Task:
        """Claim (folding queued settlements in) and return the next due task.

        Waits on the store's wake hint while nothing is due. A StorageError
        is logged and the claim tried again after a backoff.
        """
        backoff = _Backoff(self._config.backoff_first, self._config.backoff_max)
        while True:
            task = self.take_nowait()
            if task is not None:
                if self._ready and self._followers:
                    self._followers.unpark()  # more to take: the next idle loop
                return task
            try:
                if self._claim_warranted():
                    async with self._claiming:
                        if self._ready or not self._claim_warranted():
                            continue
                        self._claimed_wakes = self._wakes
                        if await self._claim():
                            backoff.reset()
                            continue
                await self._idle()
            except StorageError as error:
                self._claimed_wakes = -1  # claim again after the pause
                delay = backoff.next()
                logger.warning(
                    "worker %s: claiming failed (%s); trying again in %s s",
                    self._worker.name,
                    error,
                    delay,
                )
                await trio.sleep(delay)
                continue
            backoff.reset()

    def _claim_warranted(self) -> bool:
        """Whether a claim may find something: the last came back full, or a wake came
        since; or it has outcomes to carry (a worker going idle writes them at once).

        So the consumer loops of an idle worker do not each run an empty claim
        whenever one task is pushed: one of them waits on the store, and after
        its wake one claim runs (for every free slot).
        """
        return self._more or self._wakes != self._claimed_wakes or bool(self._pending)

    async def ack(
        self, task: Task, status: Status, result: Any, error: BaseException | None
    ) -> None:
        """Queue a final outcome (see :meth:`ack_nowait`)."""
        self.ack_nowait(task, status, result, error)
        await trio.lowlevel.checkpoint()

    def ack_nowait(
        self, task: Task, status: Status, result: Any, error: BaseException | None
    ) -> None:
        """Queue a final outcome: Done with ``result``, Failed or Killed with ``error``."""
        if not isinstance(status, Status) or not status.is_final:
            raise ValueError(f"ack: status must be Done, Failed or Killed, got {status!r}")
        message = None if error is None else describe(error, status)
        self._settle(task, status, result=result if status is Status.Done else None, error=message)

    async def retry(self, task: Task, delay: float, error: BaseException) -> None:
        """Queue the task again ``delay`` seconds from now, its attempts kept."""
        run_at = run_clock().wall_now() + max(delay, 0.0)
        self._settle(task, Status.Pending, error=describe(error, Status.Pending), run_at=run_at)
        await trio.lowlevel.checkpoint()

    async def release(self, task: Task) -> None:
        """Hand back an interrupted task; that execution does not count."""
        self._settle(task, Status.Pending, release=True)
        await trio.lowlevel.checkpoint()

    async def flush(self) -> None:
        """Write every queued settlement now (raises StorageError; they stay queued)."""
        await self._flush()

    # -- settling at once (a storage used as a Backend by its own handle) -------

    async def ack_now(
        self, task: Task, status: Status, result: Any, error: BaseException | None
    ) -> None:
        """:meth:`ack`, then :meth:`flush`: the outcome is written when this returns."""
        await self.ack(task, status, result, error)
        await self.flush()

    async def retry_now(self, task: Task, delay: float, error: BaseException) -> None:
        """:meth:`retry`, then :meth:`flush`."""
        await self.retry(task, delay, error)
        await self.flush()

    async def release_now(self, task: Task) -> None:
        """:meth:`release`, then :meth:`flush`."""
        await self.release(task)
        await self.flush()

    # -- RegisterWorker --------------------------------------------------------

    async def register_worker(self, name: str) -> None:
        """The worker's heartbeat: record it and extend every lease it holds.

        ``name`` is the worker's label; the session's identity is what counts.
        """
        await self._beat()

    # -- RunsAlongside ---------------------------------------------------------

    async def run_alongside(self) -> None:
        """The session's own loops: flushing settlements, heartbeats, recovery."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._flusher)
            nursery.start_soon(self._keeper)
            nursery.start_soon(self._recoverer)
            nursery.start_soon(self._refiller)

    # -- internals -------------------------------------------------------------

    def _settle(
        self,
        task: Task,
        status: Status,
        *,
        result: Any = None,
        error: str | None = None,
        run_at: float | None = None,
        release: bool = False,
    ) -> None:
        parts = task.parts
        task_id = str(parts.task_id)
        attempt = self._held.pop(task_id, None)
        if attempt is None:
            raise ValueError(f"task {task_id} is not held by worker {self._worker.id}")
        pending = self._pending
        pending.append(Settlement(task_id, attempt, status, result, error, run_at, release))
        parts.status = status
        self._arrived.set()
        if len(pending) >= self._config.flush_max:
            self._full.set()

    def _take_pending(self) -> list[Settlement]:
        pending = self._pending
        self._pending = []
        return pending

    def _restore_pending(self, settle: list[Settlement]) -> None:
        """Put settlements the store refused back in front (they are written later)."""
        if settle:
            self._pending[:0] = settle
            self._arrived.set()  # (the flusher tries again after its backoff)

    async def _claim(self) -> bool:
        """One exchange: queued settlements out, up to the free slots plus prefetch in."""
        config = self._config
        if self._last_beat == -math.inf:
            # Recorded before it owns anything, so no task ever has an unknown owner.
            await self._beat()
        limit = 0 if self._closed else config.claim_limit(self._worker.concurrency, len(self._held))
        settle = self._take_pending()
        now = run_clock().wall_now()
        with trio.CancelScope(shield=True):  # what the store claimed must reach _ready
            try:
                if self._names is None:
                    claim = await self._store.exchange(
                        self._worker, settle, limit, now, config.lease
                    )
                else:
                    claim = await self._store.exchange(
                        self._worker, settle, limit, now, config.lease, names=self._names
                    )
            except BaseException:
                self._restore_pending(settle)
                raise
        self._next_due = claim.next_due
        self._more = len(claim.tasks) >= limit > 0
        for claimed in claim.tasks:
            task = claimed.task
            self._held[str(task.parts.task_id)] = claimed.attempt
            self._ready.append(task)
        if claim.tasks and self._followers:
            self._followers.unpark()  # a refill or a flush claimed: wake an idle loop
        return bool(claim.tasks)

    async def _idle(self) -> None:
        """Wait for the wake hint, at most ``poll`` or until the next scheduled task.

        One consumer loop waits on the store; the others wait for it. The
        wait does not hold the claim lock, so the flusher writes meanwhile.
        """
        if self._idling:
            await self._followers.park()
            return
        self._idling = True
        try:
            timeout = self._config.poll
            if self._next_due is not None:
                timeout = max(0.0, min(timeout, self._next_due - run_clock().wall_now()))
            await self._store.wait_wake(timeout)
        finally:
            self._wakes += 1
            self._idling = False
            self._followers.unpark()  # one: it takes a task, or waits on the store next

    async def _flush(self) -> None:
        """Write every queued settlement now (StorageError: they stay queued)."""
        settle = self._take_pending()
        if not settle:
            return
        with trio.CancelScope(shield=True):
            try:
                await self._store.exchange(
                    self._worker, settle, 0, run_clock().wall_now(), self._config.lease
                )
            except BaseException:
                self._restore_pending(settle)
                raise

    async def _flusher(self) -> None:
        config = self._config
        backoff = _Backoff(config.backoff_first, config.backoff_max)
        while True:
            if not self._pending:
                self._arrived = trio.Event()
                await self._arrived.wait()
            if len(self._pending) < config.flush_max:
                self._full = trio.Event()
                with trio.move_on_after(config.flush_interval):
                    await self._full.wait()
            try:
                async with self._claiming:  # a claim meanwhile may have carried them
                    if not self._pending:
                        continue
                    if self._more and not self._closed:
                        await self._claim()  # the acks, and the next tasks in one commit
                    else:
                        await self._flush()
            except StorageError as error:
                delay = backoff.next()
                logger.warning(
                    "worker %s: writing %d outcome(s) failed (%s); trying again in %s s",
                    self._worker.name,
                    len(self._pending),
                    error,
                    delay,
                )
                await trio.sleep(delay)
            else:
                backoff.reset()

    async def _beat(self) -> None:
        await self._store.heartbeat(self._worker, run_clock().wall_now(), self._config.lease)
        self._last_beat = trio.current_time()

    async def _keeper(self) -> None:
        """Beat whenever the last beat (the worker's or ours) is older than lease/3."""
        interval = self._config.lease / 3
        while True:
            due = self._last_beat + interval
            if trio.current_time() < due:
                await trio.sleep_until(due)
                continue
            try:
                await self._beat()
            except StorageError as error:
                logger.warning(
                    "worker %s: heartbeat failed (%s); trying again in %s s",
                    self._worker.name,
                    error,
                    interval,
                )
                await trio.sleep(interval)

    async def _refiller(self) -> None:
        """Claim the next batch when the prefetched tasks run low (see ``take_nowait``)."""
        while True:
            await self._low.wait()
            self._low = trio.Event()
            async with self._claiming:
                if self._closed or len(self._ready) >= self._low_water:
                    continue
                # On a StorageError, take() claims again (and logs) when it needs a task.
                with contextlib.suppress(StorageError):
                    await self._claim()

    async def _recoverer(self) -> None:
        """Every lease/2, re-queue expired leases in bounded batches (no leader)."""
        config = self._config
        interval = config.lease / 2
        while True:
            await trio.sleep(interval)
            try:
                while (
                    await self._store.recover(run_clock().wall_now(), config.recover_limit)
                    >= config.recover_limit
                ):
                    await trio.lowlevel.checkpoint()
            except StorageError as error:
                logger.warning(
                    "worker %s: recovering expired leases failed (%s); trying again in %s s",
                    self._worker.name,
                    error,
                    interval,
                )


class LiveSession(LeaseSession):
    """A :class:`LeaseSession` whose worker id is in :attr:`live` while it is open.

    A backend that recovers the leases of workers of this process that are
    gone reads its set of live worker ids (SQLite's and Redis's
    ``LIVE_WORKERS``); a subclass names that set and opens its storage in
    ``__aenter__`` before calling this one.
    """

    live: ClassVar[set[str]]

    async def __aenter__(self) -> LeaseSession:
        self.live.add(self.worker.id)
        return await super().__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await super().__aexit__(exc_type, exc, tb)
        finally:
            self.live.discard(self.worker.id)


def worker_alive(pid: int, worker_id: str, live: Collection[str]) -> bool:
    """Whether the worker ``worker_id`` of process ``pid`` on this host may still run.

    In this process: whether its session is open (its id is in ``live``, a
    :class:`LiveSession`'s set); in another: whether that process exists (one
    of another user counts as alive).
    """
    if pid == os.getpid():
        return worker_id in live
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
