"""Workers and their builder: a run's life, from ``Start`` to ``Stop``.

:class:`WorkerBuilder` resolves everything once, at :meth:`~WorkerBuilder.build`:
the handler's arguments (a compiled ``Invoker``), the rule for outcomes (a
compiled ``Judge``), the stack of layers, and what the worker uses of its
backend (a :class:`~pyapalis._worker._source.TaskSource`). :class:`Worker`
runs: its consumer loops (:mod:`pyapalis._worker._loop`) and, beside them, up
to two companion tasks, each only when its backend asks for it: a
**heartbeat** for a backend that can hold workers
(:class:`~pyapalis.RegisterWorker`), which registers the worker when it
starts and again every ``WorkerBuilder.heartbeat()`` seconds, emitting
``HeartBeat`` each time; and the backend's own task for a backend that needs
one (:class:`~pyapalis.backends.RunsAlongside`, as a ``Pipe`` does). Both end
when the last consumer loop ends.

Each run has a fresh worker id (a ULID, ``WorkerContext.worker_id``). A
backend consumed through a session per run
(:class:`~pyapalis.backends._worker_protocols.WorkerSessions`) is given the
run's :class:`~pyapalis.backends._worker_protocols.WorkerIdentity`, and the run
consumes the session it opens.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from .._errors import BuildError
from .._groups import single_exception
from .._implementation import Extensions, Judge
from ..backends._pipe import Pipe
from ..backends._protocols import Backend
from ..backends._worker_protocols import WorkerIdentity, WorkerSessions
from ..layers._shortcuts import LayerShortcuts
from ._context import EventCallback, WorkerContext
from ._events import HEARTBEAT, START, STOP
from ._handler import handler_name, resolve_handler
from ._loop import CHECKPOINT_EVERY, Consumers
from ._pipeline import Dispatch, FailureStops, assemble
from ._retry import RetryPolicy
from ._service import WORKER_NURSERY, Layer, LayerLike
from ._source import TaskSource, check_backend
from ._stream import EventStream

__all__ = ["CHECKPOINT_EVERY", "DEFAULT_HEARTBEAT", "Worker", "WorkerBuilder"]

DEFAULT_HEARTBEAT = 10.0
"""Seconds between a worker's registrations with a backend that can hold workers.

