"""Workers: pull tasks from a backend and run them through the service stack.

``.concurrency(n)`` runs *n* consumer loops in one nursery; each loop pulls the
next task itself (no trio task is spawned per task), drains several tasks per
scheduler turn and checkpoints every ``CHECKPOINT_EVERY`` tasks so cancellation
and fairness stay intact. A loop stops pulling while the worker is paused or
shutting down, or while a layer is not ready.

The stack is ``task layers -> Acknowledge -> execution layers -> Execute``
(the two zones are described in :mod:`pyapalis._worker._service`). A worker whose
layers add no service (or that has none) runs ``Execute.settle_begun``
directly: the layer machinery costs it nothing. If, in addition, its handler is
an ``async def`` of the args alone, it sets no timeout and its backend has
``ack_nowait``, the loop runs the handler and acknowledges itself (one
coroutine frame less per task); a task with its own timeout still goes
through ``Execute.settle_begun``.

Beside the loops, a run may have two companion tasks, each only when its
backend asks for it (checked once, at build): a **heartbeat** for a backend
that can hold workers (:class:`~pyapalis.RegisterWorker`), which registers the
worker when it starts and again every ``WorkerBuilder.heartbeat()`` seconds,
emitting ``HeartBeat`` each time; and the backend's own task for a backend
that needs one (:class:`~pyapalis.backends._protocols.RunsAlongside`, as a ``Pipe``
does). Both end when the last consumer loop ends.
"""

from __future__ import annotations

import inspect
import logging
import math
import typing
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

import trio

from .._errors import BuildError, TaskFailedError
from .._implementation import Extensions, Task, begin_execution, execution_module, set_status
from .._status import Status
from ..backends._capabilities import RegisterWorker
from ..backends._pipe import Pipe
from ..backends._protocols import Backend, RunsAlongside
from ..layers._ack import AcknowledgeLayer, Acknowledger
from ..layers._circuit import CircuitBreakerConfig, CircuitBreakerLayer
from ..layers._execution import CatchPanicLayer, RetryLayer, TimeoutLayer
from ..layers._limits import ConcurrencyLimitLayer, LoadShedLayer, RateLimitLayer
from ..layers._long_running import LongRunningConfig, LongRunningLayer, wants_runner
from ..layers._otel import OpenTelemetryLayer
from ..layers._prometheus import PrometheusLayer
from ..layers._tracing import TracingLayer
from ._context import EventCallback, WorkerContext, WorkerState
from ._events import HEARTBEAT, IDLE, START, STOP, Event
from ._handler import resolve_handler
from ._pipeline import (
    Acknowledge,
    BackendFailure,
    Execute,
    Settler,
    SettlingExecute,
    stray_cancelled,
)
from ._retry import RetryPolicy
from ._service import (
    WORKER_NURSERY,
    LayerLike,
    NotReadyError,
    Service,
    compose,
    readiness_checks,
    readiness_nowait,
    wraps_execution,
)

if typing.TYPE_CHECKING:
    from .._twin._execution import TIMED, begin_direct
else:
    TIMED = execution_module.TIMED
    begin_direct = execution_module.begin_direct

__all__ = ["CHECKPOINT_EVERY", "DEFAULT_HEARTBEAT", "Worker", "WorkerBuilder"]

CHECKPOINT_EVERY = 64
"""A consumer loop yields to the scheduler at least once per this many tasks."""

DEFAULT_HEARTBEAT = 10.0
"""Seconds between a worker's registrations with a backend that can hold workers.

Three beats fit in ``JsonStorage``'s default 30-second task lease, so one late
beat (a slow disk) never makes a live worker look gone, while a dead one shows
a stale ``last_seen`` within seconds; a beat costs one durable line per worker
every 10 seconds.
"""

_QUEUED = Status.Queued
_DONE = Status.Done

logger = logging.getLogger("pyapalis.worker")
_RUNNING = WorkerState.Running


