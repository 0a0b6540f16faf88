"""The Monitor: runs several workers, restarts failed ones, shuts them all down gracefully.

One trio nursery owns a supervisor task per registered worker; a supervisor
runs its worker, and when the worker fails (a backend error raised from
:meth:`Worker.run`) either restarts it after a backoff on trio's clock, if the
restart policy says so, or records the error. Every worker run sits inside one
cancel scope: a graceful shutdown stops each worker from pulling and lets its
in-flight tasks finish; when the shutdown timeout passes, the terminator
returns (both are limits on the shutdown, started when it begins) or a second
signal arrives, that scope is cancelled, and each worker hands its in-flight
tasks back to its backend unfinished (their attempts are not counted).
"""

from __future__ import annotations

import contextlib
import enum
import inspect
import logging
import math
import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass

import trio

from ._errors import MonitorError, WorkerStateError
from ._groups import single_exception
from ._worker._context import EventCallback, WorkerContext, WorkerState
from ._worker._events import Event
from ._worker._retry import BackoffMode
from ._worker._worker import Worker

__all__ = [
    "DEFAULT_RESTART_BACKOFF",
    "Monitor",
    "MonitorError",
    "MonitorStatistics",
    "RestartPredicate",
    "WorkerFactory",
]

logger = logging.getLogger("pyapalis.monitor")

WorkerFactory = Callable[[int], Worker]
"""``factory(restart_count) -> Worker``: 0 for the first run, k for the k-th restart."""

RestartPredicate = Callable[[WorkerContext, Exception, int], object]
"""``pred(ctx, error, attempt) -> bool``: restart the failed worker of ``ctx``?"""

DEFAULT_RESTART_BACKOFF = BackoffMode.exponential(1.0, factor=2.0, max_delay=60.0)
"""Before restart *k*: ``2^(k-1)`` seconds (1 s, 2 s, 4 s ...), at most 60 s."""


@dataclass(frozen=True, slots=True)
class MonitorStatistics:
    """A snapshot of a :class:`Monitor` (see :meth:`Monitor.statistics`)."""

    workers_registered: int
    """Registrations (a restarted worker still counts once)."""
    workers_running: int
    """Workers in a run right now, including those draining in-flight tasks."""
    workers_restarting: int
    """Failed workers waiting out their restart backoff."""
    workers_stopped: int
    """Workers done for good: stopped, or failed and not restarted."""
    workers_failed: int
    """Of the stopped workers, those that failed (their errors make the MonitorError)."""
    restarts: int
    """Restarts so far, all workers together."""
    tasks_in_flight: int
    """Tasks executing right now, all workers together."""
    running: bool
    """``run()`` has started and not yet returned."""
    shutting_down: bool
    """Shutdown has started (it stays true once the run is over)."""
    shutdown_forced: bool
    """In-flight tasks were cancelled: the shutdown timeout passed, the terminator
    returned (or raised), or a second signal came."""


class _Phase(enum.Enum):
    """Where one registration is in its life."""

    Waiting = "Waiting"
    Running = "Running"
    Restarting = "Restarting"
    Stopped = "Stopped"
    Failed = "Failed"


class _Registration:
    """One registered worker: the current Worker, and how to build the next one."""

    __slots__ = ("backoff_scope", "factory", "phase", "restarts", "worker")

    def __init__(self, worker: Worker, factory: WorkerFactory | None) -> None:
        self.worker = worker
        self.factory = factory
        self.phase = _Phase.Waiting
        self.restarts = 0
        self.backoff_scope: trio.CancelScope | None = None


class _RunPhase(enum.Enum):
    New = "New"
    Running = "Running"
    Finished = "Finished"