Three beats fit in ``JsonStorage``'s default 30-second task lease, so one late
beat (a slow disk) never makes a live worker look gone, while a dead one shows
a stale ``last_seen`` within seconds; a beat costs one durable line per worker
every 10 seconds.
"""

logger = logging.getLogger("pyapalis.worker")


class WorkerBuilder(LayerShortcuts):
    """Configures and builds a :class:`Worker`.

    ``WorkerBuilder("rango-tango").backend(storage).build(handler)``.
    Misconfiguration (no backend, a handler parameter nothing can supply)
    raises :class:`BuildError` at :meth:`build`. The shortcuts of the
    built-in layers (``.rate_limit()``, ``.break_circuit()`` ...) come from
    :class:`~pyapalis.layers._shortcuts.LayerShortcuts`.
    """

    __slots__ = (
        "_backend",
        "_concurrency",
        "_data",
        "_heartbeat",
        "_layers",
        "_listeners",
        "_name",
        "_retry",
        "_timeout",
    )

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"WorkerBuilder: name must be a non-empty string, got {name!r}")
        self._name = name
        self._backend: Backend | None = None
        self._layers: list[LayerLike] = []
        self._data = Extensions()
        self._concurrency = 1
        self._listeners: list[EventCallback] = []
        self._retry: RetryPolicy | None = None
        self._timeout: float | None = None
        self._heartbeat = DEFAULT_HEARTBEAT

    def backend(self, backend: Backend) -> WorkerBuilder:
        """The source of tasks.

        A :class:`Pipe` is a backend too: the worker consumes the backend it
        feeds and runs the pipe beside its consumer loops.
        """
        missing = check_backend(backend) if not isinstance(backend, WorkerSessions) else None
        if missing is not None:
            if isinstance(backend, Pipe):
                raise TypeError(
                    f"backend: this Pipe feeds a {type(backend.backend).__name__}, which "
                    f"a worker cannot consume (no {missing}() method); run it with "
                    f"pipe_to() beside a worker of a backend instead"
                )
            raise TypeError(
                f"backend: {type(backend).__name__} is not a backend (no {missing}() method)"
            )
        self._backend = backend
        return self

    def layer(self, layer: LayerLike) -> WorkerBuilder:
        """Wrap the handler in ``layer``; the first layer added is the outermost.

        Task layers wrap the whole trip of a task and see it settled;
        execution layers (``wraps_execution = True``) sit inside the backend
        acknowledgement. See :mod:`pyapalis._worker._service`.
        """
        if not isinstance(layer, Layer) and not callable(layer):
            raise TypeError(
                f"layer: expected an object with .layer(inner) or a function, got {layer!r}"
            )
        self._layers.append(layer)
        return self

    def data(self, value: object) -> WorkerBuilder:
        """Make ``value`` available to handlers as a ``Data[type(value)]`` parameter."""
        self._data.insert(value)
        return self

    def concurrency(self, n: int) -> WorkerBuilder:
        """Run ``n`` consumer loops: at most ``n`` tasks execute at once."""
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"concurrency: expected int, got {type(n).__name__} {n!r}")
        if n < 1:
            raise ValueError(f"concurrency: must be >= 1, got {n!r}")
        self._concurrency = n
        return self

    def on_event(self, callback: EventCallback) -> WorkerBuilder:
        """Call ``callback(ctx, event)`` for every event (callbacks chain)."""
        if not callable(callback):
            raise TypeError(f"on_event: expected a callable, got {callback!r}")
        self._listeners.append(callback)
        return self

    def retry(self, policy: RetryPolicy) -> WorkerBuilder:
        """Retry failing tasks that set no ``max_attempts`` of their own."""
        if not isinstance(policy, RetryPolicy):
            raise TypeError(f"retry: expected RetryPolicy, got {type(policy).__name__}")
        self._retry = policy
        return self

    def heartbeat(self, seconds: float) -> WorkerBuilder:
        """Re-register with the backend every ``seconds`` while running (default 10).

        Only a backend that can hold workers (:class:`~pyapalis.RegisterWorker`,
        such as ``JsonStorage``) is told: the worker registers when it starts,
        then once per interval, emitting ``HeartBeat`` after each registration,
        and ``list_workers()`` shows its last one. A failed registration is
        logged and tried again at the next interval; it never touches the
        worker's tasks. ``math.inf`` registers once, at start. Other backends
        (``MemoryStorage``) run no heartbeat at all.
        """
        self._heartbeat = _positive_seconds("heartbeat", seconds)
        return self

    def timeout(self, seconds: float) -> WorkerBuilder:
        """Limit each execution of a task that sets no ``timeout`` of its own."""
        self._timeout = _positive_seconds("timeout", seconds)
        return self

    # -- building ------------------------------------------------------------------------

    def build(self, handler: Callable[..., Any]) -> Worker:
        """The worker; raises :class:`BuildError` if something is missing."""
        backend = self._backend
        if backend is None:
            raise BuildError(
                "MissingBackend", f"worker {self._name!r} has no backend; call .backend(...)"
            )
        context = WorkerContext(self._name)
        for listener in self._listeners:
            context.add_listener(listener)
        policy = self._retry
        judge = Judge(policy.max_attempts, policy.backoff) if policy is not None else Judge()
        dispatch = assemble(
            resolve_handler(handler, context, self._data),
            f"handler {handler_name(handler)!r}",
            self._timeout,
            judge,
            self._layers,
            context,
        )
        return Worker(context, backend, self._concurrency, dispatch, self._heartbeat)


def _positive_seconds(name: str, seconds: float) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"{name}: expected seconds, got {type(seconds).__name__}")
    if math.isnan(seconds) or seconds <= 0:
        raise ValueError(f"{name}: must be > 0 seconds, got {seconds!r}")
    return float(seconds)


class Worker:
    """Pulls tasks from its backend and runs them; see :class:`WorkerBuilder`.

    A task failure never stops a worker; a backend failure does, and the error
    is raised from :meth:`run` once in-flight tasks have finished. If the run is
    cancelled from outside, or a handler raises ``KeyboardInterrupt``, every
    task in flight is handed back to the backend unfinished (its attempt is not
    counted) and the exception propagates. A ``trio.Cancelled`` that a handler
    raises while the worker is not being cancelled fails that task with
    :class:`~pyapalis.StrayCancelledError`; one that escapes a layer stops the
    worker with that error (the task is handed back).
    """

    def __init__(
        self,
        context: WorkerContext,
        backend: Backend,
        concurrency: int,
        dispatch: Dispatch,
        heartbeat: float = DEFAULT_HEARTBEAT,
    ) -> None:
        self._context = context
        self._concurrency = concurrency
        self._dispatch = dispatch
        self._heartbeat_interval = heartbeat
        # A backend with a session per run is checked when the run opens it.
        self._sessions = backend if isinstance(backend, WorkerSessions) else None
        self._source = TaskSource.of(backend) if self._sessions is None else None
        self._companion_scopes: list[trio.CancelScope] = []
        self._error: BaseException | None = None

    @property
    def name(self) -> str:
        """The worker's name."""
        return self._context.name

    @property
    def context(self) -> WorkerContext:
        """The worker's :class:`WorkerContext` (usable before and during the run)."""
        return self._context

    @property
    def concurrency(self) -> int:
        """How many consumer loops run."""
        return self._concurrency

    @property
    def source(self) -> TaskSource | None:
        """What the worker uses of its backend, found at build (test-facing).

        None for a backend consumed through a session per run: the session is
        checked when the run opens it.
        """
        return self._source

    @property
    def dispatch(self) -> Dispatch:
        """How this worker runs each task it pulls, decided at build (test-facing).

        ``dispatch.layered`` is None when the consumer loops run the handler
        themselves (no layer added a service); ``dispatch.readiness`` lists the
        ``ready()`` the loops await before a pull.
        """
        return self._dispatch

    async def run(self) -> None:
        """Run until stopped; returns once in-flight work has drained."""
        context = self._context
        identity = WorkerIdentity.mint(self.name, self._concurrency)
        context.control.start(identity.id)
        try:
            if self._sessions is None:
                assert self._source is not None
                await self._run_on(self._source)
            else:
                async with self._sessions.session(identity) as session:
                    await self._run_on(TaskSource.of(session))
        finally:
            context.control.finish()
            context.emit(STOP)
        if self._error is not None:
            raise self._error

    async def _run_on(self, source: TaskSource) -> None:
        """The run proper, consuming ``source``."""
        context = self._context
        control = context.control
        if source.bind is not None:
            source.bind()
        self._dispatch.recorder.attach(source.backend, source.ack_nowait)
        if source.wake_takers is not None:
            control.idle_wakers.append(source.wake_takers)
        context.emit(START)
        consumers = Consumers(
            context,
            source,
            self._dispatch,
            self._backend_failed,
            self._end_companions,
            self._concurrency,
        )
        try:
            async with trio.open_nursery() as nursery:
                # The loops inherit the variable (set once per run, read by layers).
                token = WORKER_NURSERY.set(nursery)
                try:
                    for _ in range(self._concurrency):
                        nursery.start_soon(consumers.consume)
                finally:
                    WORKER_NURSERY.reset(token)
                # Created before any loop runs, so the last loop to end can cancel them.
                if source.register is not None:
                    nursery.start_soon(self._beat, source.register, self._companion())
                if source.alongside is not None:
                    nursery.start_soon(self._run_alongside, source.alongside, self._companion())
        except BaseExceptionGroup as group:
            raise single_exception(group) from None  # (a session sees the same)
        finally:
            self._companion_scopes.clear()
            if source.wake_takers is not None:
                control.idle_wakers.remove(source.wake_takers)

    async def run_until(self, signal: Callable[[], Awaitable[Any]]) -> None:
        """Run until ``await signal()`` returns, then stop gracefully."""

        async def watch() -> None:
            await signal()
            if not self._context.is_shutting_down:
                self._context.stop()

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                await self.run()
                nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise single_exception(group) from None

    def stream(self) -> EventStream:
        """Run the worker and iterate over its events (``Start`` first, ``Stop`` last).

        ``async with worker.stream() as events: async for ev in events: ...`` is the
        structured form; ``async for ev in worker.stream()`` also works when the
        loop runs to the ``Stop`` event.
        """
        return EventStream(self.run, self._context)

    def _backend_failed(self, exc: Exception) -> None:
        if self._error is None:
            self._error = exc
        if not self._context.is_shutting_down:
            self._context.stop()

    # -- companion tasks -------------------------------------------------------

    def _companion(self) -> trio.CancelScope:
        scope = trio.CancelScope()
        self._companion_scopes.append(scope)
        return scope

    def _end_companions(self) -> None:
        for scope in self._companion_scopes:
            scope.cancel()  # the run is draining: its companions end with it

    async def _beat(
        self, register: Callable[[str], Awaitable[None]], scope: trio.CancelScope
    ) -> None:
        """Register the worker now and every heartbeat interval, emitting ``HeartBeat``.

        A failed registration is logged and tried again at the next interval.
        """
        context = self._context
        name = context.name
        interval = self._heartbeat_interval
        with scope:
            while True:
                started = trio.current_time()
                try:
                    await register(name)
                except Exception:
                    logger.warning(
                        "worker %r: heartbeat failed; trying again in %s s",
                        name,
                        interval,
                        exc_info=True,
                    )
                else:
                    context.emit(HEARTBEAT)
                await trio.sleep_until(started + interval)

    async def _run_alongside(
        self, alongside: Callable[[], Awaitable[None]], scope: trio.CancelScope
    ) -> None:
        """The backend's own task: returning is fine, an error stops the worker."""
        with scope, FailureStops(f"the backend of worker {self.name!r}", self._backend_failed):
            await alongside()