class WorkerBuilder:
    """Configures and builds a :class:`Worker`.

    ``WorkerBuilder("rango-tango").backend(storage).build(handler)``.
    Misconfiguration (no backend, a handler parameter nothing can supply)
    raises :class:`BuildError` at :meth:`build`.
    """

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
        for method in ("take_nowait", "take", "ack", "retry", "release"):
            if not callable(getattr(backend, method, None)):
                if isinstance(backend, Pipe):
                    raise TypeError(
                        f"backend: this Pipe feeds a {type(backend.backend).__name__}, which "
                        f"a worker cannot consume (no {method}() method); run it with "
                        f"pipe_to() beside a worker of a backend instead"
                    )
                raise TypeError(
                    f"backend: {type(backend).__name__} is not a backend (no {method}() method)"
                )
        self._backend = backend
        return self

    def layer(self, layer: LayerLike) -> WorkerBuilder:
        """Wrap the handler in ``layer``; the first layer added is the outermost.

        Task layers wrap the whole trip of a task and see it settled;
        execution layers (``wraps_execution = True``) sit inside the backend
        acknowledgement. See :mod:`pyapalis._worker._service`.
        """
        if not callable(getattr(layer, "layer", None)) and not callable(layer):
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
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise TypeError(f"heartbeat: expected seconds, got {type(seconds).__name__}")
        if math.isnan(seconds) or seconds <= 0:
            raise ValueError(f"heartbeat: must be > 0 seconds, got {seconds!r}")
        self._heartbeat = float(seconds)
        return self

    def timeout(self, seconds: float) -> WorkerBuilder:
        """Limit each execution of a task that sets no ``timeout`` of its own."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise TypeError(f"timeout: expected seconds, got {type(seconds).__name__}")
        if math.isnan(seconds) or seconds <= 0:
            raise ValueError(f"timeout: must be > 0 seconds, got {seconds!r}")
        self._timeout = float(seconds)
        return self

    # -- shortcuts for the built-in layers ------------------------------------------

    def ack_with(self, acknowledger: Acknowledger | Any) -> WorkerBuilder:
        """Call ``acknowledger(task, outcome)`` after each execution (:class:`AcknowledgeLayer`)."""
        return self.layer(AcknowledgeLayer(acknowledger))

    def break_circuit(self, config: CircuitBreakerConfig | None = None) -> WorkerBuilder:
        """Stop pulling while tasks keep failing (:class:`CircuitBreakerLayer`)."""
        return self.layer(CircuitBreakerLayer(config))

    def long_running(self, config: LongRunningConfig | None = None) -> WorkerBuilder:
        """Give handlers a ``Runner`` for tracked sub-work (:class:`LongRunningLayer`)."""
        return self.layer(LongRunningLayer(config))

    def rate_limit(self, n: int, per_seconds: float | timedelta) -> WorkerBuilder:
        """Start at most ``n`` tasks in any ``per_seconds`` window (:class:`RateLimitLayer`)."""
        return self.layer(RateLimitLayer(n, per_seconds))

    def catch_panic(self, retryable: tuple[type[BaseException], ...] = ()) -> WorkerBuilder:
        """Turn unexpected exceptions into ``AbortError`` (:class:`CatchPanicLayer`)."""
        return self.layer(CatchPanicLayer(retryable))

    def retry_in_place(self, policy: RetryPolicy) -> WorkerBuilder:
        """Re-run a failing execution without handing it back (:class:`RetryLayer`)."""
        return self.layer(RetryLayer(policy))

    def total_timeout(self, seconds: float | timedelta) -> WorkerBuilder:
        """Bound everything inside this point of the stack (:class:`TimeoutLayer`).

        Unlike :meth:`timeout` (each handler call), it also covers the layers
        added after it: retries in place, tracked long-running work.
        """
        return self.layer(TimeoutLayer(seconds))

    def concurrency_limit(self, limit: int) -> WorkerBuilder:
        """At most ``limit`` tasks inside at once (:class:`ConcurrencyLimitLayer`)."""
        return self.layer(ConcurrencyLimitLayer(limit))

    def load_shed(self) -> WorkerBuilder:
        """Reject tasks the layers added after it cannot take now (:class:`LoadShedLayer`)."""
        return self.layer(LoadShedLayer())

    def trace(
        self, logger: logging.Logger | str = "pyapalis.task", *, level: int = logging.INFO
    ) -> WorkerBuilder:
        """Log each task's id, attempt, duration and outcome (:class:`TracingLayer`)."""
        return self.layer(TracingLayer(logger, level=level))

    def prometheus(self, registry: Any = None, *, namespace: str = "pyapalis") -> WorkerBuilder:
        """Task metrics for prometheus_client (:class:`PrometheusLayer`, extra ``prometheus``)."""
        return self.layer(PrometheusLayer(registry, namespace=namespace))

    def open_telemetry(
        self, tracer_provider: Any = None, *, queue: str | None = None
    ) -> WorkerBuilder:
        """A span per task (:class:`OpenTelemetryLayer`, extra ``otel``)."""
        return self.layer(OpenTelemetryLayer(tracer_provider, queue=queue))

    # -- building ------------------------------------------------------------------------

    def build(self, handler: Callable[..., Any]) -> Worker:
        """The worker; raises :class:`BuildError` if something is missing."""
        if self._backend is None:
            raise BuildError(
                "MissingBackend", f"worker {self._name!r} has no backend; call .backend(...)"
            )
        context = WorkerContext(self._name)
        context._listeners.extend(self._listeners)
        resolved = resolve_handler(handler, context, self._data)
        execution_layers = [layer for layer in self._layers if wraps_execution(layer)]
        task_layers = [layer for layer in self._layers if not wraps_execution(layer)]
        if not any(isinstance(layer, LongRunningLayer) for layer in execution_layers):
            _check_no_runner_wanted(handler)
        settler = Settler(self._backend, self._retry, context)
        execute = Execute(resolved, self._timeout, settler)
        inner, execution_services = compose(execution_layers, execute, context)
        acknowledged: Service
        if inner is execute:
            # Nothing wraps the execution: it settles its outcome itself, one frame less.
            execute = SettlingExecute(resolved, self._timeout, settler)
            acknowledged, execution_services = execute, []
        else:
            acknowledged = Acknowledge(inner, settler)
        stack, task_services = compose(task_layers, acknowledged, context)
        services = [*task_services, *execution_services]
        checks = readiness_checks(services)
        nowaits = readiness_nowait(services) if checks else None
        # No service added: the worker takes the one-frame path of Execute.settle_begun.
        layered: Service | None = None if stack is execute else stack
        backend = self._backend
        return Worker(
            context,
            backend,
            self._concurrency,
            execute,
            settler,
            layered,
            checks,
            nowaits,
            register=backend.register_worker if isinstance(backend, RegisterWorker) else None,
            heartbeat=self._heartbeat,
            alongside=backend.run_alongside if isinstance(backend, RunsAlongside) else None,
        )