class Monitor:
    """Runs several workers together, restarts failed ones, and shuts them down.

    ``Monitor().register(factory).on_event(callback).shutdown_timeout(30)``
    then ``await monitor.run()`` (or :meth:`run_with_signal` in a program
    stopped by SIGINT/SIGTERM, or :meth:`run_until` an async function
    returns). :meth:`run` returns once every worker has stopped: they stopped
    themselves, :meth:`shutdown` was called, or a worker failed without being
    restarted.

    * **Registering**: ``register(factory)`` with ``factory(restart_count) ->
      Worker`` (called with 0 at once, and with *k* for the *k*-th restart), or
      ``register(worker)``. A :class:`Worker` runs only once, so a worker
      registered as an instance is never restarted. Each worker needs its own
      name.
    * **Restarting**: a worker that fails (its backend raised) is restarted only
      if ``should_restart(pred)`` was given and ``pred(ctx, error, attempt)`` is
      true, where ``attempt`` is 1 for the first restart of that worker. The
      restart waits ``restart_backoff(...).delay(attempt)`` seconds on trio's
      clock first (:data:`DEFAULT_RESTART_BACKOFF`: 1 s, 2 s, 4 s ... 60 s).
      An error the policy accepted is not raised, even if a shutdown then
      cancels the restart.
    * **Failing**: a worker error that is not restarted starts a graceful
      shutdown of the other workers (an error is never left unseen while the
      program goes on); once all have stopped, :meth:`run` raises one
      :class:`MonitorError` listing each failed worker's error.
    * **Shutting down**: :meth:`shutdown` stops every worker from pulling; their
      in-flight tasks finish. The shutdown has two optional limits, both
      started when it begins: ``shutdown_timeout(seconds)`` and
      ``with_terminator(async_fn)`` (apalis's terminator: the limit is reached
      when ``async_fn`` returns). At the first limit reached the tasks still in
      flight are cancelled and handed back to their backend, which queues them
      again without counting the attempt. Without either, shutdown waits for
      the tasks however long they take.

    A Monitor runs once. Configure it before :meth:`run`; :meth:`register` and
    :meth:`on_event` also work while it runs.
    """

    def __init__(self) -> None:
        self._registrations: list[_Registration] = []
        self._listeners: list[EventCallback] = []
        self._restart_predicate: RestartPredicate | None = None
        self._restart_backoff = DEFAULT_RESTART_BACKOFF
        self._shutdown_timeout: float | None = None
        self._terminator: Callable[[], Awaitable[object]] | None = None
        self._run_phase = _RunPhase.New
        self._shutting_down = False
        self._forced = False
        self._shutdown_deadline: float | None = None
        self._shutdown_started = trio.Event()
        # Every worker run happens inside this scope: cancelling it is "stop now".
        self._force_scope = trio.CancelScope()
        self._nursery: trio.Nursery | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._thread: int | None = None
        self._errors: list[tuple[str, Exception]] = []
        self._restarts = 0
        self._terminator_error: Exception | None = None
        self._until_error: Exception | None = None

    # -- configuration -----------------------------------------------------

    def register(self, worker: Worker | WorkerFactory) -> Monitor:
        """Add a worker: a ``factory(restart_count) -> Worker``, or a :class:`Worker`.

        The factory is called with 0 right away (its errors surface here), and
        again with *k* for the *k*-th restart. A Worker instance cannot be
        restarted (a Worker runs once). Registering while the monitor runs
        starts the worker at once; after shutdown has started it raises
        :class:`WorkerStateError`.
        """
        if self._shutting_down or self._run_phase is _RunPhase.Finished:
            raise WorkerStateError("register: the monitor is shutting down or has stopped")
        if isinstance(worker, Worker):
            factory: WorkerFactory | None = None
            first = worker
        elif callable(worker):
            factory = worker
            first = _check_built(factory(0), "register: factory(0)")
        else:
            raise TypeError(
                "register: expected a Worker or a factory(restart_count) -> Worker, "
                f"got {type(worker).__name__} {worker!r}"
            )
        _check_fresh(first, "register")
        for registration in self._registrations:
            if registration.worker is first:
                raise ValueError(f"register: worker {first.name!r} is already registered")
            if registration.worker.name == first.name:
                raise ValueError(
                    f"register: a worker named {first.name!r} is already registered; "
                    "give each worker its own name"
                )
        if self._run_phase is _RunPhase.Running and self._nursery is None:
            raise WorkerStateError("register: the monitor's workers have all stopped")
        registration = _Registration(first, factory)
        self._registrations.append(registration)
        if self._nursery is not None:
            self._nursery.start_soon(self._supervise, registration)
        return self

    def on_event(self, callback: EventCallback) -> Monitor:
        """Call ``callback(ctx, event)`` for every event of every worker (callbacks chain).

        ``ctx`` is the emitting worker's :class:`WorkerContext`. A callback that
        raises is logged and does not stop the others. Without callbacks the
        workers' event machinery stays switched off.
        """
        if not callable(callback):
            raise TypeError(f"on_event: expected a callable, got {callback!r}")
        self._listeners.append(callback)
        if self._run_phase is _RunPhase.Running:
            for registration in self._registrations:
                if registration.phase is _Phase.Running:
                    self._attach(registration.worker)
        return self

    def should_restart(self, predicate: RestartPredicate) -> Monitor:
        """Restart a failed worker when ``predicate(ctx, error, attempt)`` is true.

        ``ctx`` is the failed worker's context, ``error`` what its run raised,
        ``attempt`` the number this restart would have for that worker (1 for
        the first). A predicate that raises is logged and counts as false.
        Without a predicate no worker is ever restarted.
        """
        if not callable(predicate):
            raise TypeError(f"should_restart: expected a callable, got {predicate!r}")
        self._restart_predicate = predicate
        return self

    def restart_backoff(self, backoff: BackoffMode) -> Monitor:
        """How long to wait before a restart: ``backoff.delay(attempt)`` seconds.

        Default :data:`DEFAULT_RESTART_BACKOFF`. ``BackoffMode.NoBackoff``
        restarts at once; ``BackoffMode.constant(5)`` waits 5 s each time.
        """
        if not isinstance(backoff, BackoffMode):
            raise TypeError(
                f"restart_backoff: expected a BackoffMode, got {type(backoff).__name__}"
            )
        self._restart_backoff = backoff
        return self

    def shutdown_timeout(self, seconds: float | None) -> Monitor:
        """Let in-flight tasks finish for at most ``seconds`` once shutdown starts.

        Then they are cancelled and handed back to their backend. ``None`` or
        ``math.inf`` (the default) waits for them however long they take; 0
        cancels them at once. Read when the shutdown starts.
        """
        if seconds is None:
            self._shutdown_timeout = None
            return self
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise TypeError(
                f"shutdown_timeout: expected seconds as int or float (or None), "
                f"got {type(seconds).__name__} {seconds!r}"
            )
        if math.isnan(seconds) or seconds < 0:
            raise ValueError(f"shutdown_timeout: must be >= 0 seconds, got {seconds!r}")
        self._shutdown_timeout = None if math.isinf(seconds) else float(seconds)
        return self

    def with_terminator(self, terminator: Callable[[], Awaitable[object]]) -> Monitor:
        """A time limit on shutdown: when ``await terminator()`` returns, stop now.

        As in apalis, the terminator is started when the shutdown begins
        (:meth:`shutdown`, a signal, a worker failure, :meth:`run_until`'s
        function returning; at once if the shutdown began before :meth:`run`),
        never before. When it returns, the tasks still in flight are cancelled
        and handed back to their backend, exactly as when ``shutdown_timeout``
        passes; with both, the first limit reached stops the run. If the
        workers have all stopped first, it is cancelled.

        If it raises, the error is logged, the in-flight tasks are cancelled
        and handed back all the same (the limit is broken, so the run does not
        wait), and :meth:`run` raises that exception once the workers have
        stopped (as the ``__cause__`` of the :class:`MonitorError` if workers
        failed too).

        Pass the async function itself (``with_terminator(deadline)``), not a
        coroutine. To start the shutdown when a function returns, use
        :meth:`run_until`.
        """
        self._terminator = _check_async_fn(terminator, "with_terminator")
        return self

    # -- running -------------------------------------------------------------

    async def run(self) -> None:
        """Run every registered worker; returns once all of them have stopped.

        Raises :class:`MonitorError` if workers failed without being restarted
        (after the others drained). If the run is cancelled from outside, the
        workers hand their in-flight tasks back to their backends and the
        cancellation propagates.
        """
        await self._run(None)

    async def run_until(self, signal: Callable[[], Awaitable[object]]) -> None:
        """:meth:`run`, and shut down gracefully when ``await signal()`` returns.

        ``signal`` runs alongside the workers and is cancelled if they all stop
        first. If it raises, the shutdown starts too (gracefully) and this
        method raises that exception once the workers have stopped (as the
        ``__cause__`` of the :class:`MonitorError` if workers failed too).
        Pass the async function itself, not a coroutine.
        """
        until = _check_async_fn(signal, "run_until")
        await self._run(None, until)

    async def run_with_signal(
        self, signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM)
    ) -> None:
        """:meth:`run`, stopped by signals: the first shuts down gracefully, a second
        one stops at once (in-flight tasks are cancelled and handed back).

        Returns normally after a signal, so a program ends with exit status 0.
        Signals arriving together count once (trio merges pending duplicates);
        a signal arriving after the run has finished goes to the previous
        handler. Must be called from the main thread (signal handlers live
        there).
        """
        chosen = _check_signals(signals)
        self._check_can_run()
        with trio.open_signal_receiver(*chosen) as receiver:
            await self._run(receiver)

    def shutdown(self) -> None:
        """Start a graceful shutdown: workers stop pulling, in-flight tasks finish.

        A plain method: call it from handlers, event callbacks or any sync code
        on the monitor's trio thread; from another thread it is forwarded to
        that thread. Calling it again does nothing. Before :meth:`run` it makes
        the run stop its workers as soon as they start.
        """
        if self._shutting_down:
            return
        token = self._token
        if (
            token is not None
            and self._run_phase is _RunPhase.Running
            and threading.get_ident() != self._thread
        ):
            # A run that has just finished has nothing left to stop.
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(self._begin_shutdown)
            return
        self._begin_shutdown()

    # -- observing -----------------------------------------------------------

    @property
    def workers(self) -> tuple[Worker, ...]:
        """The current worker of each registration (the newest after restarts)."""
        return tuple(registration.worker for registration in self._registrations)

    @property
    def is_shutting_down(self) -> bool:
        """Shutdown has started."""
        return self._shutting_down

    def statistics(self) -> MonitorStatistics:
        """Counts of workers by state, restarts, tasks in flight, shutdown state."""
        phases = [registration.phase for registration in self._registrations]
        failed = phases.count(_Phase.Failed)
        return MonitorStatistics(
            workers_registered=len(phases),
            workers_running=phases.count(_Phase.Running),
            workers_restarting=phases.count(_Phase.Restarting),
            workers_stopped=phases.count(_Phase.Stopped) + failed,
            workers_failed=failed,
            restarts=self._restarts,
            tasks_in_flight=sum(
                registration.worker.context.task_count for registration in self._registrations
            ),
            running=self._run_phase is _RunPhase.Running,
            shutting_down=self._shutting_down,
            shutdown_forced=self._forced,
        )

    def __repr__(self) -> str:
        state = "shutting down" if self._shutting_down else self._run_phase.value
        return f"<Monitor workers={len(self._registrations)} {state}>"

    # -- internals: the run ----------------------------------------------------

    def _check_can_run(self) -> None:
        if self._run_phase is not _RunPhase.New:
            raise WorkerStateError(
                f"the monitor is {self._run_phase.value.lower()}: a Monitor runs once"
            )

    async def _run(
        self,
        signals: AsyncIterator[int] | None,
        until: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self._check_can_run()
        self._run_phase = _RunPhase.Running
        self._token = trio.lowlevel.current_trio_token()
        self._thread = threading.get_ident()
        if self._shutting_down:  # shutdown() came before run()
            self._arm_shutdown_timeout()
        try:
            async with trio.open_nursery() as helpers:
                helpers.start_soon(self._enforce_shutdown_timeout)
                if self._terminator is not None:
                    helpers.start_soon(self._run_terminator, self._terminator)
                if until is not None:
                    helpers.start_soon(self._run_until, until)
                if signals is not None:
                    helpers.start_soon(self._follow_signals, signals)
                with self._force_scope:
                    async with trio.open_nursery() as nursery:
                        self._nursery = nursery
                        for registration in self._registrations:
                            nursery.start_soon(self._supervise, registration)
                self._nursery = None
                helpers.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise single_exception(group) from None
        finally:
            self._nursery = None
            self._run_phase = _RunPhase.Finished
        self._raise_errors()

    def _raise_errors(self) -> None:
        # run_until's function fails first: it starts the shutdown the
        # terminator then limits. A second error has been logged.
        control_error = self._until_error
        if control_error is None:
            control_error = self._terminator_error
        if self._errors:
            raise MonitorError(self._errors) from control_error
        if control_error is not None:
            raise control_error

    async def _supervise(self, registration: _Registration) -> None:
        """Run one registration's worker, restarting it while the policy allows."""
        try:
            while True:
                worker = registration.worker
                registration.phase = _Phase.Running
                if self._listeners:
                    self._attach(worker)
                try:
                    await worker.run()
                except Exception as error:
                    failure = error
                else:
                    return
                finally:
                    worker.context.remove_listener(self._dispatch)
                if not await self._restart(registration, worker, failure):
                    return
        finally:
            # Stopped by itself, by shutdown, or cancelled (also during a backoff).
            if registration.phase is not _Phase.Failed:
                registration.phase = _Phase.Stopped

    async def _restart(self, registration: _Registration, worker: Worker, error: Exception) -> bool:
        """Wait out the backoff and build the next worker; False if there is none."""
        attempt = registration.restarts + 1
        if not self._wants_restart(registration, worker, error, attempt):
            self._fail(registration, worker.name, error)
            return False
        factory = registration.factory
        assert factory is not None
        delay = self._restart_backoff.delay(attempt)
        logger.warning(
            "worker %r failed (%r); restart %d in %gs", worker.name, error, attempt, delay
        )
        registration.phase = _Phase.Restarting
        with trio.CancelScope() as scope:
            registration.backoff_scope = scope
            await trio.sleep(delay)
        registration.backoff_scope = None
        if scope.cancelled_caught or self._shutting_down:
            return False  # shutdown came during the backoff: the error was accepted
        registration.restarts = attempt
        self._restarts += 1
        try:
            successor = _check_built(factory(attempt), f"factory({attempt})")
            _check_fresh(successor, f"factory({attempt})")
        except Exception as factory_error:
            self._fail(registration, worker.name, factory_error)
            return False
        registration.worker = successor
        return True

    def _wants_restart(
        self, registration: _Registration, worker: Worker, error: Exception, attempt: int
    ) -> bool:
        predicate = self._restart_predicate
        if predicate is None or self._shutting_down:
            return False
        if registration.factory is None:
            logger.warning(
                "worker %r cannot be restarted: it was registered as a Worker instance "
                "(register a factory to allow restarts)",
                worker.name,
            )
            return False
        try:
            return bool(predicate(worker.context, error, attempt))
        except Exception:
            logger.exception("should_restart predicate failed for worker %r", worker.name)
            return False

    def _fail(self, registration: _Registration, name: str, error: Exception) -> None:
        registration.phase = _Phase.Failed
        self._errors.append((name, error))
        logger.error("worker %r failed: %r", name, error)
        self.shutdown()

    async def _run_until(self, signal: Callable[[], Awaitable[object]]) -> None:
        try:
            await signal()
        except Exception as error:
            self._until_error = error
            logger.error("the monitor's run_until function raised %r; shutting down", error)
        self.shutdown()

    async def _run_terminator(self, terminator: Callable[[], Awaitable[object]]) -> None:
        """The terminator: a limit on the shutdown, started when it begins."""
        await self._shutdown_started.wait()
        try:
            await terminator()
        except Exception as error:
            self._terminator_error = error
            logger.error(
                "the monitor's terminator raised %r; cancelling the tasks still in flight", error
            )
        else:
            logger.warning(
                "the monitor's terminator returned: cancelling the tasks still in flight"
            )
        if self._nursery is not None:  # workers still run (else nothing is left to stop)
            self._force_stop()

    async def _follow_signals(self, signals: AsyncIterator[int]) -> None:
        received = 0
        async for signum in signals:
            received += 1
            name = signal.Signals(signum).name
            if received == 1:
                logger.info("%s: shutting down gracefully (send it again to stop at once)", name)
                self.shutdown()
            else:
                logger.warning("%s again: stopping now", name)
                self._force_stop()

    # -- internals: shutting down ---------------------------------------------

    def _begin_shutdown(self) -> None:
        if self._shutting_down:
            return
        self._shutting_down = True
        if self._run_phase is _RunPhase.Running:
            self._arm_shutdown_timeout()
        for registration in self._registrations:
            context = registration.worker.context
            if not context.is_shutting_down:
                context.stop()
            if registration.backoff_scope is not None:
                registration.backoff_scope.cancel()

    def _arm_shutdown_timeout(self) -> None:
        timeout = self._shutdown_timeout
        if timeout is not None:
            self._shutdown_deadline = trio.current_time() + timeout
        self._shutdown_started.set()

    async def _enforce_shutdown_timeout(self) -> None:
        await self._shutdown_started.wait()
        if self._shutdown_deadline is None:
            return
        await trio.sleep_until(self._shutdown_deadline)
        logger.warning("shutdown timeout: cancelling the tasks still in flight")
        self._force_stop()

    def _force_stop(self) -> None:
        """Stop now: cancel in-flight tasks (their workers hand them back)."""
        self._begin_shutdown()
        self._forced = True
        self._force_scope.cancel()

    # -- internals: events -----------------------------------------------------

    def _attach(self, worker: Worker) -> None:
        if self._dispatch not in worker.context.listeners:
            worker.context.add_listener(self._dispatch)

    def _dispatch(self, context: WorkerContext, event: Event) -> None:
        for callback in self._listeners:
            try:
                callback(context, event)
            except Exception:
                logger.exception("monitor event callback %r failed", callback)


def _check_async_fn(
    function: Callable[[], Awaitable[object]], what: str
) -> Callable[[], Awaitable[object]]:
    if inspect.iscoroutine(function):
        function.close()  # never awaited: close it so Python does not warn
        raise TypeError(
            f"{what}: expected an async function, got a coroutine object; "
            f"pass the function ({what}(fn)), not its call (fn())"
        )
    if not callable(function):
        raise TypeError(f"{what}: expected an async function, got {function!r}")
    return function


def _check_built(worker: object, what: str) -> Worker:
    if not isinstance(worker, Worker):
        raise TypeError(f"{what} returned {type(worker).__name__} {worker!r}, expected a Worker")
    return worker


def _check_fresh(worker: Worker, what: str) -> None:
    state = worker.context.state
    if state is not WorkerState.Pending:
        raise ValueError(
            f"{what}: worker {worker.name!r} is {state.value}, not Pending; "
            "a Worker runs once, so register one that has not run"
        )


def _check_signals(signals: Iterable[int]) -> list[signal.Signals]:
    if isinstance(signals, (int, str, bytes)):
        raise TypeError(
            f"run_with_signal: signals must be an iterable of signal numbers, got {signals!r}"
        )
    try:
        items = list(signals)
    except TypeError:
        raise TypeError(
            f"run_with_signal: signals must be an iterable of signal numbers, got {signals!r}"
        ) from None
    if not items:
        raise ValueError("run_with_signal: signals must name at least one signal")
    chosen: list[signal.Signals] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int):
            raise TypeError(
                f"run_with_signal: expected signal numbers (signal.SIGTERM ...), "
                f"got {type(item).__name__} {item!r}"
            )
        try:
            chosen.append(signal.Signals(item))
        except ValueError:
            raise ValueError(f"run_with_signal: {item!r} is not a signal number") from None
    return chosen