def _check_no_runner_wanted(handler: Callable[..., Any]) -> None:
    """A handler that asks for a Runner needs a LongRunningLayer: say so at build()."""
    target = handler if inspect.isroutine(handler) else type(handler).__call__
    try:
        hints = typing.get_type_hints(target, include_extras=True)
    except Exception:  # resolve_handler already accepted it; nothing more to learn here
        return
    if wants_runner(hints):
        raise BuildError(
            "MissingLayer",
            f"handler {getattr(handler, '__qualname__', handler)!r} takes a Runner, which "
            f"only a LongRunningLayer provides; add .long_running() to the builder",
        )


class Worker:
    """Pulls tasks from its backend and runs them; see :class:`WorkerBuilder`.

    A task failure never stops a worker; a backend failure does, and the error
    is raised from :meth:`run` once in-flight tasks have finished. If the run is
    cancelled from outside, or a handler raises ``KeyboardInterrupt``, every
    task in flight is handed back to the backend unfinished (its attempt is not
    counted) and the exception propagates. A ``trio.Cancelled`` that a handler
    raises while the worker is not being cancelled fails that task with
    :class:`~pyapalis._worker._pipeline.StrayCancelledError`; one that escapes a layer
    stops the worker with that error (the task is handed back).
    """

    def __init__(
        self,
        context: WorkerContext,
        backend: Backend,
        concurrency: int,
        execute: Execute,
        settler: Settler,
        stack: Service | None,
        readiness: Sequence[Callable[[], Awaitable[None]]],
        ready_now: Sequence[Callable[[], bool]] | None = None,
        *,
        register: Callable[[str], Awaitable[None]] | None = None,
        heartbeat: float = DEFAULT_HEARTBEAT,
        alongside: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._context = context
        self._backend = backend
        self._concurrency = concurrency
        self._execute = execute
        self._settler = settler
        self._stack = stack
        self._readiness = list(readiness)
        # Non-blocking twins of the checks (None unless every check has one).
        self._ready_now = list(ready_now) if ready_now is not None else None
        # Companion tasks of a run (see the module doc), None when the backend needs none.
        self._register = register
        self._heartbeat_interval = heartbeat
        self._alongside = alongside
        self._companion_scopes: list[trio.CancelScope] = []
        self._live_loops = 0
        self._idle_loops = 0
        self._error: BaseException | None = None
        # Backends that can interrupt their own waits spare a cancel scope per idle wait.
        take_or_wake = getattr(backend, "take_or_wake", None)
        wake_takers = getattr(backend, "wake_takers", None)
        self._take_or_wake = take_or_wake if callable(wake_takers) else None
        self._wake_takers = wake_takers if callable(take_or_wake) else None

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

    async def run(self) -> None:
        """Run until stopped; returns once in-flight work has drained."""
        context = self._context
        context._start()
        bind = getattr(self._backend, "bind", None)
        if bind is not None:
            bind()
        if self._wake_takers is not None:
            context._idle_wakers.append(self._wake_takers)
        context.emit(START)
        try:
            async with trio.open_nursery() as nursery:
                # The loops inherit the variable (set once per run, read by layers).
                token = WORKER_NURSERY.set(nursery)
                try:
                    self._live_loops = self._concurrency
                    for _ in range(self._concurrency):
                        nursery.start_soon(self._consume)
                finally:
                    WORKER_NURSERY.reset(token)
                # Created before any loop runs, so the last loop to end can cancel them.
                if self._register is not None:
                    scope = trio.CancelScope()
                    self._companion_scopes.append(scope)
                    nursery.start_soon(self._beat, self._register, scope)
                if self._alongside is not None:
                    scope = trio.CancelScope()
                    self._companion_scopes.append(scope)
                    nursery.start_soon(self._run_alongside, self._alongside, scope)
        except BaseExceptionGroup as group:
            raise _single(group) from None
        finally:
            self._companion_scopes.clear()
            if self._wake_takers is not None:
                context._idle_wakers.remove(self._wake_takers)
            context._finish()
            context.emit(STOP)
        if self._error is not None:
            raise self._error

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
            raise _single(group) from None

    def stream(self) -> EventStream:
        """Run the worker and iterate over its events (``Start`` first, ``Stop`` last).

        ``async with worker.stream() as events: async for ev in events: ...`` is the
        structured form; ``async for ev in worker.stream()`` also works when the
        loop runs to the ``Stop`` event.
        """
        return EventStream(self)

    # -- the consumer loop ---------------------------------------------------

    async def _consume(self) -> None:
        """One consumer loop (a trio task of the worker's nursery).

        An exception escaping the loop is a backend failure: every loop stops
        pulling, in-flight work finishes, and run() raises it. The loop is the
        task's root coroutine: one frame less to resume per wake-up.
        """
        context = self._context
        take_nowait = self._backend.take_nowait
        stack = self._stack
        run_stack = self._run_stack
        execute = self._execute
        settle_begun = execute.settle_begun
        settler = self._settler
        # The handler, when this loop may run it itself: no layers, an async
        # handler of the args alone, no worker timeout, and ack_nowait (see
        # Execute.direct_handler). It takes the steps of settle_begun inline.
        direct = execute.direct_handler if stack is None else None
        ack_nowait: Any = settler._ack_nowait  # not None when direct is set
        readiness = self._readiness
        ready_now = self._ready_now
        take_or_wake = self._take_or_wake
        checkpoint = trio.lowlevel.checkpoint
        budget = CHECKPOINT_EVERY
        args: Any = None
        result: Any = None
        try:
            while True:
                if context._state is not _RUNNING:
                    if context._state is WorkerState.Paused:
                        args = result = None  # hold nothing of the last task while paused
                        await context._wait_resumed()
                        continue
                    return
                # All ready now (the usual case): no await and no cancel scope.
                if readiness and (ready_now is None or not _all_ready(ready_now)):
                    await self._wait_ready(readiness)
                    if context._state is not _RUNNING:
                        continue
                task = take_nowait()
                if task is None:
                    # Idle: wait for the backend (inlined for the push-to-handler latency).
                    args = result = None  # hold nothing of the last task while idle
                    if take_or_wake is not None and not context._listeners:
                        task = await take_or_wake()  # nobody to tell that we idle
                    else:
                        task = await self._wait_idle(take_or_wake)
                    if task is None:
                        continue
                    budget = CHECKPOINT_EVERY
                context.task_count += 1
                try:
                    if stack is not None:
                        await run_stack(task)
                    elif direct is None:
                        await settle_begun(task, begin_execution(task))
                    else:
                        args = begin_direct(task)  # attempt counted, Running
                        if args is TIMED:  # the task's own timeout: the timed path
                            await settle_begun(task, task.parts.timeout)
                        else:
                            # Execute.settle_begun, inline: keep the two identical.
                            try:
                                result = await direct(args)
                                if result is False:
                                    raise TaskFailedError()
                            except Exception as exc:
                                await settler.failure(task, exc)
                            except trio.Cancelled as cancelled:
                                stray = execute.stray(cancelled)
                                if stray is None:
                                    await settler.interrupted(task)
                                    raise
                                await settler.failure(task, stray)
                            except BaseException:
                                await settler.interrupted(task)
                                raise
                            else:
                                ack_nowait(task, _DONE, result, None)
                                if context._listeners:
                                    settler.emit_success(task, result)
                finally:
                    context.task_count -= 1
                budget -= 1
                if not budget:
                    budget = CHECKPOINT_EVERY
                    await checkpoint()
        except Exception as exc:
            self._backend_failed(exc)
        except trio.Cancelled as cancelled:
            # A handler's own Cancelled failed its task already; this one escaped a layer.
            stray = stray_cancelled(cancelled, f"a layer of worker {self.name!r}")
            if stray is None:
                raise
            self._backend_failed(stray)
        finally:
            self._live_loops -= 1
            if not self._live_loops:
                for scope in self._companion_scopes:
                    scope.cancel()  # the run is draining: its companions end with it

    def _backend_failed(self, exc: Exception) -> None:
        if self._error is None:
            self._error = exc
        if not self._context.is_shutting_down:
            self._context.stop()

    # -- companion tasks -------------------------------------------------------

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
        with scope:
            try:
                await alongside()
            except Exception as exc:
                self._backend_failed(exc)
            except trio.Cancelled as cancelled:
                stray = stray_cancelled(cancelled, f"the backend of worker {self.name!r}")
                if stray is None:
                    raise
                self._backend_failed(stray)

    async def _wait_idle(
        self, take_or_wake: Callable[[], Awaitable[Task | None]] | None
    ) -> Task | None:
        """Wait for the backend, emitting ``Idle`` unless another loop of this worker
        waits here already (loops that went idle while nobody listened are not counted)."""
        self._idle_loops += 1
        try:
            if self._idle_loops == 1 and self._context._listeners:
                self._context.emit(IDLE)
            if take_or_wake is not None:
                return await take_or_wake()
            return await self._wait_cancellable()
        finally:
            self._idle_loops -= 1

    async def _wait_ready(self, readiness: Sequence[Callable[[], Awaitable[None]]]) -> None:
        """Await every layer's ready(); stop() and pause() interrupt the wait."""
        context = self._context
        with trio.CancelScope() as scope:
            context._idle_scopes.add(scope)
            try:
                for ready in readiness:
                    await ready()
            finally:
                context._idle_scopes.discard(scope)

    async def _wait_cancellable(self) -> Task | None:
        """Wait for a task in a scope that stop() and pause() cancel; None if they did."""
        context = self._context
        with trio.CancelScope() as scope:
            context._idle_scopes.add(scope)
            try:
                task: Task = await self._backend.take()
                return task
            finally:
                context._idle_scopes.discard(scope)
        return None

    async def _run_stack(self, task: Task) -> None:
        """Run ``task`` through the layers, settling it if they never reached the ack."""
        assert self._stack is not None
        set_status(task, _QUEUED)
        try:
            result = await self._stack(task)
        except BackendFailure as failure:
            raise failure.error from None  # the backend broke: stop the worker (see _consume)
        except Exception as exc:
            if task.parts.status is _QUEUED:
                # The handler never ran, so no attempt was counted: count one
                # (release() un-counts the execution it takes back).
                task.parts.attempt.increment()
                if isinstance(exc, NotReadyError):
                    # A layer could not take the task yet (an open circuit): hand
                    # it back unchanged; the loop waits for readiness again.
                    await self._settler.interrupted(task)
                else:
                    # A layer failed the task: a failed attempt, so a layer that
                    # always refuses cannot bounce a task forever.
                    await self._settler.failure(task, exc)
            elif task.parts.status is _DONE:
                # The handler succeeded and the backend recorded it; the layer's
                # error cannot change that, but it must not vanish unseen.
                logger.error(
                    "a layer of worker %r raised after task %s succeeded (it stays Done)",
                    self.name,
                    task.parts.task_id,
                    exc_info=exc,
                )
        except BaseException:
            if task.parts.status is _QUEUED:
                task.parts.attempt.increment()  # release() un-counts it (see above)
                await self._settler.interrupted(task)
            raise
        else:
            if task.parts.status is _QUEUED:
                await self._settler.success(task, result)


def _all_ready(checks: Sequence[Callable[[], bool]]) -> bool:
    for is_ready in checks:  # noqa: SIM110 - all() with a generator costs more per task
        if not is_ready():
            return False
    return True


def _single(group: BaseExceptionGroup[Any]) -> BaseException:
    """The one exception of a nursery's group (a group of several stays a group)."""
    while len(group.exceptions) == 1:
        inner: BaseException = group.exceptions[0]
        if not isinstance(inner, BaseExceptionGroup):
            return inner
        group = inner
    return group


class EventStream:
    """The events of a worker run; see :meth:`Worker.stream`."""

    def __init__(self, worker: Worker) -> None:
        self._worker = worker
        send, receive = trio.open_memory_channel[Event](math.inf)
        self._send = send
        self._receive = receive
        self._nursery_manager: Any = None

        def forward(_ctx: WorkerContext, event: Event) -> None:
            send.send_nowait(event)
            if event is STOP:
                send.close()

        self._forward = forward
        worker.context._listeners.append(forward)

    async def _run(self) -> None:
        try:
            await self._worker.run()
        finally:
            self._send.close()
            # The run is over (a worker runs once): stop holding the channel.
            listeners = self._worker.context._listeners
            if self._forward in listeners:
                listeners.remove(self._forward)

    async def __aenter__(self) -> trio.MemoryReceiveChannel[Event]:
        self._nursery_manager = trio.open_nursery()
        nursery = await self._nursery_manager.__aenter__()
        nursery.start_soon(self._run)
        return self._receive

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        # Leaving the block (normally, by break, or by an error) stops the
        # worker gracefully; the block waits for it to drain.
        if not self._worker.context.is_shutting_down:
            self._worker.context.stop()
        result: bool | None = await self._nursery_manager.__aexit__(*exc_info)
        return result

    async def __aiter__(self) -> Any:
        async with self as events:
            async for event in events:
                yield event
